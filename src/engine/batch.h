// Batched decoding: one forward pass over several Sessions of the same Model, so the weights are
// read once per step for every sequence in it instead of once per sequence. A Batch owns a thread
// pool and the scratch buffers of a pass of up to max_rows tokens; NewSession() creates sessions
// that run on them (each allocates only its KV cache). Step() takes any subset of those sessions,
// each contributing one or more tokens at its own position (decode tokens and prompt chunks can
// share a step), and returns each one's last-token logits. The matrix products take all rows
// together; RoPE, KV-cache writes and attention are per row against the row's own session. Every
// architecture batches the same way: for expert models (qwen2moe, qwen3moe, deepseek2) the rows
// of all sessions routed to the same expert go through its matrices together, so a step reads
// each selected expert once. Thread-safety: a Batch
// and its sessions are used by one thread at a time (such a session's Eval uses the batch's
// buffers too). The Model must outlive both; sessions may outlive the Batch.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/status.h"
#include "engine/model.h"
#include "engine/session.h"

namespace airlock::engine {

struct BatchOptions {
  int n_threads = 0;        // 0: hardware concurrency
  int max_rows = 256;       // tokens per step, all sessions together
  int n_ctx = 0;            // the longest context of its sessions; 0: min(training context, 4096)
  bool exact_math = false;  // as SessionOptions::exact_math
  const Kernels* kernels = nullptr;          // as SessionOptions::kernels
  KvCacheType kv_type = KvCacheType::kAuto;  // as SessionOptions::kv_type, for every session
  // Sessions of n_ctx tokens it will hold: Create refuses, before allocating anything, when their
  // KV caches and the step buffers do not fit the memory available (each NewSession checks its
  // own cache again).
  int sessions = 1;
};

struct BatchItem {
  Session* session = nullptr;
  std::span<const std::int32_t> tokens;  // run at session->position() onwards
  bool want_logits = true;  // false: a non-final prompt chunk (skips the output projection)
  // Set by Step when want_logits: the last token's logits (n_vocab floats), valid until the next
  // Step or NewSession.
  std::span<const float> logits;
};

class Batch {
 public:
  // Errors: kInvalidArgument (bad options, n_ctx above the training context), kLimitExceeded
  // (`sessions` caches and the buffers need more memory than is available; the message names
  // the bytes and the largest n_ctx that fits), kInternal (threads).
  static Result<std::unique_ptr<Batch>> Create(const Model& model,
                                               const BatchOptions& options = {});
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // A session that runs on this batch's threads and buffers, with `n_ctx` tokens of context
  // (0: the batch's n_ctx). Errors: kInvalidArgument (n_ctx negative or above the batch's),
  // kLimitExceeded (its cache needs more memory than is available, or allocation fails).
  Result<std::unique_ptr<Session>> NewSession(int n_ctx = 0);

  // Runs every item's tokens in one forward pass, advances each session's position by its token
  // count and sets `logits` of the items that want them. Errors (then nothing ran):
  // kInvalidArgument (no items, a session not created by this batch or listed twice, an empty
  // token list, a token id outside the vocabulary, more than max_rows tokens in all),
  // kLimitExceeded (a session's context is full).
  Status Step(std::span<BatchItem> items);

  int max_rows() const;
  int n_ctx() const;
  int n_threads() const;
  const char* kernel_name() const;

 private:
  Batch() = default;
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace airlock::engine
