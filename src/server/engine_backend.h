// Local GGUF models behind the gateway: a ModelBackend backed by the Airlock inference engine.
// Concurrency scheme (continuous batching): the model is loaded once; it has `slots` sessions
// (each with its own KV cache) and one scheduler thread that owns them and one thread pool
// (engine::Batch). Requests take a free slot in arrival order (FIFO, so they are served fairly)
// and wait while all are busy. Each scheduler step is one forward pass over every active slot:
// one decode token per generating slot plus prompt chunks of slots still reading their prompt
// (up to 128 tokens per step in all, oldest request first), so the weights are read once per
// step for all of them. Each request samples with its own parameters and seed; its thread turns
// the tokens into text (stop strings, streaming). A cancelled or finished request frees its slot
// at the next step; a slot whose reader lags 16 tokens behind pauses without holding up the
// others. A slot keeps its token sequence, and a request goes to the free slot sharing the
// longest prefix with its prompt, so a follow-up turn of a conversation reuses the cached
// prefix. Expert architectures (qwen2moe, qwen3moe, deepseek2) batch the same way: a step's rows
// are routed together and grouped by expert (engine/batch.h). `batched = false` keeps the FIFO
// queue and scheduler but gives each slot its own scheduler thread and threads (the scheme before
// batching).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "engine/session.h"
#include "server/model_backend.h"

namespace airlock::server {

struct EngineBackendOptions {
  std::string name;  // served model name
  int slots = 1;     // concurrent generations (decoded together)
  int threads = 0;   // threads of the step pool, shared by the slots; 0: all cores
  int ctx = 0;       // per slot; 0: min(training context, 4096)
  engine::KvCacheType kv_type = engine::KvCacheType::kAuto;  // F16 unless set
  // false: the per-slot scheme instead: each slot steps alone on its own scheduler thread and
  // `threads` threads (0: cores / slots). See docs/performance.md for when it is faster.
  bool batched = true;
};

// Loads `gguf_path`, from `model_fd` when it is an open descriptor of it (refused when it fails
// the GGUF structural checks). Errors: those of engine::Model::Load, Tokenizer::FromGguf and
// Batch::Create, kInternal (the scheduler thread cannot start).
Result<std::shared_ptr<ModelBackend>> LoadEngineBackend(const std::string& gguf_path,
                                                        const EngineBackendOptions& options,
                                                        int model_fd = -1);

// Requests currently waiting for a slot, across all engine backends (for /metrics).
int EngineQueueDepth();

// Batched steps run so far and the sequences they advanced, across all engine backends (for
// /metrics and tests): sequences / steps is the mean number of requests per step.
struct EngineStepCounts {
  std::int64_t steps = 0;
  std::int64_t sequences = 0;
};
EngineStepCounts EngineSteps();

}  // namespace airlock::server
