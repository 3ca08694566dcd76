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

#include "core/chat_message.h"
#include "core/status.h"
#include "engine/reasoning.h"
#include "engine/tool_calls.h"

namespace airlock::server {

// The one plain message type of the server, the engine and assess (core/chat_message.h).
using ChatMessage = core::ChatMessage;

struct GenerateRequest {
  bool chat = true;                   // chat: `messages`; completion: `prompt`
  std::vector<ChatMessage> messages;  // already transformed by the policy
  std::string prompt;
  int max_tokens = 256;
  double temperature = 1.0;
  double top_p = 1.0;
  std::vector<std::string> stop;
  std::uint64_t seed = 0;
  double presence_penalty = 0;
  double frequency_penalty = 0;
  // Structured output (OpenAI response_format): the reply is sampled so that it is a document of
  // this JSON Schema (its text, already validated), or any JSON object when json_object is set.
  std::string json_schema;
  bool json_object = false;
  // OpenAI logprobs: the sampled tokens' log-probabilities and `top_logprobs` (0..20)
  // alternatives each, in GenerateResult::logprobs.
  bool logprobs = false;
  int top_logprobs = 0;
  // OpenAI tools (a JSON array of tool definitions, already validated; empty: none): given to
  // the chat template, and the reply is decoded with special tokens rendered so that the
  // template's tool-call markers survive for ParseToolCalls.
  std::string tools_json;
};

// One generated token as OpenAI's logprobs report it.
struct TokenLogprobAlternative {
  std::string token;  // valid UTF-8 (half a character becomes U+FFFD)
  std::vector<std::uint8_t> bytes;
  double logprob = 0;
};
struct TokenLogprob : TokenLogprobAlternative {
  std::vector<TokenLogprobAlternative> top;  // most likely first
};

struct GenerateResult {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::string finish_reason = "stop";  // "stop", "length", "cancelled"
  std::vector<TokenLogprob> logprobs;  // with GenerateRequest::logprobs: one per generated token
};

// The KV cache a local model holds, for /metrics: the bytes allocated for all its slots and the
// element type ("f32", "f16", "q8_0"). bytes 0: none (not a local model, or not reported).
struct KvCacheInfo {
  std::uint64_t bytes = 0;
  std::string type;
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  // Name clients use in the `model` field.
  virtual std::string Name() const = 0;
  // Number of tokens `text` encodes to (for budgets and usage).
  virtual std::int64_t CountTokens(std::string_view text) const = 0;
  // The tool-call syntax of the model's chat template (engine/tool_calls.h); kNone: the model
  // has no tool-call format, and requests with tools are refused.
  virtual engine::ToolCallSyntax ToolSyntax() const { return engine::ToolCallSyntax::kNone; }
  // The markers of the model's reasoning (engine/reasoning.h): the gateway splits reasoning off
  // the output at exactly these. Empty (none known): at <think> in any letter case, as for an
  // upstream.
  virtual engine::ReasoningMarkers ReasoningTags() const { return {}; }
  // The KV cache it allocated (local models; see KvCacheInfo).
  virtual KvCacheInfo KvCache() const { return {}; }
  // Generates a completion. `on_text` receives decoded text pieces as they are produced (chat
  // templates applied by the backend; <think> reasoning included verbatim; with tools_json,
  // special tokens rendered) and returns false to stop early. Generation also stops when `cancel`
  // becomes true (client went away). Errors: kInvalidArgument (prompt too long for the context,
  // a schema the grammar compiler refuses), kCancelled, kInternal.
  virtual Result<GenerateResult> Generate(const GenerateRequest& request,
                                          const std::function<bool(std::string_view)>& on_text,
                                          const std::atomic<bool>& cancel) = 0;
};

}  // namespace airlock::server
