// The OpenAI request parameters a local model implements beyond messages and max_tokens, read and
// checked once before generation: sampling ranges (engine::ValidateOpenAISampling), `n`,
// `logprobs`/`top_logprobs` (chat: a boolean and 0..20; completions: the legacy integer 0..5),
// `response_format` (text, json_object, json_schema: the schema is compiled here, so a schema the
// grammar compiler refuses is a 400), `tools`/`tool_choice` (function tools, "auto" or "none",
// for a model whose chat template has a tool-call format) and assistant `tool_calls` /
// `tool_call_id` in the messages. A parameter local models do not implement (logit_bias,
// best_of above 1, echo, suffix, functions, audio, prediction, image or audio content parts,
// tool_choice "required" or a named function, ...) is a 400 naming it in `param`, never silently
// ignored. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "engine/tool_calls.h"
#include "server/internal/request.h"

namespace airlock::server::internal {

// The most choices (`n`) one request to a local model may ask for: each is its own generation.
inline constexpr int kMaxLocalChoices = 16;

struct LocalParams {
  int n = 1;
  bool logprobs = false;
  int top_logprobs = 0;
  bool legacy_logprobs = false;  // /v1/completions: the integer form and its response shape
  std::string json_schema;       // response_format json_schema: the schema's text
  bool json_object = false;      // response_format json_object
  std::string tools_json;        // the tools (JSON array text) when the model is to see them
  double presence_penalty = 0;
  double frequency_penalty = 0;
};

// Reads the parameters of a body ParseCompletionRequest accepted. `tool_syntax`: the model's
// tool-call format (kNone: a request with tools is refused).
std::optional<RequestError> ParseLocalParams(const nlohmann::json& body, bool chat,
                                             engine::ToolCallSyntax tool_syntax, LocalParams* out);

// `stream_options` of any completion request: an object whose `include_usage` is a boolean, only
// with `stream: true` (as OpenAI checks). Sets *include_usage.
std::optional<RequestError> ParseStreamOptions(const nlohmann::json& body, bool stream,
                                               bool* include_usage);

}  // namespace airlock::server::internal
