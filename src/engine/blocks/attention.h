// Causal self-attention over the KV cache, for every row of a forward pass against its own
// session's cache: the GQA steps (q/k/v projections, storing K/V, attending, the output
// projection) and the tiled attention kernel that GQA and MLA (blocks/mla.h) share.
//
// The kernel (Attend) is flash-attention style, in blocked small matrix products. Rows of one
// session at consecutive positions (a prompt chunk) are cut into blocks of a few rows; a task
// takes one block and one cached head, with all the query heads that read that head (the GQA
// group; every head for MLA) as the lanes of its tiles. It walks the cached positions in tiles
// of kAttnTile keys: converts the tile's keys and values to float once (F32, F16 or Q8_0 rows;
// the cache is never converted as a whole), computes the tile of scores as a small matrix
// product, and keeps an online softmax per query (running maximum and sum, the value
// accumulator rescaled when the maximum rises; keys after a query's position are masked). No
// score row of the context's length is materialized. A lone row (decode) takes whole cache rows
// per tile (every cached head at once: one contiguous stretch of memory),
// then each cached head's group of query heads attends to its slice; with a long context it is
// split over key ranges of at least kAttnSplitTiles tiles (split-K): one task per range, then a
// merge in range order. Blocks and splits depend only on the rows and positions, never on the
// thread count, so results do not either. The tile arithmetic is the kernel table's
// (kernels.h: kv_to_float, attn_scores, attn_softmax, attn_accumulate).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/internal/weights.h"

namespace airlock::engine::internal {

struct Workspace;

inline constexpr int kAttnTile = 64;       // keys per tile
inline constexpr int kAttnSplitTiles = 8;  // the least tiles per split-K range
inline constexpr int kAttnMaxSplits = 32;  // the most split-K ranges per row and cached head

// Where a query, its cached keys/values and its output are. Query head h of row i is at
// q + i * q_row + h * q_head (k_dim floats) and reads cached head g = h / group: keys at element
// g * k_off of each K row (k_dim values), values at element g * v_off of each V row (v_dim values;
// of the key slice itself when v_in_k, as MLA's latent cache), with k_off <= k_dim and
// v_off <= v_dim (the heads side by side in a row, or one shared slice). The output goes to
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
// Sizes ws's attention buffers (ws.pool must exist) for Attend calls of these widths, n_head
// query heads and `group` query heads per cached head. Throws std::bad_alloc.
void ReserveAttention(Workspace& ws, std::int64_t k_dim, std::int64_t v_dim, int n_head, int group);

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
