// The interface a local model implementation offers the gateway. The inference engine provides
// implementations (one per loaded GGUF model); the server only routes requests to them, applies the
// same policy as for upstreams, and turns their output into OpenAI-shaped responses and SSE chunks.
// Ownership: the gateway holds backends through shared_ptr. Thread-safety: Generate() may be called
// concurrently from several request threads; an implementation queues or batches internally.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace airlock::server {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
};

struct GenerateRequest {
  bool chat = true;                   // chat: `messages`; completion: `prompt`
  std::vector<ChatMessage> messages;  // already transformed by the policy
  std::string prompt;
  int max_tokens = 256;
  double temperature = 1.0;
  double top_p = 1.0;
  std::vector<std::string> stop;
  std::uint64_t seed = 0;
};

struct GenerateResult {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::string finish_reason = "stop";  // "stop", "length", "cancelled"
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  // Name clients use in the `model` field.
  virtual std::string Name() const = 0;
  // Number of tokens `text` encodes to (for budgets and usage).
  virtual std::int64_t CountTokens(std::string_view text) const = 0;
  // Generates a completion. `on_text` receives decoded text pieces as they are produced (chat
  // templates applied by the backend; <think> reasoning included verbatim) and returns false to
  // stop early. Generation also stops when `cancel` becomes true (client went away). Errors:
  // kInvalidArgument (prompt too long for the context), kCancelled, kInternal.
  virtual Result<GenerateResult> Generate(const GenerateRequest& request,
                                          const std::function<bool(std::string_view)>& on_text,
                                          const std::atomic<bool>& cancel) = 0;
};

}  // namespace airlock::server
