#include "scan/inspect.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/file.h"
#include "core/text.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "scan/internal/suspicious_text.h"
#include "template/analyze.h"

namespace airlock::scan {

namespace {

namespace gguf = formats::gguf;
namespace st = formats::safetensors;
using internal::Printable;

// llama_ftype values (llama.h) -> names.
std::string FileTypeName(std::uint64_t ft) {
  static const std::map<std::uint64_t, const char*> kNames = {
      {0, "F32"},      {1, "F16"},      {2, "Q4_0"},       {3, "Q4_1"},    {7, "Q8_0"},
      {8, "Q5_0"},     {9, "Q5_1"},     {10, "Q2_K"},      {11, "Q3_K_S"}, {12, "Q3_K_M"},
      {13, "Q3_K_L"},  {14, "Q4_K_S"},  {15, "Q4_K_M"},    {16, "Q5_K_S"}, {17, "Q5_K_M"},
      {18, "Q6_K"},    {19, "IQ2_XXS"}, {20, "IQ2_XS"},    {21, "Q2_K_S"}, {22, "IQ3_XS"},
      {23, "IQ3_XXS"}, {24, "IQ1_S"},   {25, "IQ4_NL"},    {26, "IQ3_S"},  {27, "IQ3_M"},
      {28, "IQ2_S"},   {29, "IQ2_M"},   {30, "IQ4_XS"},    {31, "IQ1_M"},  {32, "BF16"},
      {36, "TQ1_0"},   {37, "TQ2_0"},   {38, "MXFP4_MOE"},
  };
  auto it = kNames.find(ft);
  return it == kNames.end() ? "ftype-" + std::to_string(ft) : it->second;
}

void SortTypes(ModelSummary& s, std::map<std::string, TensorTypeStat>& types) {
  for (auto& [name, stat] : types) s.tensor_types.push_back(stat);
  std::sort(s.tensor_types.begin(), s.tensor_types.end(),
            [](const TensorTypeStat& a, const TensorTypeStat& b) { return a.bytes > b.bytes; });
}

// Scalar or per-layer array (llama.cpp's get_key_or_arr): the largest value.
std::optional<std::uint64_t> UintOrMax(const gguf::File& f, const std::string& key) {
  if (auto v = f.GetUint(key)) return v;
  if (auto a = f.GetArray(key)) {
    std::optional<std::uint64_t> best;
    for (std::uint64_t i = 0; i < a->size() && i < 4096; ++i) {
      if (auto v = a->UintAt(i)) best = std::max(best.value_or(0), *v);
    }
    return best;
  }
  return std::nullopt;
}

std::string ScalarText(const gguf::Value& v) {
  if (auto s = v.AsString()) return Printable(*s, 200);
  if (auto u = v.AsUint()) return std::to_string(*u);
  if (auto i = v.AsInt()) return std::to_string(*i);
  if (auto d = v.AsFloat()) {
    char b[32];
    std::snprintf(b, sizeof(b), "%g", *d);
    return b;
  }
  if (auto b = v.AsBool()) return *b ? "true" : "false";
  if (auto a = v.AsArray()) return "[" + std::to_string(a->size()) + " items]";
  return "";
}

// Template text for display: UTF-8 kept (the text may be in any language), control characters
// (C0, DEL, C1, bidirectional overrides) shown as spaces so the text cannot drive the terminal, cut
// after `max` bytes.
std::string PrintableText(std::string_view s, std::size_t max) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto u = static_cast<unsigned char>(s[i]);
    if (out.size() >= max && (u & 0xC0) != 0x80) {
      out += "...";
      break;
    }
    if (u == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      out += ' ';
      ++i;
      continue;
    }
    if (u == 0xE2 && i + 2 < s.size()) {  // bidirectional overrides and isolates
      auto b1 = static_cast<unsigned char>(s[i + 1]), b2 = static_cast<unsigned char>(s[i + 2]);
      if ((b1 == 0x80 && b2 >= 0xAA && b2 <= 0xAE) || (b1 == 0x81 && b2 >= 0xA6 && b2 <= 0xA9)) {
        out += ' ';
        i += 2;
        continue;
      }
    }
    out += (u < 0x20 || u == 0x7f) ? ' ' : s[i];
  }
  return out;
}

