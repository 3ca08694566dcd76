#include "engine/model.h"

#include <cmath>
#include <map>
#include <string_view>

#include "engine/internal/expert_model.h"
#include "engine/internal/kernels.h"
#include "engine/internal/weights.h"

namespace airlock::engine {

namespace {

namespace gguf = formats::gguf;

struct ArchTraits {
  std::string_view name;
  RopeStyle rope;
  bool requires_qk_norm;
};

// Dense architectures the forward pass implements; see research/inference.md §1.3.
constexpr ArchTraits kArchs[] = {
    {"llama", RopeStyle::kNorm, false},
    {"qwen2", RopeStyle::kNeox, false},
    {"qwen3", RopeStyle::kNeox, true},
};

constexpr int kMaxDim = 1 << 17;  // any width or count beyond this is not a real model
constexpr int kMaxLayers = 512;   // llama.cpp's LLAMA_MAX_LAYERS

Status Err(StatusCode code, const std::string& path, const std::string& detail) {
  return Status(code, "engine: cannot load model at " + path + ": " + detail);
}

class Loader {
 public:
  Loader(const gguf::File& file, const std::string& path) : file_(file), path_(path) {}

  Result<std::int64_t> Int(const std::string& key, std::optional<std::int64_t> fallback,
                           std::int64_t min_value = 1, std::int64_t max_value = kMaxDim) {
    const gguf::KeyValue* kv = file_.Find(key);
    std::optional<std::int64_t> v;
    if (kv == nullptr) {
      if (!fallback) return Err(StatusCode::kCorrupt, path_, "required key " + key + " is missing");
      v = fallback;
    } else if (auto arr = kv->value.AsArray()) {
      // Per-layer arrays: accept them when every entry is equal (dense models).
      if (arr->empty()) return Err(StatusCode::kCorrupt, path_, key + " is an empty array");
      v = arr->IntAt(0);
      for (std::uint64_t i = 1; v && i < arr->size(); ++i) {
        if (arr->IntAt(i) != v) {
          return Err(StatusCode::kUnsupported, path_, key + " differs between layers");
        }
      }
    } else {
      v = kv->value.AsInt();
    }
    if (!v || *v < min_value || *v > max_value) {
      return Err(StatusCode::kCorrupt, path_,
                 key + " must be an integer in [" + std::to_string(min_value) + ", " +
                     std::to_string(max_value) + "]");
    }
    return *v;
  }

  Result<double> Float(const std::string& key, std::optional<double> fallback) {
    const gguf::KeyValue* kv = file_.Find(key);
    if (kv == nullptr) {
      if (!fallback) return Err(StatusCode::kCorrupt, path_, "required key " + key + " is missing");
      return *fallback;
    }
    auto v = kv->value.AsFloat();
    if (!v || !std::isfinite(*v))
      return Err(StatusCode::kCorrupt, path_, key + " must be a finite float");
    return *v;
  }

  const gguf::TensorInfo* Find(const std::string& name) { return file_.FindTensor(name); }

