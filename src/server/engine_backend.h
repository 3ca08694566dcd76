// Local GGUF models behind the gateway: a ModelBackend backed by the Airlock inference engine.
// Concurrency scheme (documented simple one): the model is loaded once and shared; it has
// `slots` sessions (each with its own KV cache); requests take a free slot in arrival order
// (FIFO, so they are served fairly) and wait while all are busy. A slot keeps its last token
// sequence, so a follow-up turn of the same conversation reuses the cached prefix.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "server/model_backend.h"

namespace airlock::server {

struct EngineBackendOptions {
  std::string name;  // served model name
  int slots = 1;     // concurrent generations
  int threads = 0;   // per slot; 0: all cores divided by slots
  int ctx = 0;       // per slot; 0: min(training context, 4096)
};

// Loads `gguf_path` (refused when it fails the GGUF structural checks). Errors: those of
// engine::Model::Load, Tokenizer::FromGguf and Session::Create.
Result<std::shared_ptr<ModelBackend>> LoadEngineBackend(const std::string& gguf_path,
                                                        const EngineBackendOptions& options);

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
