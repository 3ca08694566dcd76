// RenderChat: turns a model's chat template (GGUF `tokenizer.chat_template` or HF
// `chat_template`) plus a conversation into the prompt text, with the sandboxed interpreter of
// template.h, and says which bytes of the prompt are template text and which are message content.
//
// Why the segmentation: special tokens such as <|im_start|> must be recognised only where the
// template wrote them. Every string of the messages and tools is marked as input and the
// interpreter keeps those marks through concatenation, slicing, strip/split/replace, tojson and
// so on, so a user who types "<|im_start|>system" gets plain text, not a control token.
// How a tokenizer should use it: find special tokens only inside kTemplate segments; then tokenize
// each maximal run of remaining text (content and template text joined, not split at segment
// boundaries) as usual, so that benign prompts tokenize exactly as llama.cpp does.
//
// Ownership: results are plain values. Thread-safety: reentrant; a parsed Template can be shared.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "template/template.h"
#include "template/value.h"

namespace airlock::tmpl {

struct ChatMessage {
  std::string role;                   // "system", "user", "assistant", "tool", ...
  Value content = Value::String("");  // a string, none (assistant turn with only tool calls),
                                      // or a list of {"type": "text", "text": ...} parts
  std::optional<std::string> reasoning_content;  // assistant "thinking" of an earlier turn
  Value tool_calls;                              // undefined when absent; else a list of
                     // {"type":"function","function":{"name":..,"arguments":{..} or "json"}}
  Value extra;  // a dict of further fields (e.g. "tool_call_id", "name"); undefined = none
};

struct ChatOptions {
  bool add_generation_prompt = true;  // end with the assistant header so the model answers
  std::string bos_token;              // the vocabulary's BOS text, e.g. "<|begin_of_text|>"
  std::string eos_token;
  Value tools;  // list of tool definitions (OpenAI format), or undefined for none
  // Further template variables, e.g. {"enable_thinking": false} for Qwen3. Strings here are
  // template text unless created with Value::String(s, /*is_input=*/true).
  Value extra_variables;  // a dict or undefined
  ParseOptions parse;
  RenderOptions render;  // limits; render.now_unix_seconds fixes strftime_now() for tests
};

enum class SegmentKind {
  kTemplate,  // written by the template: special tokens may be parsed here
  kContent,   // came from messages/tools: never parse special tokens here
};

struct ChatSegment {
  SegmentKind kind;
  std::size_t begin;  // byte range [begin, end) of ChatPrompt::text
  std::size_t end;
};

struct ChatPrompt {
  std::string text;
  // Covers text exactly, in order, adjacent segments of different kinds, none empty.
  std::vector<ChatSegment> segments;
  std::string_view SegmentText(const ChatSegment& s) const {
    return std::string_view(text).substr(s.begin, s.end - s.begin);
  }
};

// Parses `template_source` and renders it (see below). Errors: those of Template::Parse and
// Template::Render (kCorrupt for a template outside the supported subset, kInvalidArgument for a
// runtime error such as the template's own raise_exception("..."), kPermissionDenied for a
// refused sandbox operation, kLimitExceeded for a cap).
Result<ChatPrompt> RenderChat(std::string_view template_source,
                              const std::vector<ChatMessage>& messages,
                              const ChatOptions& options = {});

// Same with an already parsed template (parse once per model, render every turn).
Result<ChatPrompt> RenderChat(const Template& tmpl, const std::vector<ChatMessage>& messages,
                              const ChatOptions& options = {});

// Reads an OpenAI-style "messages" JSON array ([{"role":..,"content":..,"tool_calls":..}, ...]).
// Errors: kInvalidArgument for malformed JSON or a message without a string "role".
Result<std::vector<ChatMessage>> ChatMessagesFromJson(std::string_view json);

// Returns a deep copy of `v` with every string and dict key marked as input.
Value MarkAsInput(const Value& v);

}  // namespace airlock::tmpl
