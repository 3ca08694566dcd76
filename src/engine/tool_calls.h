// Tool calls in a model's reply, turned into OpenAI's `tool_calls` (a function name and its
// arguments as JSON text). Each chat template family asks for its own syntax:
//   Qwen (2, 2.5, 3, QwQ):  <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>, one block
//                           per call;
//   DeepSeek V3 / R1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json
//                           \n{...}\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜> (and V3.1's
//                           <｜tool▁call▁begin｜>f<｜tool▁sep｜>{...}<｜tool▁call▁end｜>);
//   Llama 3.x:              a reply that is {"name": "f", "parameters": {...}} (several joined by
//                           ';'), optionally after <|python_tag|>, or a built-in tool call
//                           <|python_tag|>brave_search.call(query="...").
// The markers are special tokens in these vocabularies: parse text decoded with special tokens
// rendered (Tokenizer::Decode(ids, /*render_special=*/true)).
//
// Model output is untrusted: parsing never fails and never throws. Whatever is not a complete,
// well-formed call (unterminated block, invalid JSON, no name, arguments not an object, nesting
// deeper than 64, more than 128 calls) stays in the content as text, so nothing is lost and
// nothing half-parsed is executed. Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace airlock::engine {

enum class ToolCallSyntax { kNone, kQwen, kDeepSeek, kLlama3 };

// The syntax a chat template's source asks for, from its markers; kNone when it has none.
ToolCallSyntax DetectToolCallSyntax(std::string_view chat_template);
const char* ToolCallSyntaxName(ToolCallSyntax syntax);

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object, compact ("{\"city\":\"Paris\"}")
};

struct ParsedReply {
  std::string content;  // the reply without the tool-call blocks (trimmed); may be empty
  std::vector<ToolCall> tool_calls;
};

ParsedReply ParseToolCalls(std::string_view text, ToolCallSyntax syntax);

}  // namespace airlock::engine
