// Internals shared by Session and Batch. A Workspace is the thread pool and scratch buffers of a
// forward pass over up to max_rows rows; a SessionState is one sequence (its KV cache and
// position) plus the workspace it runs on (its own, or its Batch's, shared). The dense forward
// pass (session.cc) runs over a list of rows, each naming its session, position and token, so a
// single session's Eval (rows of one session at consecutive positions) and a Batch step (rows of
// several sessions) are the same code. Expert architectures keep their own forward pass
// (ExpertForward) per session and use only the workspace's pool.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "engine/internal/expert_model.h"
#include "engine/internal/kernels.h"
#include "engine/internal/matmul.h"
#include "engine/internal/thread_pool.h"
#include "engine/model.h"

namespace airlock::engine::internal {

struct ModelWeights;
struct SessionState;

// One token of a forward pass: the sequence it belongs to and its position there.
struct ForwardRow {
  SessionState* session;
  int pos;
  std::int32_t token;
};

struct Workspace {
  const Model* model = nullptr;
  const ModelConfig* c = nullptr;
  const ModelWeights* w = nullptr;
  const Kernels* k = nullptr;
  std::unique_ptr<ThreadPool> pool;
  int max_rows = 0;  // rows per forward pass
  int max_ctx = 0;   // the longest context of a session on this workspace (scores buffer)
  std::int64_t q_dim = 0, kv_dim = 0;
  std::vector<float> x, xn, q, kk, vv, attn, tmp, gate, up;
  std::vector<float> scores;              // [thread][max_ctx]
  std::vector<double> inv_freq;           // n_rot / 2
  std::vector<float> rope_cos, rope_sin;  // [row][n_rot / 2]
  std::vector<ForwardRow> rows;           // the rows of the next Forward (capacity max_rows)
  std::vector<int> out_rows;              // the rows whose logits it returns (capacity max_rows)
  ActivationBuffer act;

  // A workspace for `model` (dense models: every buffer; expert models: the pool only).
  // Errors: kLimitExceeded (memory), kInternal (threads cannot start).
  static Result<std::unique_ptr<Workspace>> Create(const Model& model, const Kernels& kernels,
                                                   int n_threads, int max_rows, int max_ctx);

  // Runs `rows` (at most max_rows; each row's KV entry is written at its position, and it attends
  // to its own session's positions 0..pos) and writes the logits of rows out_rows[0..n) to
  // `logits_out` (one n_vocab row each; nothing when out_rows is empty). Dense models only. The
  // caller has checked tokens and context limits and advances the sessions' positions.
  void Forward(float* logits_out);

 private:
  void RmsNormRows(const float* in, float* out, int n, const std::vector<float>& weight);
  void ApplyRope(float* v, int n_rows, std::int64_t row_stride, int n_heads);
  void Attention(int layer, int n);
};

// Session::Create and Batch::Create options with defaults applied and limits checked: n_ctx
// (0: min(training context, 4096), at most 1M), rows per forward pass (0: 256, 1-4096), threads
// (0: hardware concurrency, at most 256) and the kernel table. Errors: kInvalidArgument (`what`
// names the caller in the message), kLimitExceeded (CheckKvCacheSize).
struct EngineSetup {
  int n_ctx = 0;
  int max_rows = 0;
  int threads = 0;
  const Kernels* kernels = nullptr;
};
Result<EngineSetup> ResolveSetup(const ModelConfig& c, int n_ctx, int n_threads, int max_rows,
                                 const Kernels* kernels, bool exact_math, const char* what);
// The KV cache dominates memory: refuse sizes no machine has (over 64 GiB) before allocating.
Status CheckKvCacheSize(const ModelConfig& c, int n_ctx);

struct SessionState {
  const Model* model = nullptr;
  const ModelConfig* c = nullptr;
  std::shared_ptr<Workspace> ws;  // this session's own, or the Batch's it was created by
  const void* batch = nullptr;    // the Batch that created it (nullptr: standalone)
  int n_ctx = 0;
  int pos = 0;
  std::vector<float> k_cache, v_cache;     // [layer][n_ctx][kv_dim] (dense models)
  std::vector<float> logits;               // n_vocab (last token)
  std::vector<float> all_logits;           // n * n_vocab when requested
  std::unique_ptr<ExpertForward> experts;  // MoE / MLA architectures (expert_forward.cc)

  // Allocates the KV cache (or the expert forward pass) for `n_ctx` tokens on `ws`.
  // Errors: kLimitExceeded (a cache above 64 GiB, out of memory).
  static Result<std::unique_ptr<SessionState>> Create(const Model& model,
                                                      std::shared_ptr<Workspace> ws, int n_ctx);
};

}  // namespace airlock::engine::internal
