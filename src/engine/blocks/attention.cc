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
int RoundUp(int x, int m) { return (x + m - 1) / m * m; }

// Rows per block of a prompt chunk: lanes (rows x group) about 128 for heads up to 128 wide, 64
// for wider ones (MLA's 576), so that a block's tiles stay within the L2 cache; at least a row.
int BlockRows(std::int64_t k_dim, int group) {
  const int lanes = k_dim <= 128 ? 128 : 64;
  return std::max(1, lanes / group);
}
int MaxLanes(std::int64_t k_dim, int group) { return RoundUp(BlockRows(k_dim, group) * group, 16); }

// One thread's tiles: queries transposed [k_dim][L], converted keys [kAttnTile][k_dim] and values
// [kAttnTile][v_dim], scores [kAttnTile][L], the accumulator transposed [v_dim][L], and per lane
// the running maximum, sum, correction, valid key count and position.
struct TileScratch {
  float *qt, *kt, *vt, *s, *ot, *m, *l, *corr;
  int *lim, *pos;
};

// Lays the tiles out from `base` (nullptr: only measures); returns the bytes used.
std::size_t LayOut(std::int64_t k_dim, std::int64_t v_dim, int lanes, std::uint8_t* base,
                   TileScratch* t) {
  std::size_t at = 0;
  auto take = [&](std::size_t count) {
    std::uint8_t* p = base != nullptr ? base + at : nullptr;
    at += Align64(count * 4);
    return p;
  };
  const std::size_t L = lanes;
  float* qt = reinterpret_cast<float*>(take(k_dim * L));
  float* kt = reinterpret_cast<float*>(take(kAttnTile * k_dim));
  float* vt = reinterpret_cast<float*>(take(kAttnTile * v_dim));
  float* s = reinterpret_cast<float*>(take(kAttnTile * L));
  float* ot = reinterpret_cast<float*>(take(v_dim * L));
  float* m = reinterpret_cast<float*>(take(L));
  float* l = reinterpret_cast<float*>(take(L));
  float* corr = reinterpret_cast<float*>(take(L));
  int* lim = reinterpret_cast<int*>(take(L));
  int* pos = reinterpret_cast<int*>(take(L));
  if (t != nullptr) *t = {qt, kt, vt, s, ot, m, l, corr, lim, pos};
  return at;
}

// A lone row's tiles (RunRow): the queries of every cached head, transposed [n_kv][k_dim][ld];
// tiles of whole cache rows converted to float, keys [kAttnTile][n_kv * k_dim] and values
// [kAttnTile][n_kv * v_dim]; the scores of one head's group [kAttnTile][ld]; the accumulators as
// rows [n_kv * group][v_dim]; per cached head and lane the running maximum, sum and correction.
struct RowScratch {
  float *qt, *kt, *vt, *s, *ot, *m, *l, *corr;
  int* lim;
};

std::size_t LayOutRow(std::int64_t k_dim, std::int64_t v_dim, int n_kv, int group,
                      std::uint8_t* base, RowScratch* t) {
  std::size_t at = 0;
  auto take = [&](std::size_t count) {
    std::uint8_t* p = base != nullptr ? base + at : nullptr;
    at += Align64(count * 4);
    return p;
  };
  const std::size_t ld = RoundUp(group, 16), kv = n_kv;
  float* qt = reinterpret_cast<float*>(take(kv * k_dim * ld));
  float* kt = reinterpret_cast<float*>(take(kAttnTile * kv * k_dim));
  float* vt = reinterpret_cast<float*>(take(kAttnTile * kv * v_dim));
  float* s = reinterpret_cast<float*>(take(kAttnTile * ld));
  float* ot = reinterpret_cast<float*>(take(kv * group * v_dim));
  float* m = reinterpret_cast<float*>(take(kv * ld));
  float* l = reinterpret_cast<float*>(take(kv * ld));
  float* corr = reinterpret_cast<float*>(take(kv * ld));
  int* lim = reinterpret_cast<int*>(take(ld));
  if (t != nullptr) *t = {qt, kt, vt, s, ot, m, l, corr, lim};
  return at;
}

}  // namespace

