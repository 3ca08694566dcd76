// Multi-head latent attention, absorbed form (see mla.h).
#include "engine/blocks/mla.h"

#include <cstring>

#include "engine/blocks/attention.h"
#include "engine/blocks/norm.h"
#include "engine/blocks/rope.h"
#include "engine/internal/workspace.h"

namespace airlock::engine::internal {

void LatentAttention(Workspace& ws, int il, const LayerWeights& lw) {
  const ModelConfig& c = *ws.c;
  const ExpertConfig& m = c.moe;
  const int n = ws.n();
  const std::int64_t d = c.n_embd;
  const int H = c.n_head, nope = m.qk_nope, kvl = m.kv_lora_rank, hq = c.head_dim,
            vh = m.v_head_dim;
  const std::int64_t kvr = kvl + c.n_rot;  // cached row: [latent | k_pe]
  ThreadPool& pool = *ws.pool;
  const Kernels& k = *ws.k;
  // q[n][H * (nope + n_rot)] (through the q_lora bottleneck when there is one) and
  // kv_lat[n][kvr] = xn . wkv_a
  ws.act.Set(ws.xn.data(), n, d, d);
  if (m.q_lora_rank > 0) {
    const MatMulJob a[2] = {{&lw.wq_a, ws.q_lora.data(), static_cast<std::size_t>(m.q_lora_rank)},
                            {&lw.wkv_a, ws.kv_lat.data(), static_cast<std::size_t>(kvr)}};
    MatMul(pool, k, ws.act, a, 2);
    RmsNormRows(ws.q_lora.data(), ws.q_lora.data(), n, m.q_lora_rank, lw.q_a_norm, c.rms_eps);
    ws.act.Set(ws.q_lora.data(), n, m.q_lora_rank, m.q_lora_rank);
    const MatMulJob qb{&lw.wq_b, ws.q.data(), static_cast<std::size_t>(ws.q_dim)};
    MatMul(pool, k, ws.act, &qb, 1);
  } else {
    const MatMulJob a[2] = {{&lw.wq, ws.q.data(), static_cast<std::size_t>(ws.q_dim)},
                            {&lw.wkv_a, ws.kv_lat.data(), static_cast<std::size_t>(kvr)}};
    MatMul(pool, k, ws.act, a, 2);
  }
  // RoPE on each head's q_pe and on the shared k_pe (always pairs 2j, 2j+1)
  ApplyRope(ws.q.data(), n, ws.q_dim, H, hq, nope, c.n_rot, RopeStyle::kNorm, ws.rope_cos.data(),
            ws.rope_sin.data());
  ApplyRope(ws.kv_lat.data(), n, kvr, 1, kvr, kvl, c.n_rot, RopeStyle::kNorm, ws.rope_cos.data(),
            ws.rope_sin.data());
  // latent = rmsnorm(latent); store [latent | k_pe] in each row's cache
  RmsNormHeads(ws.kv_lat.data(), n, kvr, 1, kvl, lw.kv_a_norm, c.rms_eps);
  StoreKv(ws, il, ws.kv_lat.data(), kvr, nullptr, 0);
  // Absorb: q_abs[i][h] = [k_b[h] . q_nope[i][h] | q_pe[i][h]] ([n][H][kvr])
  for (int h = 0; h < H; ++h) {
    for (int i = 0; i < n; ++i) {
      const float* qh = ws.q.data() + i * ws.q_dim + static_cast<std::int64_t>(h) * hq;
      std::memcpy(ws.q_nope.data() + (static_cast<std::int64_t>(h) * n + i) * nope, qh,
                  sizeof(float) * nope);
      std::memcpy(ws.q_abs.data() + (static_cast<std::int64_t>(i) * H + h) * kvr + kvl, qh + nope,
                  sizeof(float) * c.n_rot);
    }
  }
  ws.act.Set(ws.q_nope.data(), H * n, nope, nope);
  for (int h = 0; h < H; ++h) {
    ws.jobs[h] = {lw.k_b.Slice(h), h * n, (h + 1) * n, ws.q_abs.data() + h * kvr,
                  static_cast<std::size_t>(H * kvr)};
  }
  GroupedMatMul(pool, k, ws.act, ws.jobs.data(), H, ws.group_scratch);
  // lat[H][n][kvl] = softmax(kq_scale * q_abs . cache) . cache[:, :kvl] (one cached head)
  AttendArgs a;
  a.q = ws.q_abs.data();
  a.q_row = static_cast<std::int64_t>(H) * kvr;
  a.q_head = kvr;
  a.n_head = H;
  a.group = H;
  a.k_dim = kvr;
  a.v_dim = kvl;
  a.v_in_k = true;
  a.scale = c.kq_scale;
  a.out = ws.lat.data();
  a.out_row = kvl;
  a.out_head = static_cast<std::int64_t>(n) * kvl;
  Attend(ws, il, a);
  // attn[n][H * vh] = per head, lat . v_b[h]
  ws.act.Set(ws.lat.data(), H * n, kvl, kvl);
  for (int h = 0; h < H; ++h) {
    ws.jobs[h] = {lw.v_b.Slice(h), h * n, (h + 1) * n, ws.attn.data() + h * vh,
                  static_cast<std::size_t>(H) * vh};
  }
  GroupedMatMul(pool, k, ws.act, ws.jobs.data(), H, ws.group_scratch);
  // tmp[n][d] = attn . wo
  ProjectOutput(ws, lw.wo, ws.attn.data(), static_cast<std::int64_t>(H) * vh);
}

}  // namespace airlock::engine::internal
