// qwen3moe: Qwen3 MoE (30B-A3B, 235B-A22B). qwen3's attention (per-head q/k RMS norms, RoPE
// NEOX, no biases); every layer's FFN is routed: softmax over the experts, top-K renormalized to
// sum 1, no shared expert. Shapes: d = n_embd, q_dim = n_head * head_dim, kv_dim = n_head_kv *
// head_dim, E = n_expert, K = n_expert_used, ffe = n_ff_exp, n = rows in the forward pass.
#include "engine/blocks/attention.h"
#include "engine/blocks/moe.h"
#include "engine/blocks/norm.h"
#include "engine/internal/workspace.h"
#include "engine/models/models.h"

namespace airlock::engine::internal {

Status LoadQwen3Moe(ModelLoader& ld) {
  ModelConfig& c = ld.config();
  // Hyperparameters.
  AIRLOCK_TRY(LoadBaseHparams(ld));
  AIRLOCK_TRY(LoadExpertHparams(ld));
  AIRLOCK_TRY(RefuseFusedTensors(ld));
  c.moe.norm_weights = true;
  AIRLOCK_TRY(LoadGqaHparams(ld));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_ff, ld.Int(Key::kFeedForwardLength, 0, 0, kMaxDim));
  AIRLOCK_TRY(LoadRopeScaling(ld));
  c.rope = RopeStyle::kNeox;
  // Tensors: token_embd {d, vocab}, output {d, vocab} (optional: tied), output_norm {d}; per
  // layer attn_norm {d}, attn_q {d, q_dim}, attn_k/attn_v {d, kv_dim}, attn_q_norm/attn_k_norm
  // {head_dim}, attn_output {q_dim, d}, ffn_norm {d}, ffn_gate_inp {d, E},
  // ffn_gate_exps/ffn_up_exps {d, ffe, E}, ffn_down_exps {ffe, d, E}.
  AIRLOCK_TRY(LoadEmbeddingsAndOutput(ld));
  for (int il = 0; il < c.n_layer; ++il) {
    AIRLOCK_TRY(LoadGqaAttention(ld, il, /*qk_norm=*/true));
    AIRLOCK_TRY(LoadMoeFfn(ld, il));
  }
  return Status::Ok();
}

void Qwen3MoeLayers(Workspace& ws) {
  const ModelConfig& c = *ws.c;
  const int n = ws.n();
  const std::int64_t d = c.n_embd;
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& lw = ws.w->layers[il];
    // attention norm: xn[n][d] = rmsnorm(x) * attn_norm
    RmsNormRows(ws.x.data(), ws.xn.data(), n, d, lw.attn_norm, c.rms_eps);
    // q[n][q_dim], k_new/v_new[n][kv_dim] = xn . wq, wk, wv
    ProjectQkv(ws, lw);
    // per-head RMS norm of q and k
    RmsNormHeads(ws.q.data(), n, ws.q_dim, c.n_head, c.head_dim, lw.q_norm, c.rms_eps);
    RmsNormHeads(ws.k_new.data(), n, ws.kv_dim, c.n_head_kv, c.head_dim, lw.k_norm, c.rms_eps);
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
    // routing: choice[n][K], choice_weight[n][K] = renormalized top-K of softmax(xn . router)
    RouteExperts(ws, lw);
    // tmp[n][d] = sum of weight * expert(xn) over the selected experts; residual
    ExpertFfn(ws, lw);
    AddTo(ws.x.data(), ws.tmp.data(), n * d);
  }
}

}  // namespace airlock::engine::internal
