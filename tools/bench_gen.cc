// Generates large benchmark inputs for bench/scan_throughput.sh (never run by tests):
//   airlock-bench-gen pickle OUT MIB     protocol-4 pickle: a dict of 1 MiB byte blobs
//   airlock-bench-gen pytorch-zip OUT MIB torch.save-style zip: data.pkl + stored 1 MiB storages
//   airlock-bench-gen gguf OUT MIB        GGUF with F16 tensors of 1 MiB each
//   airlock-bench-gen gguf-llama OUT REF.gguf N_EMBD N_LAYER N_FF
//       a loadable llama model of that shape with random F16 weights and the tokenizer of REF (a
//       llama GGUF such as stories260K): a model that `airlock serve` can serve at a realistic
//       decode speed, for bench/privsep_bench.py
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"

namespace {

// A string literal with embedded NULs kept (std::string(const char*) would stop at the first).
template <std::size_t N>
std::string Lit(const char (&s)[N]) {
  return std::string(s, N - 1);
}

void PutLe(std::string& s, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}

std::string Blob(std::size_t n, std::uint32_t seed) {
  std::string b(n, '\0');
  std::mt19937 rng(seed);
  for (std::size_t i = 0; i + 4 <= n; i += 4) {
    std::uint32_t r = rng();
    std::memcpy(&b[i], &r, 4);
  }
  return b;
}

std::string ShortUnicode(const std::string& s) {
  std::string out = "\x8c";
  out += static_cast<char>(s.size());
  return out + s;
}

bool WritePickle(const std::string& path, int mib) {
  std::ofstream out(path, std::ios::binary);
  out << std::string("\x80\x04}\x94(", 5);  // PROTO 4, EMPTY_DICT, MEMOIZE, MARK
  std::string blob = Blob(1 << 20, 1);
  for (int i = 0; i < mib; ++i) {
    std::string head = ShortUnicode("layer." + std::to_string(i) + ".weight");
    head += "\x8e";  // BINBYTES8
    PutLe(head, blob.size(), 8);
    out << head << blob;
  }
  out << "u.";  // SETITEMS, STOP
  return static_cast<bool>(out);
}

struct ZipEntry {
  std::string name;
  std::uint32_t crc;
  std::uint64_t size;
  std::uint64_t offset;
};

std::uint32_t Crc32(const std::string& data) {
  static std::uint32_t table[256];
  static bool init = false;
  if (!init) {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    init = true;
  }
  std::uint32_t c = 0xffffffffu;
  for (unsigned char b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

bool WritePytorchZip(const std::string& path, int mib) {
  std::ofstream out(path, std::ios::binary);
  std::vector<ZipEntry> entries;
  std::uint64_t pos = 0;
  auto add = [&](const std::string& name, const std::string& data) {
    std::string h = "PK\x03\x04";
    PutLe(h, 20, 2);  // version needed
    PutLe(h, 0, 2);   // flags
    PutLe(h, 0, 2);   // stored
    PutLe(h, 0, 4);   // time/date
    std::uint32_t crc = Crc32(data);
    PutLe(h, crc, 4);
    PutLe(h, data.size(), 4);
    PutLe(h, data.size(), 4);
    PutLe(h, name.size(), 2);
    PutLe(h, 0, 2);
    h += name;
    entries.push_back({name, crc, data.size(), pos});
    out << h << data;
    pos += h.size() + data.size();
  };
  // data.pkl: OrderedDict of tensors whose storages are persistent ids "0".."N-1".
  std::string pkl("\x80\x02", 2);
  pkl += Lit("ccollections\nOrderedDict\nq\x00)Rq\x01(");
  for (int i = 0; i < mib; ++i) {
    std::string key = "layer." + std::to_string(i) + ".weight";
    std::string id = std::to_string(i);
    pkl += "X";
    PutLe(pkl, key.size(), 4);
    pkl += key;
    pkl +=
        Lit("ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX");
    PutLe(pkl, id.size(), 4);
    pkl += id + Lit("X\x03\x00\x00\x00"
                    "cpuJ");
    PutLe(pkl, 262144, 4);
    pkl += Lit("tQK\x00J");
    PutLe(pkl, 262144, 4);
    pkl +=
        Lit("\x85K\x01\x85\x89"
            "ccollections\nOrderedDict\n)Rtq\x02R");
  }
  pkl += "u.";
  add("archive/data.pkl", pkl);
  add("archive/version", "3\n");
  std::string blob = Blob(1 << 20, 2);
  for (int i = 0; i < mib; ++i) add("archive/data/" + std::to_string(i), blob);
  std::string cd;
  for (const auto& e : entries) {
    cd += "PK\x01\x02";
    PutLe(cd, 20, 2);
    PutLe(cd, 20, 2);
    PutLe(cd, 0, 2);
    PutLe(cd, 0, 2);
    PutLe(cd, 0, 4);
    PutLe(cd, e.crc, 4);
    PutLe(cd, e.size, 4);
    PutLe(cd, e.size, 4);
    PutLe(cd, e.name.size(), 2);
    PutLe(cd, 0, 2);
    PutLe(cd, 0, 2);
    PutLe(cd, 0, 2);
    PutLe(cd, 0, 2);
    PutLe(cd, 0, 4);
    PutLe(cd, e.offset, 4);
    cd += e.name;
  }
  std::string eocd = "PK\x05\x06";
  PutLe(eocd, 0, 4);
  PutLe(eocd, entries.size(), 2);
  PutLe(eocd, entries.size(), 2);
  PutLe(eocd, cd.size(), 4);
  PutLe(eocd, pos, 4);
  PutLe(eocd, 0, 2);
  out << cd << eocd;
  return static_cast<bool>(out);
}

bool WriteGguf(const std::string& path, int mib) {
  namespace gguf = airlock::formats::gguf;
  gguf::Writer w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.block_count", static_cast<std::uint32_t>(mib));
  for (int i = 0; i < mib; ++i) {
    w.AddTensorGenerated("blk." + std::to_string(i) + ".ffn_up.weight", gguf::GgmlType::kF16,
                         {1024, 512}, [](std::uint64_t offset, std::span<std::byte> out) {
                           for (std::size_t k = 0; k < out.size(); ++k)
                             out[k] = static_cast<std::byte>((offset + k) * 2654435761u >> 24);
                         });
  }
  auto s = w.WriteFile(path);
  if (!s.ok()) std::fprintf(stderr, "bench-gen: %s\n", s.message().c_str());
  return s.ok();
}

// Small random F16 values (|x| < 2^-5), never NaN or infinite, from a hash of the position.
void RandomF16(std::uint64_t seed, std::uint64_t offset, std::span<std::byte> out) {
  for (std::size_t k = 0; k + 1 < out.size(); k += 2) {
    std::uint64_t h = (seed + (offset + k) / 2) * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
    const std::uint16_t sign = static_cast<std::uint16_t>((h >> 40) & 1) << 15;
    const std::uint16_t exponent = static_cast<std::uint16_t>(5 + (h >> 41) % 5) << 10;
    const std::uint16_t bits = sign | exponent | static_cast<std::uint16_t>(h & 0x3ff);
    out[k] = static_cast<std::byte>(bits & 0xff);
    out[k + 1] = static_cast<std::byte>(bits >> 8);
  }
}

bool WriteLlamaWithTokenizerOf(const std::string& path, const std::string& ref, std::uint64_t d,
                               int n_layer, std::uint64_t n_ff) {
  namespace gguf = airlock::formats::gguf;
  auto mapped = airlock::core::MappedFile::Open(ref);
  if (!mapped) return false;
  auto file = gguf::File::Parse(mapped->bytes());
  if (!file) {
    std::fprintf(stderr, "bench-gen: %s\n", file.error().message().c_str());
    return false;
  }
  gguf::Writer w;
  w.AddString("general.architecture", "llama");
  w.AddString("general.name", "privsep-bench");
  // The tokenizer's values copied as encoded: each ends where the next key (or the first tensor
  // record) begins.
  const auto& kvs = file->metadata();
  std::uint64_t n_vocab = 0;
  for (std::size_t i = 0; i < kvs.size(); ++i) {
    if (!kvs[i].key.starts_with("tokenizer.")) continue;
    const std::uint64_t begin = kvs[i].value.offset();
    const std::uint64_t end =
        i + 1 < kvs.size() ? kvs[i + 1].offset : file->tensors().front().info_offset;
    auto raw = mapped->bytes().subspan(begin, end - begin);
    w.AddRawKv(kvs[i].key, static_cast<std::uint32_t>(kvs[i].value.type()),
               std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
    if (kvs[i].key == "tokenizer.ggml.tokens") n_vocab = kvs[i].value.AsArray()->size();
  }
  if (n_vocab == 0) return false;
  const std::uint64_t n_head = d / 64, n_head_kv = std::max<std::uint64_t>(1, n_head / 4);
  const std::uint64_t kv = n_head_kv * 64;
  w.AddUint32("llama.context_length", 2048);
  w.AddUint32("llama.embedding_length", static_cast<std::uint32_t>(d));
  w.AddUint32("llama.block_count", static_cast<std::uint32_t>(n_layer));
  w.AddUint32("llama.feed_forward_length", static_cast<std::uint32_t>(n_ff));
  w.AddUint32("llama.attention.head_count", static_cast<std::uint32_t>(n_head));
  w.AddUint32("llama.attention.head_count_kv", static_cast<std::uint32_t>(n_head_kv));
  w.AddFloat32("llama.rope.freq_base", 10000.0f);
  w.AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  std::uint64_t seed = 1;
  auto matrix = [&](const std::string& name, std::uint64_t cols, std::uint64_t rows) {
    const std::uint64_t s = seed++ << 40;
    w.AddTensorGenerated(
        name, gguf::GgmlType::kF16, {cols, rows},
        [s](std::uint64_t offset, std::span<std::byte> out) { RandomF16(s, offset, out); });
  };
  auto ones = [&](const std::string& name, std::uint64_t n) {
    w.AddTensorGenerated(name, gguf::GgmlType::kF32, {n},
                         [](std::uint64_t, std::span<std::byte> out) {
                           const float one = 1.0f;
                           for (std::size_t k = 0; k + 4 <= out.size(); k += 4)
                             std::memcpy(out.data() + k, &one, 4);
                         });
  };
  matrix("token_embd.weight", d, n_vocab);
  ones("output_norm.weight", d);
  matrix("output.weight", d, n_vocab);
  for (int i = 0; i < n_layer; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    ones(b + "attn_norm.weight", d);
    matrix(b + "attn_q.weight", d, d);
    matrix(b + "attn_k.weight", d, kv);
    matrix(b + "attn_v.weight", d, kv);
    matrix(b + "attn_output.weight", d, d);
    ones(b + "ffn_norm.weight", d);
    matrix(b + "ffn_gate.weight", d, n_ff);
    matrix(b + "ffn_up.weight", d, n_ff);
    matrix(b + "ffn_down.weight", n_ff, d);
  }
  auto s = w.WriteFile(path);
  if (!s.ok()) std::fprintf(stderr, "bench-gen: %s\n", s.message().c_str());
  return s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 7 && std::string(argv[1]) == "gguf-llama")
    return WriteLlamaWithTokenizerOf(argv[2], argv[3], std::strtoull(argv[4], nullptr, 10),
                                     std::atoi(argv[5]), std::strtoull(argv[6], nullptr, 10))
               ? 0
               : 1;
  if (argc != 4) {
    std::fprintf(stderr, "usage: airlock-bench-gen pickle|pytorch-zip|gguf OUT MIB\n");
    return 2;
  }
  std::string kind = argv[1];
  int mib = std::atoi(argv[3]);
  bool ok = kind == "pickle"        ? WritePickle(argv[2], mib)
            : kind == "pytorch-zip" ? WritePytorchZip(argv[2], mib)
            : kind == "gguf"        ? WriteGguf(argv[2], mib)
                                    : false;
  return ok ? 0 : 1;
}