  // A 2-D weight matrix {cols, rows}.
  Result<WeightMatrix> Matrix(const std::string& name, std::int64_t cols, std::int64_t rows,
                              bool optional = false) {
    const gguf::TensorInfo* t = file_.FindTensor(name);
    if (t == nullptr) {
      if (optional) return WeightMatrix{};
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " is missing");
    }
    const TensorTypeInfo* info = GetTensorTypeInfo(t->type);
    if (info == nullptr) {
      return Err(StatusCode::kUnsupported, path_,
                 "tensor " + name + " has type " + gguf::GgmlTypeName(t->type) +
                     ", which the engine does not support (supported: F32, F16, BF16, Q4_0, Q4_1, "
                     "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)");
    }
    if (t->n_dims != 2 || static_cast<std::int64_t>(t->ne[0]) != cols ||
        static_cast<std::int64_t>(t->ne[1]) != rows) {
      return Err(StatusCode::kCorrupt, path_,
                 "tensor " + name + " has shape [" + std::to_string(t->ne[0]) + ", " +
                     std::to_string(t->ne[1]) + "], expected [" + std::to_string(cols) + ", " +
                     std::to_string(rows) + "]");
    }
    if (cols % info->block_elems != 0) {
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " rows are not whole blocks");
    }
    WeightMatrix w;
    w.type = static_cast<TensorType>(t->type);
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = static_cast<std::size_t>(cols / info->block_elems) * info->block_bytes;
    auto data = file_.TensorData(*t);
    if (data.size() < w.row_bytes * static_cast<std::size_t>(rows)) {
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " data is shorter than its shape");
    }
    w.data = reinterpret_cast<const std::uint8_t*>(data.data());
    weight_bytes_ += w.row_bytes * rows;
    ++type_counts_[gguf::GgmlTypeName(t->type)];
    return w;
  }

  // A 1-D vector of `n` values (F32, F16 or BF16), converted to float.
  Result<std::vector<float>> Vector(const std::string& name, std::int64_t n,
                                    bool optional = false) {
    const gguf::TensorInfo* t = file_.FindTensor(name);
    if (t == nullptr) {
      if (optional) return std::vector<float>{};
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " is missing");
    }
    const auto type = static_cast<TensorType>(t->type);
    if (type != TensorType::kF32 && type != TensorType::kF16 && type != TensorType::kBF16) {
      return Err(StatusCode::kUnsupported, path_,
                 "tensor " + name + " has type " + gguf::GgmlTypeName(t->type) +
                     ", expected F32/F16/BF16 for a 1-D tensor");
    }
    if (t->n_elements != static_cast<std::uint64_t>(n) ||
        t->ne[0] != static_cast<std::uint64_t>(n)) {
      return Err(StatusCode::kCorrupt, path_,
                 "tensor " + name + " has " + std::to_string(t->n_elements) +
                     " elements, expected " + std::to_string(n));
    }
    auto data = file_.TensorData(*t);
    const std::size_t elem = type == TensorType::kF32 ? 4 : 2;
    if (data.size() < elem * n)
      return Err(StatusCode::kCorrupt, path_, "tensor " + name + " is truncated");
    std::vector<float> out(n);
    DequantizeRow(type, data.data(), out.data(), n);
    for (float v : out) {
      if (!std::isfinite(v))
        return Err(StatusCode::kCorrupt, path_, "tensor " + name + " has non-finite values");
    }
    weight_bytes_ += data.size();
    ++type_counts_[gguf::GgmlTypeName(t->type)];
    return out;
  }

  std::uint64_t weight_bytes() const { return weight_bytes_; }
  const std::map<std::string, int>& type_counts() const { return type_counts_; }

 private:
  const gguf::File& file_;
  const std::string& path_;
  std::uint64_t weight_bytes_ = 0;
  std::map<std::string, int> type_counts_;
};

}  // namespace

Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::Load(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<Model> model(new Model());
  AIRLOCK_ASSIGN_OR_RETURN(model->file_, core::MappedFile::Open(path));
  auto parsed = gguf::File::Parse(model->file_.bytes());
  if (!parsed) {
    return Status(parsed.error().code(),
                  "engine: refusing " + path +
                      ": it fails the GGUF structural checks: " + parsed.error().message());
  }
  model->gguf_ = std::move(parsed).value();
  const gguf::File& f = model->gguf_;
  if (options.strict && !f.issues().empty()) {
    return Err(StatusCode::kCorrupt, path, "GGUF issue: " + f.issues()[0].message);
  }

  ModelConfig& c = model->config_;
  c.architecture = std::string(f.architecture());
  if (auto name = f.GetString("general.name")) c.name = std::string(*name);
  const ArchTraits* arch = nullptr;
  for (const auto& a : kArchs) {
    if (a.name == c.architecture) arch = &a;
  }
  if (internal::IsExpertArchitecture(c.architecture)) {  // MoE / MLA: expert_model.cc
    auto w = std::make_unique<internal::ModelWeights>();
    AIRLOCK_ASSIGN_OR_RETURN(model->type_summary_,
                             internal::LoadExpertModel(f, path, &c, w.get()));
    model->weights_ = std::move(w);
    return model;
  }
  if (arch == nullptr) {
    const std::string detail = c.architecture.empty()
                                   ? "general.architecture is missing"
                                   : "architecture '" + c.architecture +
                                         "' is not supported (supported: llama, qwen2, qwen3, qwen2moe, "
                                           "qwen3moe, deepseek2)";
    return Err(StatusCode::kUnsupported, path, detail);
  }
  Loader ld(f, path);
  const std::string p = c.architecture + ".";
  AIRLOCK_ASSIGN_OR_RETURN(c.n_embd, ld.Int(p + "embedding_length", std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_layer, ld.Int(p + "block_count", std::nullopt, 1, kMaxLayers));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_ff, ld.Int(p + "feed_forward_length", std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_head, ld.Int(p + "attention.head_count", std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_head_kv, ld.Int(p + "attention.head_count_kv", c.n_head));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_ctx_train, ld.Int(p + "context_length", 4096, 1, 1 << 24));
  if (c.n_embd % c.n_head != 0 && !f.Find(p + "attention.key_length")) {
    return Err(StatusCode::kCorrupt, path, "embedding_length is not a multiple of head_count");
  }
  AIRLOCK_ASSIGN_OR_RETURN(c.head_dim, ld.Int(p + "attention.key_length", c.n_embd / c.n_head));
  AIRLOCK_ASSIGN_OR_RETURN(std::int64_t v_dim, ld.Int(p + "attention.value_length", c.head_dim));
  if (v_dim != c.head_dim) return Err(StatusCode::kUnsupported, path, "value_length != key_length");
  AIRLOCK_ASSIGN_OR_RETURN(c.n_rot, ld.Int(p + "rope.dimension_count", c.head_dim));
  if (c.n_head % c.n_head_kv != 0) {
    return Err(StatusCode::kCorrupt, path, "head_count is not a multiple of head_count_kv");
  }
  if (c.n_rot > c.head_dim || c.n_rot % 2 != 0 || c.head_dim % 2 != 0) {
    return Err(StatusCode::kCorrupt, path, "rope.dimension_count must be even and <= head dim");
  }
  AIRLOCK_ASSIGN_OR_RETURN(double eps,
                           ld.Float(p + "attention.layer_norm_rms_epsilon", std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(double base, ld.Float(p + "rope.freq_base", 10000.0));
  if (eps < 0 || eps > 1 || base <= 1)
    return Err(StatusCode::kCorrupt, path, "bad rms epsilon or rope base");
  c.rms_eps = static_cast<float>(eps);
  c.rope_base = static_cast<float>(base);
  c.rope = arch->rope;

  // RoPE scaling: none, linear; llama3 factors come as the rope_freqs tensor.
  std::string scaling = "none";
  if (auto s = f.GetString(p + "rope.scaling.type")) scaling = std::string(*s);
  double factor = 1.0;
  if (f.Find(p + "rope.scaling.factor")) {
    AIRLOCK_ASSIGN_OR_RETURN(factor, ld.Float(p + "rope.scaling.factor", 1.0));
  } else if (f.Find(p + "rope.scale_linear")) {
    AIRLOCK_ASSIGN_OR_RETURN(factor, ld.Float(p + "rope.scale_linear", 1.0));
    scaling = "linear";
  }
  if (scaling == "linear") {
    if (factor <= 0) return Err(StatusCode::kCorrupt, path, "rope scaling factor must be positive");
    c.rope_freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling != "none" && scaling != "llama3" && !(scaling == "yarn" && factor <= 1.0)) {
    return Err(StatusCode::kUnsupported, path, "rope scaling '" + scaling + "' is not supported");
  }
  c.kq_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  if (f.Find(p + "attention.scale")) {
    AIRLOCK_ASSIGN_OR_RETURN(double s, ld.Float(p + "attention.scale", 0.0));
    if (s > 0) c.kq_scale = static_cast<float>(s);
  }
  if (f.FindTensor("blk.0.attn_qkv.weight")) {
    return Err(StatusCode::kUnsupported, path, "fused attn_qkv tensors are not supported");
  }
  if (f.FindTensor("blk.0.ffn_gate_inp.weight")) {
    return Err(StatusCode::kUnsupported, path, "mixture-of-experts layers are not supported");
  }

  // Tensors.
  auto w = std::make_unique<internal::ModelWeights>();
  const gguf::TensorInfo* embd = ld.Find("token_embd.weight");
  if (embd == nullptr || embd->n_dims != 2) {
    return Err(StatusCode::kCorrupt, path, "token_embd.weight is missing or not 2-D");
  }
  if (embd->ne[1] < 1 || embd->ne[1] > (1u << 24))
    return Err(StatusCode::kCorrupt, path, "bad vocabulary size");
  c.n_vocab = static_cast<int>(embd->ne[1]);
  const std::int64_t d = c.n_embd, q_dim = std::int64_t{c.n_head} * c.head_dim,
                     kv_dim = std::int64_t{c.n_head_kv} * c.head_dim;
  AIRLOCK_ASSIGN_OR_RETURN(w->token_embd, ld.Matrix("token_embd.weight", d, c.n_vocab));
  AIRLOCK_ASSIGN_OR_RETURN(w->output, ld.Matrix("output.weight", d, c.n_vocab, /*optional=*/true));
  if (!w->output.valid()) {
    c.tied_output = true;
    w->output = w->token_embd;
  }
  AIRLOCK_ASSIGN_OR_RETURN(w->output_norm, ld.Vector("output_norm.weight", d));
  AIRLOCK_ASSIGN_OR_RETURN(w->rope_freqs, ld.Vector("rope_freqs.weight", c.n_rot / 2, true));
  c.has_rope_freqs = !w->rope_freqs.empty();
  for (float v : w->rope_freqs) {
    if (!(v > 0)) return Err(StatusCode::kCorrupt, path, "rope_freqs.weight must be positive");
  }
  w->layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    internal::LayerWeights& l = w->layers[i];
    const std::string b = "blk." + std::to_string(i) + ".";
    AIRLOCK_ASSIGN_OR_RETURN(l.attn_norm, ld.Vector(b + "attn_norm.weight", d));
    AIRLOCK_ASSIGN_OR_RETURN(l.wq, ld.Matrix(b + "attn_q.weight", d, q_dim));
    AIRLOCK_ASSIGN_OR_RETURN(l.wk, ld.Matrix(b + "attn_k.weight", d, kv_dim));
    AIRLOCK_ASSIGN_OR_RETURN(l.wv, ld.Matrix(b + "attn_v.weight", d, kv_dim));
    AIRLOCK_ASSIGN_OR_RETURN(l.q_bias, ld.Vector(b + "attn_q.bias", q_dim, true));
    AIRLOCK_ASSIGN_OR_RETURN(l.k_bias, ld.Vector(b + "attn_k.bias", kv_dim, true));
    AIRLOCK_ASSIGN_OR_RETURN(l.v_bias, ld.Vector(b + "attn_v.bias", kv_dim, true));
    const bool need_norm = arch->requires_qk_norm;
    AIRLOCK_ASSIGN_OR_RETURN(l.q_norm, ld.Vector(b + "attn_q_norm.weight", c.head_dim, !need_norm));
    AIRLOCK_ASSIGN_OR_RETURN(l.k_norm, ld.Vector(b + "attn_k_norm.weight", c.head_dim, !need_norm));
    AIRLOCK_ASSIGN_OR_RETURN(l.wo, ld.Matrix(b + "attn_output.weight", q_dim, d));
    AIRLOCK_ASSIGN_OR_RETURN(l.ffn_norm, ld.Vector(b + "ffn_norm.weight", d));
    AIRLOCK_ASSIGN_OR_RETURN(l.w_gate, ld.Matrix(b + "ffn_gate.weight", d, c.n_ff));
    AIRLOCK_ASSIGN_OR_RETURN(l.w_up, ld.Matrix(b + "ffn_up.weight", d, c.n_ff));
    AIRLOCK_ASSIGN_OR_RETURN(l.w_down, ld.Matrix(b + "ffn_down.weight", c.n_ff, d));
  }
  c.weight_bytes = ld.weight_bytes();
  std::string summary;
  for (const auto& [type, count] : ld.type_counts()) {
    if (!summary.empty()) summary += ", ";
    summary += type + ": " + std::to_string(count);
  }
  model->type_summary_ = summary;
  model->weights_ = std::move(w);
  return model;
}

std::string Model::TypeSummary() const { return type_summary_; }

}  // namespace airlock::engine
