// Causal self-attention over the KV cache, for every row of a forward pass against its own
// session's cache: the GQA steps (q/k/v projections, storing K/V, attending, the output
// projection) and the tiled attention kernel that GQA and MLA (blocks/mla.h) share.
//
// The kernel (Attend) is flash-attention style: for each (row, query head) it walks the cached
// positions 0..pos in tiles of kAttnTile keys, computes a tile of scores with the kernel table's
// dot product for the cache type (F32, F16 or Q8_0 rows read in place, never converted as a
// whole), and keeps an online softmax: a running maximum m and sum l, the value accumulator
// rescaled by exp(m_old - m_new) whenever a tile raises the maximum. No score row of the context's
// length is materialized. Tasks are (row, head) pairs over the thread pool.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/internal/weights.h"

namespace airlock::engine::internal {

struct Workspace;

inline constexpr int kAttnTile = 64;  // keys per tile

// Where a query, its cached keys/values and its output are. Query head h of row i is at
// q + i * q_row + h * q_head (k_dim floats) and reads cached head g = h / group: keys at element
// g * k_off of each K row (k_dim values), values at element g * v_off of each V row (v_dim values;
// of the K row itself when v_in_k, as MLA's latent cache). The output goes to
// out + i * out_row + h * out_head (v_dim floats).
struct AttendArgs {
  const float* q = nullptr;
  std::int64_t q_row = 0, q_head = 0;
  int n_head = 0, group = 1;
  std::int64_t k_dim = 0, v_dim = 0;
  std::int64_t k_off = 0, v_off = 0;
  bool v_in_k = false;
  float scale = 1;
  float* out = nullptr;
  std::int64_t out_row = 0, out_head = 0;
};

// out = softmax(scale * q . K[0..pos]) . V[0..pos] for every row and head, at layer `il`.
void Attend(Workspace& ws, int il, const AttendArgs& a);
// Scratch bytes per thread Attend needs for these widths.
std::size_t AttendScratchBytes(std::int64_t k_dim, std::int64_t v_dim);

// Stores row i's k[i * k_stride ..] (k_width values) and, unless the cache has no V rows,
// v[i * v_stride ..] into its session's cache at (il, pos), converted to the cache type. Every
// row is stored before any attends, so rows of one session (a prompt chunk) see each other.
void StoreKv(Workspace& ws, int il, const float* k, std::int64_t k_stride, const float* v,
             std::int64_t v_stride);

// ---- GQA steps ----
// q[n][q_dim], k_new[n][kv_dim], v_new[n][kv_dim] = xn . wq, wk, wv, plus the biases (if any).
void ProjectQkv(Workspace& ws, const LayerWeights& lw);
// RoPE on q's n_head and k_new's n_head_kv heads.
void RopeQk(Workspace& ws);
// attn[n][q_dim]: each query head attends to its KV head's cached keys and values.
void AttendGqa(Workspace& ws, int il);
// tmp[n][d] = in[n][in_dim] . wo.
void ProjectOutput(Workspace& ws, const WeightMatrix& wo, const float* in, std::int64_t in_dim);

}  // namespace airlock::engine::internal
