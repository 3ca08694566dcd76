// deepseek2: DeepSeek-V2 / V2-Lite / V3 / R1 (and Kimi-K2-style files converted to it).
// Multi-head latent attention (blocks/mla.h) with an optional q_lora bottleneck, RoPE NORM on the
// n_rot rope dimensions, YaRN with the magnitude folded into kq_scale; the first
// n_layer_dense_lead layers have a dense SwiGLU FFN, the others route: softmax or sigmoid gating,
// a selection bias (exp_probs_b), expert groups, optional renormalization and scaling, plus
// ungated shared experts. Shapes: d = n_embd, H = n_head, hq = qk_nope + n_rot (head_dim),
// kvl = kv_lora_rank, vh = v_head_dim, E = n_expert, ffe = n_ff_exp, ffs = n_ff_shexp,
// n = rows in the forward pass.
#include <cmath>

#include "engine/blocks/ffn.h"
#include "engine/blocks/mla.h"
#include "engine/blocks/moe.h"
#include "engine/blocks/norm.h"
#include "engine/internal/workspace.h"
#include "engine/models/models.h"

namespace airlock::engine::internal {

namespace {

// MLA hyperparameters: q_lora, kv_lora, key/value widths, n_rot; head_dim becomes qk_nope + n_rot
// and n_head_kv 1 (the one compressed cache row).
Status LoadMlaHparams(ModelLoader& ld) {
  ModelConfig& c = ld.config();
  ExpertConfig& m = c.moe;
  m.mla = true;
  if (!ld.Has(Key::kKeyLengthMla)) {
    return ld.Fail(StatusCode::kUnsupported,
                   "deepseek2 file without attention.key_length_mla (old unsplit attn_kv_b "
                   "layout); reconvert it with a current llama.cpp");
  }
  AIRLOCK_ASSIGN_OR_RETURN(m.q_lora_rank, ld.Int(Key::kQLoraRank, 0, 0, kMaxDim));
  AIRLOCK_ASSIGN_OR_RETURN(m.kv_lora_rank, ld.Int(Key::kKvLoraRank, std::nullopt));
  AIRLOCK_ASSIGN_OR_RETURN(std::int64_t k_mla, ld.Int(Key::kKeyLengthMla, 0));
  AIRLOCK_ASSIGN_OR_RETURN(m.v_head_dim, ld.Int(Key::kValueLengthMla, 0));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_rot, ld.Int(Key::kRopeDimensionCount, std::nullopt));
  if (c.n_rot % 2 != 0 || c.n_rot >= k_mla)
    return ld.Fail(StatusCode::kCorrupt, "rope.dimension_count must be even and < key_length_mla");
  m.qk_nope = static_cast<int>(k_mla - c.n_rot);
  c.head_dim = static_cast<int>(k_mla);
  c.n_head_kv = 1;
  return Status::Ok();
}

}  // namespace

