// qwen2: Qwen2 / Qwen2.5 (and DeepSeek-R1-Distill-Qwen). As llama, except q/k/v projections carry
// biases and RoPE is NEOX style (pairs j, j + n_rot/2). Shapes: d = n_embd, q_dim = n_head *
// head_dim, kv_dim = n_head_kv * head_dim, ff = n_ff, n = rows in the forward pass.
#include "engine/blocks/attention.h"
#include "engine/blocks/ffn.h"
#include "engine/blocks/norm.h"
#include "engine/internal/workspace.h"
#include "engine/models/models.h"

namespace airlock::engine::internal {

Status LoadQwen2(ModelLoader& ld) {
  ModelConfig& c = ld.config();
  // Hyperparameters.
  AIRLOCK_TRY(LoadBaseHparams(ld));
  AIRLOCK_TRY(LoadGqaHparams(ld));
  AIRLOCK_TRY(LoadRopeScaling(ld));
  AIRLOCK_ASSIGN_OR_RETURN(c.n_ff, ld.Int(Key::kFeedForwardLength, std::nullopt));
  c.rope = RopeStyle::kNeox;
  AIRLOCK_TRY(RefuseFusedTensors(ld));
  if (ld.HasTensor(Tensor::kFfnGateInp, 0))
    return ld.Fail(StatusCode::kUnsupported, "mixture-of-experts layers are not supported");
  // Tensors: token_embd {d, vocab}, output {d, vocab} (optional: tied), output_norm {d};
  // per layer attn_norm {d}, attn_q {d, q_dim} + attn_q.bias {q_dim}, attn_k/attn_v
  // {d, kv_dim} + biases {kv_dim} (biases optional), attn_output {q_dim, d}, ffn_norm {d},
  // ffn_gate/ffn_up {d, ff}, ffn_down {ff, d}.
  AIRLOCK_TRY(LoadEmbeddingsAndOutput(ld));
  for (int il = 0; il < c.n_layer; ++il) {
    AIRLOCK_TRY(LoadGqaAttention(ld, il, /*qk_norm=*/false));
    AIRLOCK_TRY(LoadDenseFfn(ld, il));
  }
  return Status::Ok();
}

void Qwen2Layers(Workspace& ws) {
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
    // tmp[n][d] = SwiGLU(xn); residual
    SwiGluFfn(ws, lw.w_gate, lw.w_up, lw.w_down, ws.tmp.data());
    AddTo(ws.x.data(), ws.tmp.data(), n * d);
  }
}

}  // namespace airlock::engine::internal