void ReserveAttention(Workspace& ws, std::int64_t k_dim, std::int64_t v_dim, int n_head,
                      int group) {
  const int n_kv = n_head / group;
  ws.attn_scratch_stride =
      Align64(std::max(LayOut(k_dim, v_dim, MaxLanes(k_dim, group), nullptr, nullptr),
                       LayOutRow(k_dim, v_dim, n_kv, group, nullptr, nullptr)));
  ws.attn_scratch.assign(ws.attn_scratch_stride * ws.pool->size(), 0);
  ws.attn_split_stride = static_cast<std::size_t>(2 + v_dim) * RoundUp(group, 16);
  ws.attn_split_slots = 2 * kAttnMaxSplits * n_kv;
  ws.attn_split.assign(ws.attn_split_stride * ws.attn_split_slots, 0.0f);
  ws.attn_tasks.reserve(static_cast<std::size_t>(std::max(ws.max_rows, 1)) * n_kv +
                        ws.attn_split_slots);
  ws.attn_merges.reserve(ws.attn_split_slots);
}

void Attend(Workspace& ws, int il, const AttendArgs& a) {
  const Kernels& k = *ws.k;
  const TensorType type = ws.kv_type;
  const ToFloatRowFn to_float = k.kv_to_float[static_cast<int>(type)];
  const int n_kv = a.n_head / a.group;
  const int block_rows = BlockRows(a.k_dim, a.group);
  const int max_lanes = MaxLanes(a.k_dim, a.group);
  const int split_ld = RoundUp(a.group, 16);

  // A lone row (decode) over keys [key0, key1) at cached heads [g, g + n_g): a tile converts
  // those heads' part of each cache row (whole rows, one contiguous stretch of memory per tile,
  // when n_g is every head), then each cached head's group of query heads takes its slice, as
  // the lanes of its tiles. Partial results of a split go to slots task.slot + (head - g).
  auto run_row = [&](const AttendTask& task, int thread) {
    RowScratch sc;
    LayOutRow(a.k_dim, a.v_dim, n_kv, a.group,
              ws.attn_scratch.data() + thread * ws.attn_scratch_stride, &sc);
    KvCache& kv = ws.rows[task.row0].session->kv;
    const int ld = split_ld;
    // Values converted per cache row: every head's slice (k_off <= k_dim, v_off <= v_dim).
    const int g0 = task.g, g1 = task.g + task.n_g;
    const std::int64_t kw = (task.n_g - 1) * a.k_off + a.k_dim;
    // F16 values are read in place by the accumulate kernel, converted in registers.
    const bool f16_values = type == TensorType::kF16 && !a.v_in_k;
    const std::int64_t vw = a.v_in_k || f16_values ? 0 : (task.n_g - 1) * a.v_off + a.v_dim;
    const std::size_t k_at = KvRowBytes(type, g0 * a.k_off);
    const std::size_t v_at = KvRowBytes(type, g0 * a.v_off);
    for (int g = g0; g < g1; ++g) {
      float* qt = sc.qt + g * a.k_dim * ld;
      for (int hh = 0; hh < a.group; ++hh) {
        const float* qv =
            a.q + task.row0 * a.q_row + static_cast<std::int64_t>(g * a.group + hh) * a.q_head;
        for (std::int64_t d = 0; d < a.k_dim; ++d) qt[d * ld + hh] = qv[d] * a.scale;
      }
      for (int hh = a.group; hh < ld; ++hh) {
        for (std::int64_t d = 0; d < a.k_dim; ++d) qt[d * ld + hh] = 0;
      }
    }
    std::fill(sc.m, sc.m + n_kv * ld, -INFINITY);
    std::fill(sc.l, sc.l + n_kv * ld, 0.0f);
    std::fill(sc.ot, sc.ot + n_kv * a.group * a.v_dim, 0.0f);
    for (int j0 = task.key0; j0 < task.key1; j0 += kAttnTile) {
      const int nk = std::min(kAttnTile, task.key1 - j0);
      for (int j = 0; j < nk; ++j) {
        to_float(kw, kv.KRow(il, j0 + j) + k_at, sc.kt + j * kw);
        if (vw > 0) to_float(vw, kv.VRow(il, j0 + j) + v_at, sc.vt + j * vw);
      }
      // Every key of the range is at or before the row's position.
      std::fill(sc.lim, sc.lim + ld, nk);
      // The next tile's cache rows are asked for in parts between the kernel calls: one burst
      // of a whole tile's lines would wait on the memory system as the loads themselves do.
      const int n_next = task.n_g == n_kv ? std::min(kAttnTile, task.key1 - j0 - nk) : 0;
      const std::size_t next_k = n_next > 0 ? n_next * kv.k_row_bytes : 0;
      const std::size_t next_v = n_next > 0 && !a.v_in_k ? n_next * kv.v_row_bytes : 0;
      const int parts = 3 * task.n_g;
      auto prefetch_part = [&](int part) {
        const std::size_t total = (next_k + next_v + 63) / 64;
        for (std::size_t line = total * part / parts; line < total * (part + 1) / parts; ++line) {
          const std::size_t b = line * 64;
          __builtin_prefetch(b < next_k ? kv.KRow(il, j0 + nk) + b
                                        : kv.VRow(il, j0 + nk) + (b - next_k));
        }
      };
      for (int g = g0; g < g1; ++g) {
        const float* vt = a.v_in_k ? sc.kt + (g - g0) * a.v_off : sc.vt + (g - g0) * a.v_off;
        const std::int64_t ldv = a.v_in_k ? kw : vw;
        float *m = sc.m + g * ld, *l = sc.l + g * ld, *corr = sc.corr + g * ld;
        prefetch_part(3 * (g - g0));
        k.attn_scores(nk, a.k_dim, sc.kt + (g - g0) * a.k_off, kw, sc.qt + g * a.k_dim * ld,
                      a.group, ld, sc.s);
        prefetch_part(3 * (g - g0) + 1);
        k.attn_softmax(nk, sc.lim, a.group, ld, sc.s, m, l, corr);
        prefetch_part(3 * (g - g0) + 2);
        float* ot = sc.ot + g * a.group * a.v_dim;
        if (f16_values) {
          const auto* v16 = reinterpret_cast<const std::uint16_t*>(kv.VRow(il, j0)) + g * a.v_off;
          k.attn_accumulate_rows_f16(nk, a.v_dim, v16,
                                     static_cast<std::int64_t>(kv.v_row_bytes / 2), sc.s, ld, corr,
                                     a.group, ot, a.v_dim);
        } else {
          k.attn_accumulate_rows(nk, a.v_dim, vt, ldv, sc.s, ld, corr, a.group, ot, a.v_dim);
        }
      }
    }
    for (int g = g0; g < g1; ++g) {
      const float* m = sc.m + g * ld;
      const float* l = sc.l + g * ld;
      const float* ot = sc.ot + g * a.group * a.v_dim;
      if (task.slot < 0) {
        for (int hh = 0; hh < a.group; ++hh) {
          float* out = a.out + task.row0 * a.out_row +
                       static_cast<std::int64_t>(g * a.group + hh) * a.out_head;
          const float inv = 1.0f / l[hh];
          for (std::int64_t e = 0; e < a.v_dim; ++e) out[e] = ot[hh * a.v_dim + e] * inv;
        }
      } else {
        // A split's partial result: [m][l][ot as rows].
        float* slot = ws.attn_split.data() + (task.slot + g - g0) * ws.attn_split_stride;
        std::copy(m, m + ld, slot);
        std::copy(l, l + ld, slot + ld);
        std::copy(ot, ot + a.group * a.v_dim, slot + 2 * ld);
      }
    }
  };

  // One block of rows x one cached head over keys [key0, key1), with the query heads as lanes.
  auto run_task = [&](int t, int thread) {
    const AttendTask& task = ws.attn_tasks[t];
    if (task.n_g > 0) {
      run_row(task, thread);
      return;
    }
    TileScratch sc;
    LayOut(a.k_dim, a.v_dim, max_lanes, ws.attn_scratch.data() + thread * ws.attn_scratch_stride,
           &sc);
    KvCache& kv = ws.rows[task.row0].session->kv;
    const int n_rows = task.row1 - task.row0;
    const int nq = n_rows * a.group, ld = RoundUp(nq, 16);
    // A one-row block (the end of a run) keeps its accumulator as rows [head][v_dim] (values in
    // lanes): its few heads would fill a fraction of a vector as lanes. Blocks of several rows
    // keep it transposed.
    const bool rows_layout = n_rows == 1;
    // The queries, scaled and transposed (lane = row in block * group + head in group); padding
    // lanes are zero queries that see every key.
    for (int r = 0; r < n_rows; ++r) {
      for (int hh = 0; hh < a.group; ++hh) {
        const int lane = r * a.group + hh;
        const float* qv = a.q + (task.row0 + r) * a.q_row +
                          static_cast<std::int64_t>(task.g * a.group + hh) * a.q_head;
        for (std::int64_t d = 0; d < a.k_dim; ++d) sc.qt[d * ld + lane] = qv[d] * a.scale;
        sc.pos[lane] = ws.rows[task.row0 + r].pos;
      }
    }
    for (int lane = nq; lane < ld; ++lane) {
      for (std::int64_t d = 0; d < a.k_dim; ++d) sc.qt[d * ld + lane] = 0;
      sc.pos[lane] = task.key1;
    }
    std::fill(sc.m, sc.m + ld, -INFINITY);
    std::fill(sc.l, sc.l + ld, 0.0f);
    std::fill(sc.ot, sc.ot + a.v_dim * ld, 0.0f);
    const std::size_t k_at = KvRowBytes(type, task.g * a.k_off);
    const std::size_t v_at = KvRowBytes(type, task.g * a.v_off);
    const float* vt = a.v_in_k ? sc.kt : sc.vt;
    const std::int64_t ldv = a.v_in_k ? a.k_dim : a.v_dim;
    for (int j0 = task.key0; j0 < task.key1; j0 += kAttnTile) {
      const int nk = std::min(kAttnTile, task.key1 - j0);
      for (int j = 0; j < nk; ++j) {
        to_float(a.k_dim, kv.KRow(il, j0 + j) + k_at, sc.kt + j * a.k_dim);
        if (!a.v_in_k) to_float(a.v_dim, kv.VRow(il, j0 + j) + v_at, sc.vt + j * a.v_dim);
      }
      // The causal mask: lane q sees the keys up to its position.
      for (int lane = 0; lane < ld; ++lane) sc.lim[lane] = std::clamp(sc.pos[lane] + 1 - j0, 0, nk);
      k.attn_scores(nk, a.k_dim, sc.kt, a.k_dim, sc.qt, nq, ld, sc.s);
      k.attn_softmax(nk, sc.lim, nq, ld, sc.s, sc.m, sc.l, sc.corr);
      if (rows_layout) {
        k.attn_accumulate_rows(nk, a.v_dim, vt, ldv, sc.s, ld, sc.corr, nq, sc.ot, a.v_dim);
      } else {
        k.attn_accumulate(nk, a.v_dim, vt, ldv, sc.s, sc.corr, nq, ld, sc.ot);
      }
    }
    for (int r = 0; r < n_rows; ++r) {
      for (int hh = 0; hh < a.group; ++hh) {
        const int lane = r * a.group + hh;
        float* out = a.out + (task.row0 + r) * a.out_row +
                     static_cast<std::int64_t>(task.g * a.group + hh) * a.out_head;
        const float inv = 1.0f / sc.l[lane];
        if (rows_layout) {
          for (std::int64_t e = 0; e < a.v_dim; ++e) out[e] = sc.ot[lane * a.v_dim + e] * inv;
        } else {
          for (std::int64_t e = 0; e < a.v_dim; ++e) out[e] = sc.ot[e * ld + lane] * inv;
        }
      }
    }
  };

  // Combines a row's split partial results in split order: weights exp(m_s - max m). Split s of
  // cached head g is at slot slot0 + s * n_kv (slot0 = the first split's slot of g).
  auto run_merge = [&](int t, int) {
    const AttendMerge& mg = ws.attn_merges[t];
    const int ld = split_ld;
    const std::size_t split_stride = n_kv * ws.attn_split_stride;
    const float* slot0 = ws.attn_split.data() + mg.slot0 * ws.attn_split_stride;
    for (int hh = 0; hh < a.group; ++hh) {
      float mx = -INFINITY;
      for (int s = 0; s < mg.n_split; ++s) mx = std::max(mx, slot0[s * split_stride + hh]);
      float w[kAttnMaxSplits];
      float sum = 0;
      for (int s = 0; s < mg.n_split; ++s) {
        const float* slot = slot0 + s * split_stride;
        w[s] = std::exp(slot[hh] - mx);
        sum += slot[ld + hh] * w[s];
      }
      float* out =
          a.out + mg.row * a.out_row + static_cast<std::int64_t>(mg.g * a.group + hh) * a.out_head;
      const float inv = 1.0f / sum;
      for (std::int64_t e = 0; e < a.v_dim; ++e) {
        float o = 0;
        for (int s = 0; s < mg.n_split; ++s) {
          o += slot0[s * split_stride + 2 * ld + hh * a.v_dim + e] * w[s];
        }
        out[e] = o * inv;
      }
    }
  };

  ws.attn_tasks.clear();
  ws.attn_merges.clear();
  int slots_used = 0;
  auto flush = [&] {
    if (!ws.attn_tasks.empty()) ws.pool->Run(static_cast<int>(ws.attn_tasks.size()), run_task);
    if (!ws.attn_merges.empty()) ws.pool->Run(static_cast<int>(ws.attn_merges.size()), run_merge);
    ws.attn_tasks.clear();
    ws.attn_merges.clear();
    slots_used = 0;
  };
  const int n = ws.n();
  for (int i = 0; i < n;) {
    // A run: rows of one session at consecutive positions.
    int end = i + 1;
    while (end < n && ws.rows[end].session == ws.rows[i].session &&
           ws.rows[end].pos == ws.rows[end - 1].pos + 1) {
      ++end;
    }
    if (end - i == 1) {
      // A lone row: tasks over ranges of keys (split-K) at every cached head when its context
      // is long, merged in range order.
      const int n_keys = ws.rows[i].pos + 1;
      const int n_tiles = (n_keys + kAttnTile - 1) / kAttnTile;
      const int per_split =
          std::max(kAttnSplitTiles, (n_tiles + kAttnMaxSplits - 1) / kAttnMaxSplits);
      const int n_split = (n_tiles + per_split - 1) / per_split;
      if (n_split == 1) {
        // A short context: one task per cached head, so that the threads share them.
        for (int g = 0; g < n_kv; ++g) ws.attn_tasks.push_back({i, i + 1, g, 0, n_keys, -1, 1});
        i = end;
        continue;
      }
      if (slots_used + n_split * n_kv > ws.attn_split_slots) flush();
      for (int g = 0; g < n_kv; ++g) ws.attn_merges.push_back({i, g, n_split, slots_used + g});
      for (int s = 0; s < n_split; ++s) {
        const int key0 = s * per_split * kAttnTile;
        ws.attn_tasks.push_back({i, i + 1, 0, key0, std::min(n_keys, key0 + per_split * kAttnTile),
                                 slots_used + s * n_kv, n_kv});
      }
      slots_used += n_split * n_kv;
      i = end;
      continue;
    }
    // The last blocks (the most keys) first, so that the short ones fill in at the end.
    for (int b = i + (end - i - 1) / block_rows * block_rows; b >= i; b -= block_rows) {
      const int b_end = std::min(b + block_rows, end);
      for (int g = 0; g < n_kv; ++g) {
        ws.attn_tasks.push_back({b, b_end, g, 0, ws.rows[b_end - 1].pos + 1, -1});
      }
    }
    i = end;
  }
  flush();
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
