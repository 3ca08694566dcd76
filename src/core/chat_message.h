// One turn of a chat conversation as the server, the engine and assess pass it around: plain
// strings, no JSON and no template values. The chat template's renderer takes its own type
// (tmpl::ChatMessage, whose strings are values marked as input); engine::ToTemplateMessages
// (engine/chat_prompt.h) is the one place that converts.
// Ownership: a plain value.
#pragma once

#include <string>

namespace airlock::core {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
  // Tool use: an assistant turn's calls (OpenAI `tool_calls`, JSON array text; "" none) and a
  // tool result's `tool_call_id`, for the chat template.
  std::string tool_calls_json;
  std::string tool_call_id;

  friend bool operator==(const ChatMessage&, const ChatMessage&) = default;
};

}  // namespace airlock::core
