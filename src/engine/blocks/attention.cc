// Attention over the KV cache (see attention.h).
#include "engine/blocks/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/blocks/norm.h"
#include "engine/blocks/rope.h"
#include "engine/internal/workspace.h"

namespace airlock::engine::internal {

namespace {

std::size_t Align64(std::size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

std::size_t AttendScratchBytes(std::int64_t k_dim, std::int64_t v_dim) {
  // The query in its dot format (at most 4 bytes per value, plus Q8 block headers), a tile of
  // scores, the accumulator.
  const std::size_t q_bytes = Align64(static_cast<std::size_t>(k_dim) * 4 + 64 * 8);
  return q_bytes + Align64(sizeof(float) * kAttnTile) + Align64(sizeof(float) * v_dim);
}

void Attend(Workspace& ws, int il, const AttendArgs& a) {
  const Kernels& k = *ws.k;
  const TensorType type = ws.kv_type;
  const DotRowsFn dot = k.dot[static_cast<int>(type)];
  const AxpyRowFn axpy = k.axpy[static_cast<int>(type)];
  const ActFormat q_format = ActFormatFor(k, type);
  const QuantizeActFn quantize = k.quantize[static_cast<int>(q_format)];
  const std::size_t q_bytes = Align64(static_cast<std::size_t>(a.k_dim) * 4 + 64 * 8);
  auto task = [&](int t, int thread) {
    const int i = t / a.n_head, h = t % a.n_head, g = h / a.group;
    const ForwardRow& row = ws.rows[i];
    KvCache& kv = row.session->kv;
    std::uint8_t* scratch = ws.attn_scratch.data() + thread * ws.attn_scratch_stride;
    auto* scores = reinterpret_cast<float*>(scratch + q_bytes);
    auto* acc = reinterpret_cast<float*>(scratch + q_bytes + Align64(sizeof(float) * kAttnTile));
    // The query in the format the cache type's dot product takes (F32 for F32/F16 caches).
    const float* qv = a.q + i * a.q_row + h * a.q_head;
    const void* q_act = qv;
    if (q_format != ActFormat::kF32) {
      quantize(qv, scratch, a.k_dim);
      q_act = scratch;
    }
    const std::size_t k_at = KvRowBytes(type, g * a.k_off);
    const std::size_t v_at = KvRowBytes(type, g * a.v_off);
    std::fill(acc, acc + a.v_dim, 0.0f);
    float m = -INFINITY;  // running maximum of the scaled scores
    double l = 0;         // running sum of exp(score - m)
    for (int j0 = 0; j0 <= row.pos; j0 += kAttnTile) {
      const int nb = std::min(kAttnTile, row.pos + 1 - j0);
      // scores[nb] = scale * q . K[j0 .. j0 + nb)
      dot(a.k_dim, kv.KRow(il, j0) + k_at, kv.k_row_bytes, nb, q_act, scores);
      float tile_max = -INFINITY;
      for (int j = 0; j < nb; ++j) tile_max = std::max(tile_max, scores[j] *= a.scale);
      // A higher maximum rescales what was accumulated so far.
      if (tile_max > m) {
        const float correction = std::exp(m - tile_max);
        l *= correction;
        for (std::int64_t e = 0; e < a.v_dim; ++e) acc[e] *= correction;
        m = tile_max;
      }
      // acc += exp(score - m) * V row, for each key of the tile.
      for (int j = 0; j < nb; ++j) {
        const float p = std::exp(scores[j] - m);
        l += p;
        const std::uint8_t* v_row = a.v_in_k ? kv.KRow(il, j0 + j) : kv.VRow(il, j0 + j);
        axpy(a.v_dim, p, v_row + v_at, acc);
      }
    }
    float* out = a.out + i * a.out_row + h * a.out_head;
    const float inv = static_cast<float>(1.0 / l);
    for (std::int64_t e = 0; e < a.v_dim; ++e) out[e] = acc[e] * inv;
  };
  ws.pool->Run(ws.n() * a.n_head, task);
}

void StoreKv(Workspace& ws, int il, const float* k, std::int64_t k_stride, const float* v,
             std::int64_t v_stride) {
  for (int i = 0; i < ws.n(); ++i) {
    KvCache& kv = ws.rows[i].session->kv;
    const int pos = ws.rows[i].pos;
    StoreKvRow(kv.type, k + i * k_stride, kv.KRow(il, pos), kv.k_width);
    if (kv.v_width > 0) StoreKvRow(kv.type, v + i * v_stride, kv.VRow(il, pos), kv.v_width);
  }
}

void ProjectQkv(Workspace& ws, const LayerWeights& lw) {
  const int n = ws.n();
  const std::int64_t d = ws.c->n_embd;
  ws.act.Set(ws.xn.data(), n, d, d);
  const MatMulJob qkv[3] = {{&lw.wq, ws.q.data(), static_cast<std::size_t>(ws.q_dim)},
                            {&lw.wk, ws.k_new.data(), static_cast<std::size_t>(ws.kv_dim)},
                            {&lw.wv, ws.v_new.data(), static_cast<std::size_t>(ws.kv_dim)}};
  MatMul(*ws.pool, *ws.k, ws.act, qkv, 3);
  AddBias(ws.q.data(), n, ws.q_dim, lw.q_bias);
  AddBias(ws.k_new.data(), n, ws.kv_dim, lw.k_bias);
  AddBias(ws.v_new.data(), n, ws.kv_dim, lw.v_bias);
}

void RopeQk(Workspace& ws) {
  const ModelConfig& c = *ws.c;
  ApplyRope(ws.q.data(), ws.n(), ws.q_dim, c.n_head, c.head_dim, 0, c.n_rot, c.rope,
            ws.rope_cos.data(), ws.rope_sin.data());
  ApplyRope(ws.k_new.data(), ws.n(), ws.kv_dim, c.n_head_kv, c.head_dim, 0, c.n_rot, c.rope,
            ws.rope_cos.data(), ws.rope_sin.data());
}

void AttendGqa(Workspace& ws, int il) {
  const ModelConfig& c = *ws.c;
  AttendArgs a;
  a.q = ws.q.data();
  a.q_row = ws.q_dim;
  a.q_head = c.head_dim;
  a.n_head = c.n_head;
  a.group = c.n_head / c.n_head_kv;
  a.k_dim = a.v_dim = c.head_dim;
  a.k_off = a.v_off = c.head_dim;
  a.scale = c.kq_scale;
  a.out = ws.attn.data();
  a.out_row = ws.q_dim;
  a.out_head = c.head_dim;
  Attend(ws, il, a);
}

void ProjectOutput(Workspace& ws, const WeightMatrix& wo, const float* in, std::int64_t in_dim) {
  ws.act.Set(in, ws.n(), in_dim, in_dim);
  const MatMulJob out{&wo, ws.tmp.data(), static_cast<std::size_t>(ws.c->n_embd)};
  MatMul(*ws.pool, *ws.k, ws.act, &out, 1);
}

}  // namespace airlock::engine::internal
