// Loading steps the architecture files share: the base hyperparameters, the GQA head shape, rope
// scaling, expert counts, and the tensor groups several architectures have in common.
#include <cmath>

#include "engine/models/models.h"

namespace airlock::engine::internal {

namespace {
constexpr std::int64_t kMaxExperts = 1 << 12;
}  // namespace

Status LoadBaseHparams(ModelLoader& ld) {
  ModelConfig& c = ld.config();
  AIRLOCK_ASSIGN_OR_RETURN(c.n_embd, ld.Int(Key::kEmbeddingLength, std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_layer, ld.Int(Key::kBlockCount, std::nullopt, 1, kMaxLayers));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_head, ld.Int(Key::kHeadCount, std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_head_kv, ld.Int(Key::kHeadCountKv, c.n_head));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_ctx_train, ld.Int(Key::kContextLength, 4096, 1, 1 << 24));
  if (c.n_head % c.n_head_kv != 0)
    return ld.Fail(StatusCode::kCorrupt, "head_count is not a multiple of head_count_kv");
  AIRLOCK_ASSIGN_OR_RETURN(double eps, ld.Float(Key::kRmsEpsilon, std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(double base, ld.Float(Key::kRopeFreqBase, 10000.0));
  if (eps < 0 || eps > 1 || base <= 1)
    return ld.Fail(StatusCode::kCorrupt, "bad rms epsilon or rope base");
  c.rms_eps = static_cast<float>(eps);
  c.rope_base = static_cast<float>(base);
  return Status::Ok();
}

Status LoadGqaHparams(ModelLoader& ld) {
  ModelConfig& c = ld.config();
  if (c.n_embd % c.n_head != 0 && !ld.Has(Key::kKeyLength))
    return ld.Fail(StatusCode::kCorrupt, "embedding_length is not a multiple of head_count");
  AIRLOCK_ASSIGN_OR_RETURN(c.head_dim, ld.Int(Key::kKeyLength, c.n_embd / c.n_head));
  AIRLOCK_ASSIGN_OR_RETURN(std::int64_t v_dim, ld.Int(Key::kValueLength, c.head_dim));
  if (v_dim != c.head_dim) return ld.Fail(StatusCode::kUnsupported, "value_length != key_length");
  AIRLOCK_ASSIGN_OR_RETURN(c.n_rot, ld.Int(Key::kRopeDimensionCount, c.head_dim));
  if (c.n_rot > c.head_dim || c.n_rot % 2 != 0 || c.head_dim % 2 != 0)
    return ld.Fail(StatusCode::kCorrupt, "rope.dimension_count must be even and <= head dim");
  c.kq_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  if (ld.Has(Key::kAttentionScale)) {
    AIRLOCK_ASSIGN_OR_RETURN(double s, ld.Float(Key::kAttentionScale, 0.0));
    if (s > 0) c.kq_scale = static_cast<float>(s);
  }
  return Status::Ok();
}

Status LoadRopeScaling(ModelLoader& ld) {
  ModelConfig& c = ld.config();
  std::string scaling = "none";
  if (auto s = ld.String(Key::kRopeScalingType)) scaling = std::string(*s);
  double factor = 1.0;
  if (ld.Has(Key::kRopeScalingFactor)) {
    AIRLOCK_ASSIGN_OR_RETURN(factor, ld.Float(Key::kRopeScalingFactor, 1.0));
  } else if (ld.Has(Key::kRopeScaleLinear)) {
    AIRLOCK_ASSIGN_OR_RETURN(factor, ld.Float(Key::kRopeScaleLinear, 1.0));
    scaling = "linear";
  }
  if (scaling != "none" && !(factor > 0))
    return ld.Fail(StatusCode::kCorrupt, "rope scaling factor must be positive");
  if (scaling == "linear" || scaling == "yarn") {
    c.rope_freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling != "none" && scaling != "llama3") {
    return ld.Fail(StatusCode::kUnsupported, "rope scaling '" + scaling + "' is not supported");
  }
  if (scaling != "yarn") return Status::Ok();
  YarnConfig& y = c.yarn;
  y.enabled = true;
  y.ext_factor = 1.0f;
  AIRLOCK_ASSIGN_OR_RETURN(double af, ld.Float(Key::kRopeScalingAttnFactor, 1.0));
  AIRLOCK_ASSIGN_OR_RETURN(double bf, ld.Float(Key::kRopeScalingYarnBetaFast, 32.0));
  AIRLOCK_ASSIGN_OR_RETURN(double bs, ld.Float(Key::kRopeScalingYarnBetaSlow, 1.0));
  AIRLOCK_ASSIGN_OR_RETURN(double lm, ld.Float(Key::kRopeScalingYarnLogMul, 0.0));
  AIRLOCK_ASSIGN_OR_RETURN(y.orig_ctx, ld.Int(Key::kRopeScalingOrigCtx, c.n_ctx_train, 1, 1 << 24));
  if (!(af > 0) || !(bf > 0) || !(bs > 0) || !(lm >= 0) || af > 1e3 || bf > 1e6 || bs > 1e6 ||
      lm > 1e3) {
    return ld.Fail(StatusCode::kCorrupt, "bad YaRN parameters");
  }
  y.attn_factor = static_cast<float>(af);
  y.beta_fast = static_cast<float>(bf);
  y.beta_slow = static_cast<float>(bs);
  y.log_mul = static_cast<float>(lm);  // the converter stores 0.1 * mscale_all_dim
  return Status::Ok();
}

Status LoadExpertHparams(ModelLoader& ld) {
  ModelConfig& c = ld.config();
  ExpertConfig& m = c.moe;
  AIRLOCK_ASSIGN_OR_RETURN(m.n_expert, ld.Int(Key::kExpertCount, std::nullopt, 1, kMaxExperts));
  AIRLOCK_ASSIGN_OR_RETURN(m.n_expert_used,
                           ld.Int(Key::kExpertUsedCount, std::nullopt, 1, m.n_expert));
  // The expert width: the key, else the shape of the last layer's (always routed) experts.
  std::optional<std::int64_t> width;
  if (const auto* t = ld.FindTensor(Tensor::kFfnGateExps, c.n_layer - 1); t && t->n_dims >= 2)
    width = static_cast<std::int64_t>(t->ne[1]);
  AIRLOCK_ASSIGN_OR_RETURN(m.n_ff_exp, ld.Int(Key::kExpertFeedForwardLength, width));
  AIRLOCK_ASSIGN_OR_RETURN(m.n_group, ld.Int(Key::kExpertGroupCount, 1, 0, m.n_expert));
  AIRLOCK_ASSIGN_OR_RETURN(m.n_group_used, ld.Int(Key::kExpertGroupUsedCount, 1, 0, kMaxDim));
  if (m.n_group == 0) m.n_group = 1;
  if (m.n_group_used == 0) m.n_group_used = m.n_group;
  if (m.n_expert % m.n_group != 0 || m.n_group_used > m.n_group ||
      m.n_group_used * (m.n_expert / m.n_group) < m.n_expert_used) {
    return ld.Fail(StatusCode::kCorrupt, "expert groups do not fit the expert counts");
  }
  return Status::Ok();
}

Status LoadEmbeddingsAndOutput(ModelLoader& ld, bool output_optional) {
  ModelConfig& c = ld.config();
  ModelWeights& w = ld.weights();
  const gguf::TensorInfo* embd = ld.FindTensor(Tensor::kTokenEmbd);
  if (embd == nullptr || embd->n_dims != 2)
    return ld.Fail(StatusCode::kCorrupt, "token_embd.weight is missing or not 2-D");
  if (embd->ne[1] < 1 || embd->ne[1] > (1u << 24))
    return ld.Fail(StatusCode::kCorrupt, "bad vocabulary size");
  c.n_vocab = static_cast<int>(embd->ne[1]);
  const std::int64_t d = c.n_embd;
  AIRLOCK_ASSIGN_OR_RETURN(w.token_embd, ld.Matrix(Tensor::kTokenEmbd, -1, d, c.n_vocab));
  AIRLOCK_ASSIGN_OR_RETURN(w.output, ld.Matrix(Tensor::kOutput, -1, d, c.n_vocab, output_optional));
  if (!w.output.valid()) {
    c.tied_output = true;
    w.output = w.token_embd;
  }
  AIRLOCK_ASSIGN_OR_RETURN(w.output_norm, ld.Vector(Tensor::kOutputNorm, -1, d));
  AIRLOCK_ASSIGN_OR_RETURN(w.rope_freqs, ld.Vector(Tensor::kRopeFreqs, -1, c.n_rot / 2, true));
  c.has_rope_freqs = !w.rope_freqs.empty();
  for (float v : w.rope_freqs) {
    if (!(v > 0)) return ld.Fail(StatusCode::kCorrupt, "rope_freqs.weight must be positive");
  }
  w.layers.resize(c.n_layer);
  return Status::Ok();
}

Status LoadGqaAttention(ModelLoader& ld, int il, bool qk_norm) {
  const ModelConfig& c = ld.config();
  LayerWeights& l = ld.weights().layers[il];
  const std::int64_t d = c.n_embd, q_dim = std::int64_t{c.n_head} * c.head_dim,
                     kv_dim = std::int64_t{c.n_head_kv} * c.head_dim;
  AIRLOCK_ASSIGN_OR_RETURN(l.attn_norm, ld.Vector(Tensor::kAttnNorm, il, d));
  AIRLOCK_ASSIGN_OR_RETURN(l.wq, ld.Matrix(Tensor::kAttnQ, il, d, q_dim));
  AIRLOCK_ASSIGN_OR_RETURN(l.wk, ld.Matrix(Tensor::kAttnK, il, d, kv_dim));
  AIRLOCK_ASSIGN_OR_RETURN(l.wv, ld.Matrix(Tensor::kAttnV, il, d, kv_dim));
  AIRLOCK_ASSIGN_OR_RETURN(l.q_bias, ld.Vector(Tensor::kAttnQBias, il, q_dim, true));
  AIRLOCK_ASSIGN_OR_RETURN(l.k_bias, ld.Vector(Tensor::kAttnKBias, il, kv_dim, true));
  AIRLOCK_ASSIGN_OR_RETURN(l.v_bias, ld.Vector(Tensor::kAttnVBias, il, kv_dim, true));
  if (qk_norm) {
    AIRLOCK_ASSIGN_OR_RETURN(l.q_norm, ld.Vector(Tensor::kAttnQNorm, il, c.head_dim));
    AIRLOCK_ASSIGN_OR_RETURN(l.k_norm, ld.Vector(Tensor::kAttnKNorm, il, c.head_dim));
  }
  AIRLOCK_ASSIGN_OR_RETURN(l.wo, ld.Matrix(Tensor::kAttnOutput, il, q_dim, d));
  return Status::Ok();
}

Status LoadDenseFfn(ModelLoader& ld, int il) {
  const ModelConfig& c = ld.config();
  LayerWeights& l = ld.weights().layers[il];
  const std::int64_t d = c.n_embd;
  AIRLOCK_ASSIGN_OR_RETURN(l.ffn_norm, ld.Vector(Tensor::kFfnNorm, il, d));
  AIRLOCK_ASSIGN_OR_RETURN(l.w_gate, ld.Matrix(Tensor::kFfnGate, il, d, c.n_ff));
  AIRLOCK_ASSIGN_OR_RETURN(l.w_up, ld.Matrix(Tensor::kFfnUp, il, d, c.n_ff));
  AIRLOCK_ASSIGN_OR_RETURN(l.w_down, ld.Matrix(Tensor::kFfnDown, il, c.n_ff, d));
  return Status::Ok();
}

Status LoadMoeFfn(ModelLoader& ld, int il) {
  const ModelConfig& c = ld.config();
  const ExpertConfig& m = c.moe;
  LayerWeights& l = ld.weights().layers[il];
  const std::int64_t d = c.n_embd;
  l.is_moe = true;
  AIRLOCK_ASSIGN_OR_RETURN(l.ffn_norm, ld.Vector(Tensor::kFfnNorm, il, d));
  AIRLOCK_ASSIGN_OR_RETURN(l.router, ld.Matrix(Tensor::kFfnGateInp, il, d, m.n_expert));
  AIRLOCK_ASSIGN_OR_RETURN(l.probs_bias, ld.Vector(Tensor::kExpProbsBias, il, m.n_expert, true));
  AIRLOCK_ASSIGN_OR_RETURN(l.gate_exps,
                           ld.Stacked(Tensor::kFfnGateExps, il, d, m.n_ff_exp, m.n_expert));
  AIRLOCK_ASSIGN_OR_RETURN(l.up_exps,
                           ld.Stacked(Tensor::kFfnUpExps, il, d, m.n_ff_exp, m.n_expert));
  AIRLOCK_ASSIGN_OR_RETURN(l.down_exps,
                           ld.Stacked(Tensor::kFfnDownExps, il, m.n_ff_exp, d, m.n_expert));
  if (m.n_ff_shexp > 0) {
    AIRLOCK_ASSIGN_OR_RETURN(l.gate_shexp, ld.Matrix(Tensor::kFfnGateShexp, il, d, m.n_ff_shexp));
    AIRLOCK_ASSIGN_OR_RETURN(l.up_shexp, ld.Matrix(Tensor::kFfnUpShexp, il, d, m.n_ff_shexp));
    AIRLOCK_ASSIGN_OR_RETURN(l.down_shexp, ld.Matrix(Tensor::kFfnDownShexp, il, m.n_ff_shexp, d));
    if (m.shared_gate) {
      AIRLOCK_ASSIGN_OR_RETURN(l.shexp_gate, ld.Vector(Tensor::kFfnGateInpShexp, il, d));
    }
  }
  return Status::Ok();
}

Status RefuseFusedTensors(ModelLoader& ld) {
  if (ld.HasTensor(Tensor::kAttnQkv, 0))
    return ld.Fail(StatusCode::kUnsupported, "fused attn_qkv tensors are not supported");
  if (ld.HasTensor(Tensor::kFfnGateUpExps, ld.config().n_layer - 1))
    return ld.Fail(StatusCode::kUnsupported, "fused ffn_gate_up_exps tensors are not supported");
  return Status::Ok();
}

}  // namespace airlock::engine::internal
