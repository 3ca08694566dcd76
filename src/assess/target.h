// What `airlock probe` talks to: a chat model behind the ChatTarget interface. The endpoint
// target speaks the OpenAI chat-completions protocol over HTTP to exactly the URL the user gave
// (nothing else is contacted). Local GGUF models plug in through the same interface.
// The endpoint is untrusted (it may be the gray-market proxy being vetted, or a hostile judge):
// every reply is read under a byte cap and a deadline derived from max_tokens (ReplyLimitsFor),
// and a reply that is over-long, late, not a chat completion, nested too deeply, or whose
// `content` is null (without a refusal), an array or an object is an error value, never an empty
// answer that a detector would score as a failed attack.
// Thread-safety: one ChatTarget is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/chat_message.h"
#include "core/status.h"

namespace airlock::assess {

// The one plain message type of the server, the engine and assess (core/chat_message.h).
using ChatMessage = core::ChatMessage;

// Fixed generation parameters; recorded in every result so runs are reproducible.
struct GenerationParams {
  double temperature = 0.0;  // greedy by default: deterministic
  int max_tokens = 256;
  std::uint64_t seed = 42;
};

struct ChatReply {
  std::string content;    // the visible answer, with any <think>...</think> block removed
  std::string reasoning;  // reasoning_content or the <think> block, when the model emits one
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // The request never reached the model: a gateway in front of it refused it (HTTP 403, policy).
  bool blocked = false;
};

class ChatTarget {
 public:
  virtual ~ChatTarget() = default;
  // Errors: kUnavailable (connection), kInvalidArgument (4xx), kCorrupt (unparseable reply).
  virtual Result<ChatReply> Chat(const std::vector<ChatMessage>& messages,
                                 const GenerationParams& params) = 0;
  // "endpoint http://127.0.0.1:8080/v1 model qwen2.5" — for reports.
  virtual std::string Describe() const = 0;
};

struct EndpointOptions {
  std::string base_url;     // "http://host:port" or "http://host:port/v1"; https needs TLS support
  std::string model;        // the "model" field sent; may be empty for single-model servers
  std::string api_key;      // sent as a bearer token when non-empty; never logged
  int timeout_seconds = 0;  // whole-exchange deadline; 0: derived from max_tokens
  std::size_t max_reply_bytes = 0;  // response body cap; 0: derived from max_tokens
  std::string label;  // Describe() text when set (e.g. to hide an ephemeral port from resume)
  // The endpoint is an Airlock gateway the caller runs: its HTTP 403 policy refusals mean the
  // request never reached the model (ChatReply::blocked, a failed attack). Off by default: an
  // untrusted endpoint could otherwise answer every attack it fails with 403 and lower its
  // attack-success rate; then a 403 is an error like any other refusal of the request.
  bool trust_policy_blocks = false;
};

// The caps one reply is read under. Derived from max_tokens with a wide margin: a token is at most
// a few dozen bytes of UTF-8, JSON escaping can multiply that by six, and reasoning text counts
// too, so 64 KiB + 512 bytes per token; and 30 s + 250 ms per token (4 tokens/s at the slowest,
// below any useful CPU model). Non-zero EndpointOptions fields override.
struct ReplyLimits {
  std::size_t max_bytes = 0;
  int deadline_ms = 0;
};
ReplyLimits ReplyLimitsFor(const GenerationParams& params, const EndpointOptions& options = {});

// Errors of Chat: kUnavailable (connection), kInvalidArgument (4xx/5xx), kCorrupt (not a chat
// completion, content null/array/object, nesting over 32 levels), kLimitExceeded (reply over
// its byte cap), kDeadlineExceeded (reply not complete within its deadline).
// Errors: kInvalidArgument for a malformed or unsupported URL.
Result<std::unique_ptr<ChatTarget>> MakeEndpointTarget(const EndpointOptions& options);

// A local GGUF model run by the Airlock engine (loaded once; greedy by default like endpoints).
// Errors: those of loading the model.
Result<std::unique_ptr<ChatTarget>> MakeLocalTarget(const std::string& gguf_path, int threads = 0,
                                                    int ctx = 0);

// Splits "<think>...</think>answer" into reasoning and answer (also handles an answer that
// starts inside an unclosed think block, as DeepSeek-R1 templates produce).
void SplitReasoning(const std::string& text, std::string* reasoning, std::string* answer);

}  // namespace airlock::assess
