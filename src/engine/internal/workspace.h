// Internals shared by Session, Batch, the blocks and the architectures. A Workspace is the thread
// pool and scratch buffers of one forward pass over up to max_rows rows; a SessionState is one
// sequence (its KV cache and position) plus the workspace it runs on (its own, or its Batch's,
// shared). There is ONE forward pass (Workspace::Forward) for every architecture: it runs over a
// list of rows, each naming its session, position and token, so a single session's Eval (rows
// of one session at consecutive positions) and a Batch step (rows of several sessions, dense or
// expert models alike) are the same code. Matrix products take every row at once; RoPE, the KV
// cache and attention are per row against the row's own session.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "engine/blocks/rope.h"
#include "engine/internal/matmul.h"
#include "engine/internal/thread_pool.h"
#include "engine/internal/weights.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/session.h"

namespace airlock::engine::internal {

struct SessionState;

// Attention work items (blocks/attention.cc). A task attends rows [row0, row1) of one session
// (consecutive positions) with the query heads of cached head g to the keys [key0, key1); it
// writes the output rows, or (slot >= 0) a partial result that a merge combines with the other
// key splits of its row, in split order.
struct AttendTask {
  int row0, row1, g, key0, key1, slot;
  int n_g = 0;  // > 0: a lone row over cached heads [g, g + n_g) (whole cache rows per tile)
};
struct AttendMerge {
  int row, g, n_split, slot0;
};

// One token of a forward pass: the sequence it belongs to and its position there.
struct ForwardRow {
  SessionState* session;
  int pos;
  std::int32_t token;
};

// The KV cache of one session: for every layer and position, a K row and a V row, stored as
// F32, F16 or Q8_0 (rows converted on write, read directly by attention). GQA caches keep
// kv_dim = n_head_kv * head_dim values per row; the MLA cache (deepseek2) keeps one row of
// [kv_lora normalized latent | n_rot roped key] per position, whose first kv_lora values are also
// the values (v_width 0, no V rows).
struct KvCache {
  TensorType type = TensorType::kF16;
  int n_layer = 0, n_ctx = 0;
  std::int64_t k_width = 0, v_width = 0;  // elements per position and layer
  std::size_t k_row_bytes = 0, v_row_bytes = 0;
  std::vector<std::uint8_t> k, v;  // [layer][n_ctx][row bytes]

  std::uint8_t* KRow(int layer, int pos) {
    return k.data() + (static_cast<std::size_t>(layer) * n_ctx + pos) * k_row_bytes;
  }
  std::uint8_t* VRow(int layer, int pos) {
    return v.data() + (static_cast<std::size_t>(layer) * n_ctx + pos) * v_row_bytes;
  }
};

// The cache layout of a model: K and V widths per position and layer.
struct KvShape {
  std::int64_t k_width = 0, v_width = 0;
};
KvShape KvShapeOf(const ModelConfig& c);
// Bytes of a row of `n` elements of `type` (F32, F16, Q8_0; n a multiple of 32 for Q8_0).
std::size_t KvRowBytes(TensorType type, std::int64_t n);
// Converts `n` floats into a cache row of `type`.
void StoreKvRow(TensorType type, const float* src, std::uint8_t* dst, std::int64_t n);
// The resolved cache element type (kAuto: F32 for exact math, F16 otherwise).
TensorType KvTensorType(KvCacheType type, bool exact_math);

// Session::Create and Batch::Create options with defaults applied and limits checked: n_ctx
// (0: min(training context, 4096); above the model's training context is refused, as is above
// 1M), rows per forward pass (0: 256, 1-4096), threads (0: hardware concurrency, at most 256),
// the kernel table and the KV cache type. Then the memory check (CheckMemoryFits) for `sessions`
// caches of n_ctx tokens plus the per-pass buffers against core::AvailableMemoryBytes(), before
// anything is allocated. Errors: kInvalidArgument (`what` names the caller in the message; a
// context above the training context; a Q8_0 cache whose heads are not whole 32-value blocks),
// kLimitExceeded (CheckKvCacheSize, CheckMemoryFits).
struct EngineSetup {
  int n_ctx = 0;
  int max_rows = 0;
  int threads = 0;
  const Kernels* kernels = nullptr;
  TensorType kv_type = TensorType::kF16;
};
Result<EngineSetup> ResolveSetup(const ModelConfig& c, int n_ctx, int n_threads, int max_rows,
                                 const Kernels* kernels, bool exact_math, KvCacheType kv_type,
                                 int sessions, const char* what);
// The KV cache dominates memory: refuse sizes no machine has (over 64 GiB) before allocating.
Status CheckKvCacheSize(const ModelConfig& c, int n_ctx, TensorType kv_type);

// Bytes of one session of `n_ctx` tokens: its KV cache and its logits row.
std::uint64_t SessionBytes(const ModelConfig& c, int n_ctx, TensorType kv_type);
// Bytes Workspace::Create allocates for `max_rows` rows per pass on `threads` threads (the
// activations, the attention tiles and task lists; a slight over-estimate, never under:
// engine_test checks it against Workspace::AllocatedBytes()).
std::uint64_t PassBufferBytes(const ModelConfig& c, int max_rows, int threads);
// Refuses, before anything is allocated, `sessions` sessions of setup.n_ctx tokens plus one
// workspace's per-pass buffers (`with_buffers`) when they need more than `available` bytes. The
// message names the bytes needed, the bytes available and the largest context that fits.
// Errors: kLimitExceeded. (Callers pass core::AvailableMemoryBytes(); tests pass a figure.)
Status CheckMemoryFits(const ModelConfig& c, const EngineSetup& setup, int sessions,
                       bool with_buffers, std::uint64_t available);

struct Workspace {
  const Model* model = nullptr;
  const ModelConfig* c = nullptr;
  const ModelWeights* w = nullptr;
  const Kernels* k = nullptr;
  std::unique_ptr<ThreadPool> pool;
  int max_rows = 0;  // rows per forward pass
  int max_ctx = 0;   // the longest context of a session on this workspace
  TensorType kv_type = TensorType::kF16;
  std::vector<ForwardRow> rows;  // the rows of the next Forward (n = rows.size() <= max_rows)
  std::vector<int> out_rows;     // the rows whose logits it returns

