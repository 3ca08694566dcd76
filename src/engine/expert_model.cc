// Loading of the expert architectures (qwen2moe, qwen3moe, deepseek2): metadata keys and tensor
// shapes as llama.cpp reads them (key names in src/llama-arch.cpp, load_hparams/load_tensors
// in src/models/<arch>.cpp, at ggml-org/llama.cpp@d8a24cce).
#include "engine/internal/expert_model.h"

#include <cmath>
#include <map>

#include "engine/internal/gguf_loader.h"
#include "engine/internal/weights.h"

namespace airlock::engine::internal {

namespace {

constexpr std::int64_t kMaxExperts = 1 << 12;

// Width of a routed expert from the key, else from the tensor's shape (ne[1]).
Result<std::int64_t> ExpertWidth(GgufLoader& ld, const std::string& key, const std::string& tensor,
                                 const std::string& path) {
  const gguf::TensorInfo* t = ld.Find(tensor);
  std::optional<std::int64_t> fallback;
  if (t != nullptr && t->n_dims >= 2) fallback = static_cast<std::int64_t>(t->ne[1]);
  auto v = ld.Int(key, fallback);
  if (!v && !fallback) return Err(StatusCode::kCorrupt, path, "cannot tell " + key);
  return v;
}

}  // namespace

bool IsExpertArchitecture(std::string_view a) {
  return a == "qwen2moe" || a == "qwen3moe" || a == "deepseek2";
}

Result<std::string> LoadExpertModel(const gguf::File& f, const std::string& path, ModelConfig* cp,
                                    ModelWeights* w) {
  ModelConfig& c = *cp;
  ExpertConfig& m = c.moe;
  const std::string& arch = c.architecture;
  const bool deepseek = arch == "deepseek2";
  GgufLoader ld(f, path);
  const std::string p = arch + ".";
  AIRLOCK_ASSIGN_OR_RETURN(c.n_embd, ld.Int(p + "embedding_length", std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_layer, ld.Int(p + "block_count", std::nullopt, 1, kMaxLayers));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_head, ld.Int(p + "attention.head_count", std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_head_kv, ld.Int(p + "attention.head_count_kv", c.n_head));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_ctx_train, ld.Int(p + "context_length", 4096, 1, 1 << 24));
  AIRLOCK_ASSIGN_OR_RETURN(double eps, ld.Float(p + "attention.layer_norm_rms_epsilon", -1.0));
  AIRLOCK_ASSIGN_OR_RETURN(double base, ld.Float(p + "rope.freq_base", 10000.0));
  if (eps < 0 || eps > 1 || base <= 1)
    return Err(StatusCode::kCorrupt, path, "bad or missing rms epsilon, or bad rope base");
  c.rms_eps = static_cast<float>(eps);
  c.rope_base = static_cast<float>(base);
  c.rope = deepseek ? RopeStyle::kNorm : RopeStyle::kNeox;
  if (c.n_head % c.n_head_kv != 0)
    return Err(StatusCode::kCorrupt, path, "head_count is not a multiple of head_count_kv");

  // Experts.
  AIRLOCK_ASSIGN_OR_RETURN(m.n_expert, ld.Int(p + "expert_count", std::nullopt, 1, kMaxExperts));
  AIRLOCK_ASSIGN_OR_RETURN(m.n_expert_used,
                           ld.Int(p + "expert_used_count", std::nullopt, 1, m.n_expert));
  const std::string first_moe = "blk." + std::to_string(c.n_layer - 1) + ".";
  AIRLOCK_ASSIGN_OR_RETURN(m.n_ff_exp, ExpertWidth(ld, p + "expert_feed_forward_length",
                                                   first_moe + "ffn_gate_exps.weight", path));
  if (f.FindTensor(first_moe + "ffn_gate_up_exps.weight"))
    return Err(StatusCode::kUnsupported, path, "fused ffn_gate_up_exps tensors are not supported");
  AIRLOCK_ASSIGN_OR_RETURN(m.n_group, ld.Int(p + "expert_group_count", 1, 0, m.n_expert));
  AIRLOCK_ASSIGN_OR_RETURN(m.n_group_used, ld.Int(p + "expert_group_used_count", 1, 0, kMaxDim));
  if (m.n_group == 0) m.n_group = 1;
  if (m.n_group_used == 0) m.n_group_used = m.n_group;
  if (m.n_expert % m.n_group != 0 || m.n_group_used > m.n_group ||
      m.n_group_used * (m.n_expert / m.n_group) < m.n_expert_used) {
    return Err(StatusCode::kCorrupt, path, "expert groups do not fit the expert counts");
  }
  if (arch == "qwen2moe") {
    m.norm_weights = false;
    m.shared_gate = true;
    AIRLOCK_ASSIGN_OR_RETURN(m.n_ff_shexp, ExpertWidth(ld, p + "expert_shared_feed_forward_length",
                                                       first_moe + "ffn_gate_shexp.weight", path));
  } else if (arch == "qwen3moe") {
    m.norm_weights = true;
  } else {
    AIRLOCK_ASSIGN_OR_RETURN(m.n_layer_dense_lead,
                             ld.Int(p + "leading_dense_block_count", 0, 0, c.n_layer));
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t shared, ld.Int(p + "expert_shared_count", 0, 0, 64));
    m.n_ff_shexp = static_cast<int>(shared * m.n_ff_exp);
    AIRLOCK_ASSIGN_OR_RETURN(double scale, ld.Float(p + "expert_weights_scale", 1.0));
    if (!(scale > 0)) return Err(StatusCode::kCorrupt, path, "expert_weights_scale must be > 0");
    m.weights_scale = static_cast<float>(scale);
    AIRLOCK_ASSIGN_OR_RETURN(m.norm_weights, ld.Bool(p + "expert_weights_norm", false));
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t gating, ld.Int(p + "expert_gating_func", 1, 0, 2));
    m.gating = gating == 2 ? ExpertGating::kSigmoid : ExpertGating::kSoftmax;
  }

  // Attention shape.
  if (deepseek) {
    m.mla = true;
    if (!f.Find(p + "attention.key_length_mla")) {
      return Err(StatusCode::kUnsupported, path,
                 "deepseek2 file without attention.key_length_mla (old unsplit attn_kv_b "
                 "layout); reconvert it with a current llama.cpp");
    }
    AIRLOCK_ASSIGN_OR_RETURN(m.q_lora_rank, ld.Int(p + "attention.q_lora_rank", 0, 0, kMaxDim));
    AIRLOCK_ASSIGN_OR_RETURN(m.kv_lora_rank, ld.Int(p + "attention.kv_lora_rank", std::nullopt));
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t k_mla, ld.Int(p + "attention.key_length_mla", 0));
    AIRLOCK_ASSIGN_OR_RETURN(m.v_head_dim, ld.Int(p + "attention.value_length_mla", 0));
    AIRLOCK_ASSIGN_OR_RETURN(c.n_rot, ld.Int(p + "rope.dimension_count", std::nullopt));
    if (c.n_rot % 2 != 0 || c.n_rot >= k_mla)
      return Err(StatusCode::kCorrupt, path,
                 "rope.dimension_count must be even and < key_length_mla");
    m.qk_nope = static_cast<int>(k_mla - c.n_rot);
    c.head_dim = static_cast<int>(k_mla);
    c.n_head_kv = 1;
  } else {
    if (c.n_embd % c.n_head != 0 && !f.Find(p + "attention.key_length"))
      return Err(StatusCode::kCorrupt, path, "embedding_length is not a multiple of head_count");
    AIRLOCK_ASSIGN_OR_RETURN(c.head_dim, ld.Int(p + "attention.key_length", c.n_embd / c.n_head));
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t v_dim, ld.Int(p + "attention.value_length", c.head_dim));
    if (v_dim != c.head_dim)
      return Err(StatusCode::kUnsupported, path, "value_length != key_length");
    AIRLOCK_ASSIGN_OR_RETURN(c.n_rot, ld.Int(p + "rope.dimension_count", c.head_dim));
    if (c.n_rot > c.head_dim || c.n_rot % 2 != 0 || c.head_dim % 2 != 0)
      return Err(StatusCode::kCorrupt, path, "rope.dimension_count must be even and <= head dim");
  }
  AIRLOCK_ASSIGN_OR_RETURN(c.n_ff, ld.Int(p + "feed_forward_length", 0, 0, kMaxDim));
  if (deepseek && m.n_layer_dense_lead > 0 && c.n_ff == 0)
    return Err(StatusCode::kCorrupt, path, "feed_forward_length is missing (dense layers)");

  // RoPE scaling.
  std::string scaling = "none";
  if (auto s = f.GetString(p + "rope.scaling.type")) scaling = std::string(*s);
  AIRLOCK_ASSIGN_OR_RETURN(double factor, ld.Float(p + "rope.scaling.factor", 1.0));
  if (f.Find(p + "rope.scale_linear") && !f.Find(p + "rope.scaling.factor")) {
    AIRLOCK_ASSIGN_OR_RETURN(factor, ld.Float(p + "rope.scale_linear", 1.0));
    scaling = "linear";
  }
  if (scaling != "none" && !(factor > 0))
    return Err(StatusCode::kCorrupt, path, "rope scaling factor must be positive");
  if (scaling == "linear" || scaling == "yarn") {
    c.rope_freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling != "none") {
    return Err(StatusCode::kUnsupported, path, "rope scaling '" + scaling + "' is not supported");
  }
  if (scaling == "yarn") {
    m.yarn = true;
    m.yarn_ext_factor = 1.0f;
    AIRLOCK_ASSIGN_OR_RETURN(double af, ld.Float(p + "rope.scaling.attn_factor", 1.0));
    AIRLOCK_ASSIGN_OR_RETURN(double bf, ld.Float(p + "rope.scaling.yarn_beta_fast", 32.0));
    AIRLOCK_ASSIGN_OR_RETURN(double bs, ld.Float(p + "rope.scaling.yarn_beta_slow", 1.0));
    AIRLOCK_ASSIGN_OR_RETURN(double lm, ld.Float(p + "rope.scaling.yarn_log_multiplier", 0.0));
    AIRLOCK_ASSIGN_OR_RETURN(m.yarn_orig_ctx, ld.Int(p + "rope.scaling.original_context_length",
                                                     c.n_ctx_train, 1, 1 << 24));
    if (!(af > 0) || !(bf > 0) || !(bs > 0))
      return Err(StatusCode::kCorrupt, path, "bad YaRN parameters");
    m.yarn_attn_factor = static_cast<float>(af);
    m.yarn_beta_fast = static_cast<float>(bf);
    m.yarn_beta_slow = static_cast<float>(bs);
    m.yarn_log_mul = static_cast<float>(lm);  // the converter stores 0.1 * mscale_all_dim
  }
  if (deepseek) {
    // kq scale = mscale^2 / sqrt(k_mla), mscale = attn_factor * (1 + log_mul * ln(factor)).
    float mscale = 1.0f;
    if (m.yarn) {
      mscale = m.yarn_attn_factor * (1.0f + m.yarn_log_mul * std::log(1.0f / c.rope_freq_scale));
    }
    c.kq_scale = mscale * mscale / std::sqrt(static_cast<float>(c.head_dim));
  } else {
    c.kq_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    if (f.Find(p + "attention.scale")) {
      AIRLOCK_ASSIGN_OR_RETURN(double s, ld.Float(p + "attention.scale", 0.0));
      if (s > 0) c.kq_scale = static_cast<float>(s);
    }
  }

  // Tensors.
  const gguf::TensorInfo* embd = ld.Find("token_embd.weight");
  if (embd == nullptr || embd->n_dims != 2)
    return Err(StatusCode::kCorrupt, path, "token_embd.weight is missing or not 2-D");
  if (embd->ne[1] < 1 || embd->ne[1] > (1u << 24))
    return Err(StatusCode::kCorrupt, path, "bad vocabulary size");
  c.n_vocab = static_cast<int>(embd->ne[1]);
  const std::int64_t d = c.n_embd;
  AIRLOCK_ASSIGN_OR_RETURN(w->token_embd, ld.Matrix("token_embd.weight", d, c.n_vocab));
  AIRLOCK_ASSIGN_OR_RETURN(
      w->output, ld.Matrix("output.weight", d, c.n_vocab, /*optional=*/arch != "qwen2moe"));
  if (!w->output.valid()) {
    c.tied_output = true;
    w->output = w->token_embd;
  }
  AIRLOCK_ASSIGN_OR_RETURN(w->output_norm, ld.Vector("output_norm.weight", d));
  std::uint64_t unused_expert_bytes = 0;
  w->layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    LayerWeights& l = w->layers[i];
    ExpertLayerWeights& x = l.x;
    const std::string b = "blk." + std::to_string(i) + ".";
    AIRLOCK_ASSIGN_OR_RETURN(l.attn_norm, ld.Vector(b + "attn_norm.weight", d));
    AIRLOCK_ASSIGN_OR_RETURN(l.ffn_norm, ld.Vector(b + "ffn_norm.weight", d));
    if (deepseek) {
      const std::int64_t q_out = std::int64_t{c.n_head} * c.head_dim;
      if (m.q_lora_rank > 0) {
        AIRLOCK_ASSIGN_OR_RETURN(x.wq_a, ld.Matrix(b + "attn_q_a.weight", d, m.q_lora_rank));
        AIRLOCK_ASSIGN_OR_RETURN(x.q_a_norm, ld.Vector(b + "attn_q_a_norm.weight", m.q_lora_rank));
        AIRLOCK_ASSIGN_OR_RETURN(x.wq_b, ld.Matrix(b + "attn_q_b.weight", m.q_lora_rank, q_out));
      } else {
        AIRLOCK_ASSIGN_OR_RETURN(l.wq, ld.Matrix(b + "attn_q.weight", d, q_out));
      }
      AIRLOCK_ASSIGN_OR_RETURN(x.wkv_a,
                               ld.Matrix(b + "attn_kv_a_mqa.weight", d, m.kv_lora_rank + c.n_rot));
      AIRLOCK_ASSIGN_OR_RETURN(x.kv_a_norm, ld.Vector(b + "attn_kv_a_norm.weight", m.kv_lora_rank));
      if (ld.Find(b + "attn_k_b.weight") == nullptr && ld.Find(b + "attn_kv_b.weight")) {
        return Err(StatusCode::kUnsupported, path,
                   "unsplit attn_kv_b tensors are not supported; reconvert the model");
      }
      AIRLOCK_ASSIGN_OR_RETURN(
          x.k_b, ld.Stacked(b + "attn_k_b.weight", m.qk_nope, m.kv_lora_rank, c.n_head));
      AIRLOCK_ASSIGN_OR_RETURN(
          x.v_b, ld.Stacked(b + "attn_v_b.weight", m.kv_lora_rank, m.v_head_dim, c.n_head));
      AIRLOCK_ASSIGN_OR_RETURN(
          l.wo, ld.Matrix(b + "attn_output.weight", std::int64_t{c.n_head} * m.v_head_dim, d));
    } else {
      const std::int64_t q_dim = std::int64_t{c.n_head} * c.head_dim,
                         kv_dim = std::int64_t{c.n_head_kv} * c.head_dim;
      AIRLOCK_ASSIGN_OR_RETURN(l.wq, ld.Matrix(b + "attn_q.weight", d, q_dim));
      AIRLOCK_ASSIGN_OR_RETURN(l.wk, ld.Matrix(b + "attn_k.weight", d, kv_dim));
      AIRLOCK_ASSIGN_OR_RETURN(l.wv, ld.Matrix(b + "attn_v.weight", d, kv_dim));
      AIRLOCK_ASSIGN_OR_RETURN(l.q_bias, ld.Vector(b + "attn_q.bias", q_dim, true));
      AIRLOCK_ASSIGN_OR_RETURN(l.k_bias, ld.Vector(b + "attn_k.bias", kv_dim, true));
      AIRLOCK_ASSIGN_OR_RETURN(l.v_bias, ld.Vector(b + "attn_v.bias", kv_dim, true));
      const bool need_norm = arch == "qwen3moe";
      AIRLOCK_ASSIGN_OR_RETURN(l.q_norm,
                               ld.Vector(b + "attn_q_norm.weight", c.head_dim, !need_norm));
      AIRLOCK_ASSIGN_OR_RETURN(l.k_norm,
                               ld.Vector(b + "attn_k_norm.weight", c.head_dim, !need_norm));
      AIRLOCK_ASSIGN_OR_RETURN(l.wo, ld.Matrix(b + "attn_output.weight", q_dim, d));
    }
    if (i < m.n_layer_dense_lead) {
      AIRLOCK_ASSIGN_OR_RETURN(l.w_gate, ld.Matrix(b + "ffn_gate.weight", d, c.n_ff));
      AIRLOCK_ASSIGN_OR_RETURN(l.w_up, ld.Matrix(b + "ffn_up.weight", d, c.n_ff));
      AIRLOCK_ASSIGN_OR_RETURN(l.w_down, ld.Matrix(b + "ffn_down.weight", c.n_ff, d));
      continue;
    }
    x.is_moe = true;
    AIRLOCK_ASSIGN_OR_RETURN(x.router, ld.Matrix(b + "ffn_gate_inp.weight", d, m.n_expert));
    AIRLOCK_ASSIGN_OR_RETURN(x.probs_bias, ld.Vector(b + "exp_probs_b.bias", m.n_expert, true));
    AIRLOCK_ASSIGN_OR_RETURN(x.gate_exps,
                             ld.Stacked(b + "ffn_gate_exps.weight", d, m.n_ff_exp, m.n_expert));
    AIRLOCK_ASSIGN_OR_RETURN(x.up_exps,
                             ld.Stacked(b + "ffn_up_exps.weight", d, m.n_ff_exp, m.n_expert));
    AIRLOCK_ASSIGN_OR_RETURN(x.down_exps,
                             ld.Stacked(b + "ffn_down_exps.weight", m.n_ff_exp, d, m.n_expert));
    for (const StackedMatrices* s : {&x.gate_exps, &x.up_exps, &x.down_exps}) {
      unused_expert_bytes += s->matrix_bytes() * (m.n_expert - m.n_expert_used);
    }
    if (m.n_ff_shexp > 0) {
      AIRLOCK_ASSIGN_OR_RETURN(x.gate_shexp,
                               ld.Matrix(b + "ffn_gate_shexp.weight", d, m.n_ff_shexp));
      AIRLOCK_ASSIGN_OR_RETURN(x.up_shexp, ld.Matrix(b + "ffn_up_shexp.weight", d, m.n_ff_shexp));
      AIRLOCK_ASSIGN_OR_RETURN(x.down_shexp,
                               ld.Matrix(b + "ffn_down_shexp.weight", m.n_ff_shexp, d));
    }
    if (m.shared_gate && m.n_ff_shexp > 0) {
      AIRLOCK_ASSIGN_OR_RETURN(x.shexp_gate, ld.Vector(b + "ffn_gate_inp_shexp.weight", d));
    }
  }
  c.weight_bytes = ld.weight_bytes();
  // A decoded token reads one embedding row (untied), not the whole table, and only the
  // selected experts.
  std::uint64_t active = c.weight_bytes - unused_expert_bytes;
  if (!c.tied_output) active -= w->token_embd.row_bytes * (w->token_embd.rows - 1);
  m.active_weight_bytes = active;
  std::string summary;
  for (const auto& [type, count] : ld.type_counts()) {
    if (!summary.empty()) summary += ", ";
    summary += type + ": " + std::to_string(count);
  }
  return summary;
}

}  // namespace airlock::engine::internal
