// qwen2moe: Qwen1.5-MoE / Qwen2-MoE. qwen2's attention (q/k/v biases, RoPE NEOX); every layer's
// FFN is routed: softmax over the experts, top-K without renormalization, plus a shared expert
// scaled by sigmoid(ffn_gate_inp_shexp . x). Shapes: d = n_embd, q_dim = n_head * head_dim,
// kv_dim = n_head_kv * head_dim, E = n_expert, K = n_expert_used, ffe = n_ff_exp,
// ffs = n_ff_shexp, n = rows in the forward pass.
#include "engine/blocks/attention.h"
#include "engine/blocks/moe.h"
#include "engine/blocks/norm.h"
#include "engine/internal/workspace.h"
#include "engine/models/models.h"

namespace airlock::engine::internal {

Status LoadQwen2Moe(ModelLoader& ld) {
  ModelConfig& c = ld.config();
  ExpertConfig& m = c.moe;
  // Hyperparameters.
  AIRLOCK_TRY(LoadBaseHparams(ld));
  AIRLOCK_TRY(LoadExpertHparams(ld));
  AIRLOCK_TRY(RefuseFusedTensors(ld));
  m.norm_weights = false;
  m.shared_gate = true;
  std::optional<std::int64_t> shared_width;  // the key, else the shared expert's shape
  if (const auto* t = ld.FindTensor(Tensor::kFfnGateShexp, c.n_layer - 1); t && t->n_dims >= 2)
    shared_width = static_cast<std::int64_t>(t->ne[1]);
  AIRLOCK_ASSIGN_OR_RETURN(m.n_ff_shexp, ld.Int(Key::kExpertSharedFeedForwardLength, shared_width));
  AIRLOCK_TRY(LoadGqaHparams(ld));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_ff, ld.Int(Key::kFeedForwardLength, 0, 0, kMaxDim));
  AIRLOCK_TRY(LoadRopeScaling(ld));
  c.rope = RopeStyle::kNeox;
  // Tensors: token_embd {d, vocab}, output {d, vocab} (required), output_norm {d}; per layer
  // qwen2's attention (attn_norm, attn_q/k/v with optional biases, attn_output), ffn_norm {d},
  // ffn_gate_inp {d, E}, ffn_gate_exps/ffn_up_exps {d, ffe, E}, ffn_down_exps {ffe, d, E},
  // ffn_gate_shexp/ffn_up_shexp {d, ffs}, ffn_down_shexp {ffs, d}, ffn_gate_inp_shexp {d}.
  AIRLOCK_TRY(LoadEmbeddingsAndOutput(ld, /*output_optional=*/false));
  for (int il = 0; il < c.n_layer; ++il) {
    AIRLOCK_TRY(LoadGqaAttention(ld, il, /*qk_norm=*/false));
    AIRLOCK_TRY(LoadMoeFfn(ld, il));
  }
  return Status::Ok();
}

void Qwen2MoeLayers(Workspace& ws) {
  const ModelConfig& c = *ws.c;
  const int n = ws.n();
  const std::int64_t d = c.n_embd;
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& lw = ws.w->layers[il];
    // attention norm: xn[n][d] = rmsnorm(x) * attn_norm
    RmsNormRows(ws.x.data(), ws.xn.data(), n, d, lw.attn_norm, c.rms_eps);
    // q[n][q_dim], k_new/v_new[n][kv_dim] = xn . wq, wk, wv + q/k/v biases
    ProjectQkv(ws, lw);
    // RoPE (NEOX) on q and k
    RopeQk(ws);
    // each row's k/v into its session's cache at its position
    StoreKv(ws, il, ws.k_new.data(), ws.kv_dim, ws.v_new.data(), ws.kv_dim);
    // attn[n][q_dim] = softmax(q . K^T * kq_scale) . V over positions 0..pos
    AttendGqa(ws, il);
    // tmp[n][d] = attn . wo; residual
    ProjectOutput(ws, lw.wo, ws.attn.data(), ws.q_dim);
    AddTo(ws.x.data(), ws.tmp.data(), n * d);
    // FFN norm: xn = rmsnorm(x) * ffn_norm
    RmsNormRows(ws.x.data(), ws.xn.data(), n, d, lw.ffn_norm, c.rms_eps);
    // routing: choice[n][K], choice_weight[n][K] from softmax(xn . router)
    RouteExperts(ws, lw);
    // tmp[n][d] = sum of weight * expert(xn) over the selected experts
    ExpertFfn(ws, lw);
    // tmp += sigmoid(gate_inp_shexp . xn) * shared_expert(xn)
    AddSharedExpert(ws, lw);
    // residual
    AddTo(ws.x.data(), ws.tmp.data(), n * d);
  }
}

}  // namespace airlock::engine::internal