  // Activations, one row per forward row. d = n_embd, q_dim = n_head * head_dim,
  // kv_dim = n_head_kv * head_dim, ff = max(n_ff, n_ff_shexp), K = n_expert_used.
  std::int64_t q_dim = 0, kv_dim = 0, attn_dim = 0;
  std::vector<float> x;             // [n][d] the residual stream
  std::vector<float> xn;            // [n][d] x normalized (input of attention / FFN)
  std::vector<float> tmp;           // [n][d] a block's output before the residual add
  std::vector<float> q;             // [n][q_dim] queries (MLA: per head [qk_nope | n_rot])
  std::vector<float> k_new, v_new;  // [n][kv_dim] this step's keys and values (GQA)
  std::vector<float> attn;          // [n][attn_dim] attention output (MLA: n_head * v_head)
  std::vector<float> gate, up;      // [n][ff] SwiGLU halves
  // Multi-head latent attention (deepseek2); kvr = kv_lora + n_rot.
  std::vector<float> q_lora;  // [n][q_lora]
  std::vector<float> kv_lat;  // [n][kvr] compressed KV: [latent | roped k_pe]
  std::vector<float> q_nope;  // [n_head][n][qk_nope] (head-major for the per-head products)
  std::vector<float> q_abs;   // [n][n_head][kvr] queries absorbed into the latent space
  std::vector<float> lat;     // [n_head][n][kv_lora] attention output in the latent space
  // Mixture of experts; E = n_expert.
  std::vector<float> router_logits;  // [n][E]
  std::vector<float> route_scratch;  // [2 E + n_group] probabilities, selection scores, groups
  std::vector<int> choice;           // [n][K] selected expert ids
  std::vector<float> choice_weight;  // [n][K] their weights
  std::vector<int> order;            // [n K] (row, slot) pairs sorted by expert
  std::vector<int> expert_start;     // [E + 2] each expert's range in `order`
  std::vector<float> moe_in;         // [n K][d] xn rows gathered by expert
  std::vector<float> moe_h, moe_up;  // [n K][n_ff_exp]
  std::vector<float> moe_out;        // [n K][d]
  // RoPE angles of each row's position.
  RopeTable rope;
  std::vector<float> rope_cos, rope_sin;  // [n][n_rot / 2]
  // Attention (blocks/attention.h, sized by ReserveAttention): per thread, the float tiles of a
  // block of queries (transposed queries, converted keys and values, scores, the accumulator);
  // the split-K partial results of long single-token rows; the task lists of one Attend call.
  std::vector<std::uint8_t> attn_scratch;
  std::size_t attn_scratch_stride = 0;
  std::vector<float> attn_split;
  std::size_t attn_split_stride = 0;  // floats per partial result
  int attn_split_slots = 0;
  std::vector<AttendTask> attn_tasks;
  std::vector<AttendMerge> attn_merges;
  ActivationBuffer act, act2;
  std::vector<GroupJob> jobs;
  GroupScratch group_scratch;

  // A workspace for `model` with every buffer its architecture needs.
  // Errors: kLimitExceeded (memory), kInternal (threads cannot start).
  static Result<std::unique_ptr<Workspace>> Create(const Model& model, const Kernels& kernels,
                                                   int n_threads, int max_rows, int max_ctx,
                                                   TensorType kv_type);

  int n() const { return static_cast<int>(rows.size()); }
  // Bytes held by the buffers above (what PassBufferBytes estimates).
  std::uint64_t AllocatedBytes() const;

  // Runs `rows` (at most max_rows; each row's KV entry is written at its position, and it attends
  // to its own session's positions 0..pos) through the embeddings, the architecture's layer loop
  // and the output head, and writes the logits of rows out_rows[0..count) to `logits_out` (one
  // n_vocab row each; nothing when out_rows is empty). The caller has checked tokens and context
  // limits and advances the sessions' positions.
  void Forward(float* logits_out);
};

struct SessionState {
  const Model* model = nullptr;
  const ModelConfig* c = nullptr;
  std::shared_ptr<Workspace> ws;  // this session's own, or the Batch's it was created by
  const void* batch = nullptr;    // the Batch that created it (nullptr: standalone)
  int n_ctx = 0;
  int pos = 0;
  KvCache kv;
  std::vector<float> logits;      // n_vocab (last token)
  std::vector<float> all_logits;  // n * n_vocab when requested

  // Allocates the KV cache (of the workspace's type) for `n_ctx` tokens on `ws`, after checking
  // it fits the memory available now (CheckMemoryFits for one session, no buffers).
  // Errors: kLimitExceeded (a cache above 64 GiB, more than the memory available, out of memory).
  static Result<std::unique_ptr<SessionState>> Create(const Model& model,
                                                      std::shared_ptr<Workspace> ws, int n_ctx);
};

}  // namespace airlock::engine::internal
