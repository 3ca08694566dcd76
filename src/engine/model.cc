#include "engine/model.h"

#include <cmath>
#include <map>
#include <string_view>

#include "engine/internal/expert_model.h"
#include "engine/internal/gguf_loader.h"
#include "engine/internal/kernels.h"
#include "engine/internal/weights.h"

namespace airlock::engine {

namespace {

namespace gguf = formats::gguf;
using internal::Err;
using internal::kMaxLayers;

struct ArchTraits {
  std::string_view name;
  RopeStyle rope;
  bool requires_qk_norm;
};

// Dense architectures the forward pass implements; RoPE style per architecture as llama.cpp's
// llama_model_rope_type gives it (src/llama-model.cpp, ggml-org/llama.cpp@d8a24cce).
constexpr ArchTraits kArchs[] = {
    {"llama", RopeStyle::kNorm, false},
    {"qwen2", RopeStyle::kNeox, false},
    {"qwen3", RopeStyle::kNeox, true},
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
    AIRLOCK_ASSIGN_OR_RETURN(model->type_summary_, internal::LoadExpertModel(f, path, &c, w.get()));
    model->weights_ = std::move(w);
    return model;
  }
  if (arch == nullptr) {
    const std::string detail =
        c.architecture.empty()
            ? "general.architecture is missing"
            : "architecture '" + c.architecture +
                  "' is not supported (supported: llama, qwen2, qwen3, qwen2moe, "
                  "qwen3moe, deepseek2)";
    return Err(StatusCode::kUnsupported, path, detail);
  }
  internal::GgufLoader ld(f, path);
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
