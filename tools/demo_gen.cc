// Writes the demo sample set that `make demo` scans: for each format, benign files and files
// carrying a known attack. Everything is built from bytes here; nothing is downloaded.
//   usage: airlock-demo-gen OUT_DIR
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/file.h"
#include "formats/gguf_writer.h"

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
  return ok ? 0 : 1;
}