void TemplateHead(ModelSummary& s, std::string_view tpl) {
  s.has_chat_template = true;
  // Static analysis only (never rendered): registry verdict and the natural-language text.
  tmpl::TemplateAnalysis a = tmpl::AnalyzeTemplate(tpl);
  s.chat_template_text.clear();
  if (!a.parsed) {
    s.chat_template_origin = "does not parse: " + a.parse_error;
  } else if (a.registry.official) {
    s.chat_template_origin =
        "official " + a.registry.family + " template (" + a.registry.version + ")";
  } else {
    s.chat_template_origin = "differs from every official template";
    if (!a.registry.family.empty()) {
      s.chat_template_origin += "; closest: " + a.registry.family;
      if (!a.registry.added_literals.empty())
        s.chat_template_origin +=
            ", with " + std::to_string(a.registry.added_literals.size()) + " added text piece(s)";
    }
  }
  for (const tmpl::PromptText& p : a.prompt_text) {
    if (!p.natural_language || s.chat_template_text.size() >= 20) continue;
    s.chat_template_text.push_back(
        {PrintableText(p.text, 300), tmpl::PlacementName(p.placement), p.official});
  }
  s.chat_template_bytes = tpl.size();
  std::size_t pos = 0;
  while (pos < tpl.size() && s.chat_template_head.size() < 3) {
    std::size_t nl = tpl.find('\n', pos);
    std::string_view line = tpl.substr(pos, nl == std::string_view::npos ? tpl.npos : nl - pos);
    if (!line.empty()) s.chat_template_head.push_back(Printable(line, 100));
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
}

void EstimateMemory(ModelSummary& s, const InspectOptions& o) {
  std::uint64_t ctx = o.context;
  if (ctx == 0) ctx = std::min<std::uint64_t>(s.context_length.value_or(4096), 4096);
  s.context = ctx;
  // Bytes per 32 cached values: F16 64, F32 128, Q8_0 34 (one fp16 scale + 32 int8).
  std::uint64_t per_32 = 64;
  s.kv_type = "f16";
  if (o.kv_type == KvElementType::kF32) {
    per_32 = 128;
    s.kv_type = "f32";
  } else if (o.kv_type == KvElementType::kQ8_0) {
    per_32 = 34;
    s.kv_type = "q8_0";
  }
  std::uint64_t values = 0;  // cached values per token and layer
  if (s.kv_lora_rank && s.rope_dimension_count && *s.kv_lora_rank > 0 &&
      *s.kv_lora_rank < (1u << 20) && *s.rope_dimension_count < (1u << 20)) {
    values = *s.kv_lora_rank + *s.rope_dimension_count;  // MLA: [latent | k_pe], no V
  } else if (s.block_count && s.head_count && *s.head_count > 0 && s.embedding_length) {
    std::uint64_t heads_kv = s.head_count_kv.value_or(*s.head_count);
    std::uint64_t head_dim = *s.embedding_length / *s.head_count;
    std::uint64_t k = s.key_length.value_or(head_dim), v = s.value_length.value_or(head_dim);
    values = heads_kv * (k + v);
  }
  if (s.block_count && values > 0) {
    s.kv_bytes_per_token = *s.block_count * values * per_32 / 32;
    s.kv_cache_bytes = s.kv_bytes_per_token * ctx;
  }
  s.total_memory_bytes = s.weight_bytes + s.kv_cache_bytes;
}

Result<ModelSummary> InspectGguf(std::span<const std::byte> data, ModelSummary s,
                                 const InspectOptions& o) {
  auto parsed = gguf::File::Parse(data);
  if (!parsed.ok()) return parsed.error();
  const gguf::File& f = *parsed;
  s.format = "gguf";
  s.architecture = std::string(f.architecture());
  s.name = Printable(f.GetString("general.name").value_or(""), 200);
  if (auto ft = f.GetUint("general.file_type")) s.file_type = FileTypeName(*ft);

  std::map<std::string, TensorTypeStat> types;
  for (const gguf::TensorInfo& t : f.tensors()) {
    auto& stat = types[gguf::GgmlTypeName(t.type)];
    stat.type = gguf::GgmlTypeName(t.type);
    ++stat.tensors;
    stat.elements += t.n_elements;
    stat.bytes += t.n_bytes;
    s.parameter_count += t.n_elements;
    s.weight_bytes += t.n_bytes;
  }
  s.tensor_count = f.tensors().size();
  SortTypes(s, types);

  const std::string a = s.architecture + ".";
  s.context_length = f.GetUint(a + "context_length");
  s.embedding_length = f.GetUint(a + "embedding_length");
  s.block_count = f.GetUint(a + "block_count");
  s.feed_forward_length = UintOrMax(f, a + "feed_forward_length");
  s.head_count = UintOrMax(f, a + "attention.head_count");
  s.head_count_kv = UintOrMax(f, a + "attention.head_count_kv");
  s.key_length = f.GetUint(a + "attention.key_length");
  s.value_length = f.GetUint(a + "attention.value_length");
  s.kv_lora_rank = f.GetUint(a + "attention.kv_lora_rank");
  s.rope_dimension_count = f.GetUint(a + "rope.dimension_count");
  s.expert_count = f.GetUint(a + "expert_count");
  s.expert_used_count = f.GetUint(a + "expert_used_count");
  s.rope_freq_base = f.GetFloat(a + "rope.freq_base");
  if (s.expert_count && s.expert_used_count && *s.expert_count > 0 &&
      *s.expert_used_count <= *s.expert_count) {
    // Routed expert tensors are 3-D {cols, rows, expert_count} named *_exps.
    std::uint64_t idle_params = 0, idle_bytes = 0;
    const std::uint64_t unused = *s.expert_count - *s.expert_used_count;
    for (const gguf::TensorInfo& t : f.tensors()) {
      if (t.n_dims == 3 && t.ne[2] == *s.expert_count &&
          t.name.find("_exps.") != std::string_view::npos) {
        idle_params += t.n_elements / *s.expert_count * unused;
        idle_bytes += t.n_bytes / *s.expert_count * unused;
      }
    }
    if (idle_params <= s.parameter_count && idle_bytes <= s.weight_bytes) {
      s.active_parameter_count = s.parameter_count - idle_params;
      s.active_weight_bytes = s.weight_bytes - idle_bytes;
    }
  }

  s.tokenizer_model = Printable(f.GetString("tokenizer.ggml.model").value_or(""));
  s.tokenizer_pre = Printable(f.GetString("tokenizer.ggml.pre").value_or(""));
  auto tokens = f.GetArray("tokenizer.ggml.tokens");
  if (tokens) s.vocab_size = tokens->size();
  if (auto m = f.GetArray("tokenizer.ggml.merges")) s.merges = m->size();
  s.add_bos = f.GetBool("tokenizer.ggml.add_bos_token");
  s.add_eos = f.GetBool("tokenizer.ggml.add_eos_token");
  for (const gguf::KeyValue& kv : f.metadata()) {
    std::string_view key = kv.key;
    constexpr std::string_view kPrefix = "tokenizer.ggml.", kSuffix = "_token_id";
    if (key.size() > kPrefix.size() + kSuffix.size() && key.substr(0, kPrefix.size()) == kPrefix &&
        key.substr(key.size() - kSuffix.size()) == kSuffix) {
      SpecialToken t;
      t.role =
          std::string(key.substr(kPrefix.size(), key.size() - kPrefix.size() - kSuffix.size()));
      // llama.cpp's GGUF key is spelled "seperator"; show the word correctly.
      if (t.role == "seperator") t.role = "separator";
      auto id = kv.value.AsInt();
      if (!id) continue;
      t.id = *id;
      if (*id == -1 || *id == 0xFFFFFFFFll) {  // llama.cpp's "no token"
        t.id = -1;
        t.text = "(none)";
      } else if (tokens && *id >= 0) {
        if (auto text = tokens->StringAt(static_cast<std::uint64_t>(*id)))
          t.text = Printable(*text, 40);
      }
      s.special_tokens.push_back(std::move(t));
    }
    if (key == "tokenizer.chat_template") {
      if (auto tpl = kv.value.AsString()) TemplateHead(s, *tpl);
    } else if (key.substr(0, 24) == "tokenizer.chat_template.") {
      s.named_templates.push_back(Printable(key.substr(24), 60));
    }
    // Provenance and licensing claims.
    if (key.substr(0, 8) == "general." && key != "general.architecture" && key != "general.name" &&
        key != "general.alignment" && key != "general.file_type" &&
        key != "general.quantization_version") {
      s.claims.emplace_back(Printable(key.substr(8), 80), ScalarText(kv.value));
    }
  }
  for (const gguf::Issue& i : f.issues()) s.warnings.push_back(i.code + ": " + i.message);
  for (const gguf::Issue& i : gguf::CheckModelMetadata(f))
    s.warnings.push_back(i.code + ": " + i.message);
  EstimateMemory(s, o);
  return s;
}

void ReadSiblingConfigs(ModelSummary& s, const std::filesystem::path& dir) {
  using nlohmann::json;
  auto load = [&dir](const char* name) -> std::optional<json> {
    auto text = core::ReadSmallFile((dir / name).string(), 16u << 20);
    if (!text.ok()) return std::nullopt;
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    return j;
  };
  auto uint_of = [](const json& j, const char* key) -> std::optional<std::uint64_t> {
    if (j.contains(key) && j[key].is_number_unsigned()) return j[key].get<std::uint64_t>();
    return std::nullopt;
  };
  if (auto cfg = load("config.json")) {
    const json& c = *cfg;
    if (c.contains("architectures") && c["architectures"].is_array() &&
        !c["architectures"].empty() && c["architectures"][0].is_string())
      s.architecture = Printable(c["architectures"][0].get<std::string>());
    else if (c.contains("model_type") && c["model_type"].is_string())
      s.architecture = Printable(c["model_type"].get<std::string>());
    s.context_length = uint_of(c, "max_position_embeddings");
    s.embedding_length = uint_of(c, "hidden_size");
    s.block_count = uint_of(c, "num_hidden_layers");
    s.feed_forward_length = uint_of(c, "intermediate_size");
    s.head_count = uint_of(c, "num_attention_heads");
    s.head_count_kv = uint_of(c, "num_key_value_heads");
    if (auto hd = uint_of(c, "head_dim")) s.key_length = s.value_length = hd;
    s.vocab_size = uint_of(c, "vocab_size");
    if (c.contains("rope_theta") && c["rope_theta"].is_number())
      s.rope_freq_base = c["rope_theta"].get<double>();
    s.expert_count = uint_of(c, "num_experts");
    if (!s.expert_count) s.expert_count = uint_of(c, "n_routed_experts");
    s.expert_used_count = uint_of(c, "num_experts_per_tok");
    if (c.contains("auto_map")) s.warnings.push_back("config.json has auto_map: custom code");
  }
  if (auto tc = load("tokenizer_config.json")) {
    const json& t = *tc;
    if (t.contains("chat_template")) {
      if (t["chat_template"].is_string()) {
        TemplateHead(s, t["chat_template"].get_ref<const std::string&>());
      } else if (t["chat_template"].is_array()) {
        for (const auto& e : t["chat_template"]) {
          if (!e.is_object() || !e.contains("template") || !e["template"].is_string()) continue;
          std::string name =
              e.contains("name") && e["name"].is_string() ? e["name"].get<std::string>() : "";
          if (name == "default" || !s.has_chat_template)
            TemplateHead(s, e["template"].get_ref<const std::string&>());
          if (!name.empty() && name != "default") s.named_templates.push_back(Printable(name, 60));
        }
      }
    }
    if (t.contains("tokenizer_class") && t["tokenizer_class"].is_string())
      s.tokenizer_model = Printable(t["tokenizer_class"].get<std::string>());
  }
}

Result<ModelSummary> InspectSafetensors(std::span<const std::byte> data, ModelSummary s,
                                        const InspectOptions& o,
                                        const std::optional<std::filesystem::path>& dir) {
  auto parsed = st::File::Parse(data);
  if (!parsed.ok()) return parsed.error();
  s.format = "safetensors";
  std::map<std::string, TensorTypeStat> types;
  for (const st::TensorInfo& t : parsed->tensors()) {
    auto& stat = types[t.dtype];
    stat.type = t.dtype;
    ++stat.tensors;
    stat.elements += t.n_elements;
    stat.bytes += t.end - t.begin;
    s.parameter_count += t.n_elements;
    s.weight_bytes += t.end - t.begin;
  }
  s.tensor_count = parsed->tensors().size();
  SortTypes(s, types);
  if (!s.tensor_types.empty()) s.file_type = s.tensor_types.front().type;
  for (const auto& [k, v] : parsed->metadata())
    s.claims.emplace_back(Printable(k, 80), Printable(v, 200));
  for (const st::Issue& i : parsed->issues()) s.warnings.push_back(i.code + ": " + i.message);
  if (dir) {
    try {
      ReadSiblingConfigs(s, *dir);
    } catch (const std::exception&) {
      s.warnings.push_back("config.json / tokenizer_config.json beside the file could not be read");
    }
  }
  EstimateMemory(s, o);
  return s;
}

Result<ModelSummary> Inspect(std::span<const std::byte> data, const std::string& path,
                             const InspectOptions& o,
                             const std::optional<std::filesystem::path>& dir) {
  ModelSummary s;
  s.path = path;
  s.file_size = data.size();
  if (data.size() >= 4 && core::AsStringView(data.first(4)) == "GGUF")
    return InspectGguf(data, s, o);
  if (data.size() >= 9 && static_cast<char>(data[8]) == '{')
    return InspectSafetensors(data, s, o, dir);
  return Unsupported("inspect: " + path + " is neither GGUF nor safetensors");
}

std::string Human(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char b[32];
  std::snprintf(b, sizeof(b), u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return b;
}

std::string Count(std::uint64_t n) {
  char b[32];
  if (n >= 1'000'000'000)
    std::snprintf(b, sizeof(b), "%.2fB", n / 1e9);
  else if (n >= 1'000'000)
    std::snprintf(b, sizeof(b), "%.2fM", n / 1e6);
  else if (n >= 1'000)
    std::snprintf(b, sizeof(b), "%.1fK", n / 1e3);
  else
    std::snprintf(b, sizeof(b), "%llu", static_cast<unsigned long long>(n));
  return b;
}

}  // namespace

Result<ModelSummary> InspectFile(const std::string& path, const InspectOptions& options) {
  auto mapped = core::MappedFile::Open(path);
  if (!mapped.ok()) return mapped.error();
  return Inspect(mapped->bytes(), path, options, std::filesystem::path(path).parent_path());
}

Result<ModelSummary> InspectBuffer(std::span<const std::byte> data, const std::string& display_name,
                                   const InspectOptions& options) {
  return Inspect(data, display_name, options, std::nullopt);
}

std::string RenderInspectText(const ModelSummary& s) {
  std::string out;
  auto line = [&out](const std::string& label, const std::string& value) {
    if (value.empty()) return;
    out += "  " + label;
    out.append(label.size() < 20 ? 20 - label.size() : 1, ' ');
    out += value + "\n";
  };
  auto opt = [](const std::optional<std::uint64_t>& v) { return v ? std::to_string(*v) : ""; };
  out += core::TerminalSafe(s.path) + " (" + s.format + ", " + Human(s.file_size) + ")\n";
  line("name", s.name);
  line("architecture", s.architecture);
  line("file type", s.file_type);
  line("parameters", s.tensor_count == 0
                         ? std::string("none (vocabulary-only file)")
                         : Count(s.parameter_count) + " in " + std::to_string(s.tensor_count) +
                               " tensors (" + Human(s.weight_bytes) + ")");
  std::string mix;
  for (const auto& t : s.tensor_types) {
    if (!mix.empty()) mix += ", ";
    char pct[16];
    std::snprintf(pct, sizeof(pct), "%.1f%%",
                  s.weight_bytes
                      ? 100.0 * static_cast<double>(t.bytes) / static_cast<double>(s.weight_bytes)
                      : 0.0);
    mix += t.type + " x" + std::to_string(t.tensors) + " (" + pct + ")";
  }
  line("tensor types", mix);
  line("context length", opt(s.context_length));
  line("layers", opt(s.block_count));
  line("embedding", opt(s.embedding_length));
  line("feed-forward", opt(s.feed_forward_length));
  if (s.head_count)
    line("attention heads",
         opt(s.head_count) + (s.head_count_kv ? " (kv " + opt(s.head_count_kv) + ")" : ""));
  if (s.expert_count)
    line("experts", opt(s.expert_count) + " (" + opt(s.expert_used_count) + " used)");
  if (s.active_parameter_count) {
    line("active params", Count(*s.active_parameter_count) + " per token (" +
                              Human(*s.active_weight_bytes) + "), selected experts only");
  }
  if (s.rope_freq_base) {
    char b[32];
    std::snprintf(b, sizeof(b), "%g", *s.rope_freq_base);
    line("rope base", b);
  }
  std::string tok = s.tokenizer_model;
  if (!s.tokenizer_pre.empty()) tok += " (pre " + s.tokenizer_pre + ")";
  if (s.vocab_size) tok += (tok.empty() ? "" : ", ") + std::to_string(*s.vocab_size) + " tokens";
  if (s.merges) tok += ", " + std::to_string(*s.merges) + " merges";
  line("tokenizer", tok);
  std::string specials;
  for (const auto& t : s.special_tokens) {
    if (!specials.empty()) specials += ", ";
    specials += t.role + "=" + std::to_string(t.id) + (t.text.empty() ? "" : " " + t.text);
  }
  line("special tokens", specials);
  if (s.has_chat_template) {
    line("chat template",
         std::to_string(s.chat_template_bytes) + " bytes" +
             (s.named_templates.empty()
                  ? ""
                  : ", plus " + std::to_string(s.named_templates.size()) + " named"));
    for (const auto& l : s.chat_template_head) out += "    | " + l + "\n";
    if (!s.chat_template_origin.empty()) out += "    origin: " + s.chat_template_origin + "\n";
    for (const auto& t : s.chat_template_text)
      out += std::string("    text (") + (t.official ? "official, " : "NOT OFFICIAL, ") +
             t.placement + "): " + t.text + "\n";
  } else {
    line("chat template", "none");
  }
  if (!s.claims.empty()) {
    out += "  claims (unverified):\n";
    for (const auto& [k, v] : s.claims) out += "    " + k + ": " + v + "\n";
  }
  std::string mem = Human(s.total_memory_bytes) + " at context " + std::to_string(s.context) +
                    " (weights " + Human(s.weight_bytes);
  mem += s.kv_bytes_per_token ? ", " + s.kv_type + " KV cache " + Human(s.kv_cache_bytes) + ")"
                              : ", KV cache unknown)";
  line("memory estimate", mem);
  for (const auto& w : s.warnings) out += "  warning: " + core::TerminalSafe(w) + "\n";
  return out;
}

std::string RenderInspectJson(const ModelSummary& s) {
  using nlohmann::json;
  json j;
  j["path"] = s.path;
  j["format"] = s.format;
  j["file_size"] = s.file_size;
  j["name"] = s.name;
  j["architecture"] = s.architecture;
  j["file_type"] = s.file_type;
  j["tensor_count"] = s.tensor_count;
  j["parameter_count"] = s.parameter_count;
  j["weight_bytes"] = s.weight_bytes;
  if (s.active_parameter_count) {
    j["active_parameter_count"] = *s.active_parameter_count;
    j["active_weight_bytes"] = *s.active_weight_bytes;
  }
  json types = json::array();
  for (const auto& t : s.tensor_types)
    types.push_back(
        {{"type", t.type}, {"tensors", t.tensors}, {"elements", t.elements}, {"bytes", t.bytes}});
  j["tensor_types"] = types;
  json h = json::object();
  auto put = [&h](const char* k, const std::optional<std::uint64_t>& v) {
    h[k] = v ? json(*v) : json(nullptr);
  };
  put("context_length", s.context_length);
  put("embedding_length", s.embedding_length);
  put("block_count", s.block_count);
  put("feed_forward_length", s.feed_forward_length);
  put("head_count", s.head_count);
  put("head_count_kv", s.head_count_kv);
  put("key_length", s.key_length);
  put("value_length", s.value_length);
  put("expert_count", s.expert_count);
  put("expert_used_count", s.expert_used_count);
  h["rope_freq_base"] = s.rope_freq_base ? json(*s.rope_freq_base) : json(nullptr);
  j["hyperparameters"] = h;
  json tok;
  tok["model"] = s.tokenizer_model;
  tok["pre"] = s.tokenizer_pre;
  tok["vocab_size"] = s.vocab_size ? json(*s.vocab_size) : json(nullptr);
  tok["merges"] = s.merges ? json(*s.merges) : json(nullptr);
  tok["add_bos"] = s.add_bos ? json(*s.add_bos) : json(nullptr);
  tok["add_eos"] = s.add_eos ? json(*s.add_eos) : json(nullptr);
  json specials = json::array();
  for (const auto& t : s.special_tokens)
    specials.push_back({{"role", t.role}, {"id", t.id}, {"text", t.text}});
  tok["special_tokens"] = specials;
  j["tokenizer"] = tok;
  j["chat_template"] = {
      {"present", s.has_chat_template},
      {"bytes", s.chat_template_bytes},
      {"head", s.chat_template_head},
      {"named", s.named_templates},
      {"origin", s.chat_template_origin},
      {"text", [&] {
         json arr = json::array();
         for (const auto& t : s.chat_template_text)
           arr.push_back({{"text", t.text}, {"placement", t.placement}, {"official", t.official}});
         return arr;
       }()}};
  json claims = json::object();
  for (const auto& [k, v] : s.claims) claims[k] = v;
  j["claims"] = claims;
  j["memory"] = {{"context", s.context},
                 {"weights_bytes", s.weight_bytes},
                 {"kv_bytes_per_token", s.kv_bytes_per_token},
                 {"kv_type", s.kv_type},
                 {"kv_cache_bytes", s.kv_cache_bytes},
                 {"total_bytes", s.total_memory_bytes}};
  j["warnings"] = s.warnings;
  // Strings come from untrusted files and were made printable; replace anything invalid anyway.
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace airlock::scan
