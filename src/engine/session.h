// An inference session over a loaded Model: the KV cache (F16 by default; F32 or Q8_0 on
// request), scratch buffers, a thread pool and the forward pass. Eval() appends tokens at the
// current position (a prompt is processed as a batch of up to max_batch tokens per pass, not token
// by token) and returns logits. Buffers are allocated at Create(); the decode loop allocates
// nothing. A Session is used by one thread at a time; the Model must outlive it. Several sessions
// can also advance together in one forward pass (engine/batch.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/model.h"

namespace airlock::engine {

struct Kernels;

// Element type of the KV cache. kAuto: F32 with exact_math (the reference path), else F16 (half
// the memory; logits move by about 1e-2 at most on the reference models). Q8_0 halves it again
// (34 bytes per 32 values) and needs every attention head to be whole 32-value blocks; logits
// move by up to about 0.25 (docs/ARCHITECTURE.md, "Engine layout").
enum class KvCacheType { kAuto, kF32, kF16, kQ8_0 };
// "auto", "f32", "f16", "q8_0".
const char* KvCacheTypeName(KvCacheType type);
// Parses a --kv-type value (case-insensitive names as above); nullopt for anything else.
std::optional<KvCacheType> ParseKvCacheType(std::string_view name);
// Bytes of KV cache per token of context for `model` with `type` (kAuto as without exact_math).
std::uint64_t KvCacheBytesPerToken(const ModelConfig& config, KvCacheType type);

struct SessionOptions {
  int n_ctx = 0;        // context length in tokens, up to the training context; 0: min(that, 4096)
  int n_threads = 0;    // 0: hardware concurrency
  int max_batch = 256;  // prompt tokens per forward pass
  // Dequantize-then-float32 math instead of 8-bit activations: slower; matches llama.cpp's
  // logits for the exactly dequantized weights to ~1e-5 (used by the correctness tests).
  bool exact_math = false;
  // A specific kernel table (tests compare the scalar and SIMD tables); nullptr: exact_math
  // decides between ExactKernels() and BestKernels().
  const Kernels* kernels = nullptr;
  KvCacheType kv_type = KvCacheType::kAuto;
};

namespace internal {
struct SessionState;
}

class Batch;

class Session {
 public:
  // Errors: kInvalidArgument (bad options: a negative n_ctx/n_threads/max_batch, n_ctx above the
  // model's training context (the engine applies only the rope scaling the file declares) or 1M,
  // a Q8_0 cache the model's heads do not fit), kLimitExceeded (the KV cache would exceed 64 GiB,
  // or the cache and the per-pass buffers need more than the memory available now, checked
  // before allocating: the message names the bytes needed and available and the largest context
  // that fits), kInternal (the worker threads cannot be started).
  static Result<std::unique_ptr<Session>> Create(const Model& model,
                                                 const SessionOptions& options = {});
  ~Session();

  // Runs `tokens` at positions position()..position()+n-1. Returns the logits of the last token
  // (n_vocab floats), or of every token (n * n_vocab, row per token) when `all_logits`. The span
  // is valid until the next Eval. Errors: kInvalidArgument (empty input, a token id outside the
  // vocabulary), kLimitExceeded (the context is full). `progress`, when set, is called after
  // each forward pass of max_batch tokens with the tokens of `tokens` done so far (for a
  // prompt-progress line; it must not use this session).
  Result<std::span<const float>> Eval(
      std::span<const std::int32_t> tokens, bool all_logits = false,
      const std::function<void(std::size_t done, std::size_t total)>& progress = {});

  int position() const;
  int n_ctx() const;
  int n_threads() const;
  int max_batch() const;  // tokens per forward pass
  // Forgets tokens at positions >= `position` (0 clears the context).
  void Rewind(int position);
  const char* kernel_name() const;
  KvCacheType kv_type() const;  // resolved: never kAuto
  std::uint64_t kv_cache_bytes() const;

 private:
  friend class Batch;
  Session() = default;
  std::unique_ptr<internal::SessionState> s_;
};

}  // namespace airlock::engine