Status LoadDeepseek2(ModelLoader& ld) {
  ModelConfig& c = ld.config();
  ExpertConfig& m = c.moe;
  // Hyperparameters.
  AIRLOCK_TRY(LoadBaseHparams(ld));
  AIRLOCK_TRY(LoadExpertHparams(ld));
  AIRLOCK_TRY(RefuseFusedTensors(ld));
  AIRLOCK_ASSIGN_OR_RETURN(m.n_layer_dense_lead,
                           ld.Int(Key::kLeadingDenseBlockCount, 0, 0, c.n_layer));
  AIRLOCK_ASSIGN_OR_RETURN(std::int64_t shared, ld.Int(Key::kExpertSharedCount, 0, 0, 64));
  m.n_ff_shexp = static_cast<int>(shared * m.n_ff_exp);
  AIRLOCK_ASSIGN_OR_RETURN(double scale, ld.Float(Key::kExpertWeightsScale, 1.0));
  if (!(scale > 0) || scale > 1e6)
    return ld.Fail(StatusCode::kCorrupt, "expert_weights_scale must be > 0");
  m.weights_scale = static_cast<float>(scale);
  AIRLOCK_ASSIGN_OR_RETURN(m.norm_weights, ld.Bool(Key::kExpertWeightsNorm, false));
  AIRLOCK_ASSIGN_OR_RETURN(std::int64_t gating, ld.Int(Key::kExpertGatingFunc, 1, 0, 2));
  m.gating = gating == 2 ? ExpertGating::kSigmoid : ExpertGating::kSoftmax;
  AIRLOCK_TRY(LoadMlaHparams(ld));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_ff, ld.Int(Key::kFeedForwardLength, 0, 0, kMaxDim));
  if (m.n_layer_dense_lead > 0 && c.n_ff == 0)
    return ld.Fail(StatusCode::kCorrupt, "feed_forward_length is missing (dense layers)");
  AIRLOCK_TRY(LoadRopeScaling(ld));
  c.rope = RopeStyle::kNorm;
  // kq_scale = mscale^2 / sqrt(qk_nope + n_rot), mscale = attn_factor * (1 + log_mul * ln(factor)).
  float mscale = 1.0f;
  if (c.yarn.enabled) {
    mscale = c.yarn.attn_factor * (1.0f + c.yarn.log_mul * std::log(1.0f / c.rope_freq_scale));
  }
  c.kq_scale = mscale * mscale / std::sqrt(static_cast<float>(c.head_dim));

  // Tensors: token_embd {d, vocab}, output {d, vocab} (optional: tied), output_norm {d}; per
  // layer attn_norm {d}, then either attn_q {d, H hq} (q_lora 0) or attn_q_a {d, q_lora},
  // attn_q_a_norm {q_lora}, attn_q_b {q_lora, H hq}; attn_kv_a_mqa {d, kvl + n_rot},
  // attn_kv_a_norm {kvl}, attn_k_b {qk_nope, kvl, H}, attn_v_b {kvl, vh, H},
  // attn_output {H vh, d}; then the dense FFN (leading layers) or the routed one (ffn_gate_inp
  // {d, E}, exp_probs_b {E} optional, the expert stacks, the shared expert {d, ffs}).
  AIRLOCK_TRY(LoadEmbeddingsAndOutput(ld));
  const std::int64_t d = c.n_embd, q_out = std::int64_t{c.n_head} * c.head_dim;
  for (int il = 0; il < c.n_layer; ++il) {
    LayerWeights& l = ld.weights().layers[il];
    AIRLOCK_ASSIGN_OR_RETURN(l.attn_norm, ld.Vector(Tensor::kAttnNorm, il, d));
    if (m.q_lora_rank > 0) {
      AIRLOCK_ASSIGN_OR_RETURN(l.wq_a, ld.Matrix(Tensor::kAttnQA, il, d, m.q_lora_rank));
      AIRLOCK_ASSIGN_OR_RETURN(l.q_a_norm, ld.Vector(Tensor::kAttnQANorm, il, m.q_lora_rank));
      AIRLOCK_ASSIGN_OR_RETURN(l.wq_b, ld.Matrix(Tensor::kAttnQB, il, m.q_lora_rank, q_out));
    } else {
      AIRLOCK_ASSIGN_OR_RETURN(l.wq, ld.Matrix(Tensor::kAttnQ, il, d, q_out));
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        l.wkv_a, ld.Matrix(Tensor::kAttnKvAMqa, il, d, std::int64_t{m.kv_lora_rank} + c.n_rot));
    AIRLOCK_ASSIGN_OR_RETURN(l.kv_a_norm, ld.Vector(Tensor::kAttnKvANorm, il, m.kv_lora_rank));
    if (!ld.HasTensor(Tensor::kAttnKB, il) && ld.HasTensor(Tensor::kAttnKvB, il)) {
      return ld.Fail(StatusCode::kUnsupported,
                     "unsplit attn_kv_b tensors are not supported; reconvert the model");
    }
    AIRLOCK_ASSIGN_OR_RETURN(l.k_b,
                             ld.Stacked(Tensor::kAttnKB, il, m.qk_nope, m.kv_lora_rank, c.n_head));
    AIRLOCK_ASSIGN_OR_RETURN(
        l.v_b, ld.Stacked(Tensor::kAttnVB, il, m.kv_lora_rank, m.v_head_dim, c.n_head));
    AIRLOCK_ASSIGN_OR_RETURN(
        l.wo, ld.Matrix(Tensor::kAttnOutput, il, std::int64_t{c.n_head} * m.v_head_dim, d));
    if (il < m.n_layer_dense_lead) {
      AIRLOCK_TRY(LoadDenseFfn(ld, il));
    } else {
      AIRLOCK_TRY(LoadMoeFfn(ld, il));
    }
  }
  return Status::Ok();
}

void Deepseek2Layers(Workspace& ws) {
  const ModelConfig& c = *ws.c;
  const int n = ws.n();
  const std::int64_t d = c.n_embd;
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& lw = ws.w->layers[il];
    // attention norm: xn[n][d] = rmsnorm(x) * attn_norm
    RmsNormRows(ws.x.data(), ws.xn.data(), n, d, lw.attn_norm, c.rms_eps);
    // tmp[n][d] = multi-head latent attention (compressed KV cached per row); residual
    LatentAttention(ws, il, lw);
    AddTo(ws.x.data(), ws.tmp.data(), n * d);
    // FFN norm: xn = rmsnorm(x) * ffn_norm
    RmsNormRows(ws.x.data(), ws.xn.data(), n, d, lw.ffn_norm, c.rms_eps);
    if (!lw.is_moe) {
      // leading dense layers: tmp[n][d] = SwiGLU(xn)
      SwiGluFfn(ws, lw.w_gate, lw.w_up, lw.w_down, ws.tmp.data());
    } else {
      // routing: choice[n][K], choice_weight[n][K] (bias, groups, renormalization, scale)
      RouteExperts(ws, lw);
      // tmp[n][d] = sum of weight * expert(xn) + shared experts(xn)
      ExpertFfn(ws, lw);
      AddSharedExpert(ws, lw);
    }
    // residual
    AddTo(ws.x.data(), ws.tmp.data(), n * d);
  }
}

}  // namespace airlock::engine::internal
