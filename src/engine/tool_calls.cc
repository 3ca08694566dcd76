#include "engine/tool_calls.h"

#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/text.h"

namespace airlock::engine {
namespace {

using Json = nlohmann::json;

constexpr std::size_t kMaxNesting = 64;
constexpr std::size_t kMaxCalls = 128;

constexpr std::string_view kQwenOpen = "<tool_call>";
constexpr std::string_view kQwenClose = "</tool_call>";
constexpr std::string_view kDsCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kDsCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kDsCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kDsCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDsSep = "<｜tool▁sep｜>";
constexpr std::string_view kPythonTag = "<|python_tag|>";

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// A JSON object from text, or nullopt (invalid, too deep, not an object).
std::optional<Json> ParseObject(std::string_view text) {
  text = Trim(text);
  if (text.empty() || text.front() != '{') return std::nullopt;
  if (core::JsonNestingDepth(text, kMaxNesting) > kMaxNesting) return std::nullopt;
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

// Arguments given as an object, or as a string holding one: compact JSON text.
std::optional<std::string> ArgumentsText(const Json& args) {
  if (args.is_object()) return Dump(args);
  if (args.is_string()) {
    auto inner = ParseObject(args.get<std::string>());
    if (inner) return Dump(*inner);
  }
  return std::nullopt;
}

// {"name": "...", "arguments" | "parameters": {...}}. `require_arguments`: the key must be
// there (Llama's bare JSON, where any JSON reply could otherwise look like a call).
std::optional<ToolCall> CallFromObject(std::string_view text, bool require_arguments) {
  auto j = ParseObject(text);
  if (!j) return std::nullopt;
  auto name = j->find("name");
  if (name == j->end() || !name->is_string() || name->get<std::string>().empty()) {
    return std::nullopt;
  }
  auto args = j->find("arguments");
  if (args == j->end()) args = j->find("parameters");
  ToolCall call;
  call.name = name->get<std::string>();
  if (args == j->end()) {
    if (require_arguments) return std::nullopt;
    call.arguments = "{}";
    return call;
  }
  auto text_args = ArgumentsText(*args);
  if (!text_args) return std::nullopt;
  call.arguments = std::move(*text_args);
  return call;
}

void AppendContent(std::string& content, std::string_view piece) { content.append(piece); }

ParsedReply Finish(std::string content, std::vector<ToolCall> calls) {
  ParsedReply r;
  r.content = std::string(Trim(content));
  r.tool_calls = std::move(calls);
  return r;
}

ParsedReply ParseQwen(std::string_view text) {
  std::string content;
  std::vector<ToolCall> calls;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t open = text.find(kQwenOpen, pos);
    if (open == std::string_view::npos || calls.size() >= kMaxCalls) break;
    const std::size_t body = open + kQwenOpen.size();
    const std::size_t close = text.find(kQwenClose, body);
    if (close == std::string_view::npos) break;  // unterminated: the rest stays text
    AppendContent(content, text.substr(pos, open - pos));
    auto call = CallFromObject(text.substr(body, close - body), /*require_arguments=*/false);
    const std::size_t end = close + kQwenClose.size();
    if (call) {
      calls.push_back(std::move(*call));
    } else {
      AppendContent(content, text.substr(open, end - open));
    }
    pos = end;
  }
  if (pos < text.size()) AppendContent(content, text.substr(pos));
  return Finish(std::move(content), std::move(calls));
}

// One DeepSeek call body (between call-begin and call-end).
std::optional<ToolCall> DeepSeekCall(std::string_view body) {
  const std::size_t sep = body.find(kDsSep);
  if (sep == std::string_view::npos) return std::nullopt;
  const std::string_view left = Trim(body.substr(0, sep));
  const std::string_view right = body.substr(sep + kDsSep.size());
  const std::size_t fence = right.find("```");
  ToolCall call;
  std::string_view args;
  if (fence != std::string_view::npos) {
    // V3 / R1: TYPE<sep>NAME\n```json\nARGS\n```
    call.name = std::string(Trim(right.substr(0, fence)));
    std::string_view rest = right.substr(fence + 3);
    const std::size_t line_end = rest.find('\n');
    if (line_end == std::string_view::npos) return std::nullopt;
    rest = rest.substr(line_end + 1);
    const std::size_t close = rest.rfind("```");
    if (close == std::string_view::npos) return std::nullopt;
    args = rest.substr(0, close);
  } else {
    // V3.1: NAME<sep>ARGS
    call.name = std::string(left);
    args = right;
  }
  if (call.name.empty() || call.name.find('\n') != std::string::npos) return std::nullopt;
  auto object = ParseObject(args);
  if (!object) return std::nullopt;
  call.arguments = Dump(*object);
  return call;
}

ParsedReply ParseDeepSeek(std::string_view text) {
  std::size_t start = text.find(kDsCallsBegin);
  std::size_t pos = 0;
  if (start != std::string_view::npos) {
    pos = start + kDsCallsBegin.size();
  } else {
    start = text.find(kDsCallBegin);  // a model may leave out the outer marker
    if (start == std::string_view::npos) return Finish(std::string(text), {});
    pos = start;
  }
  std::string content(text.substr(0, start));
  std::vector<ToolCall> calls;
  for (;;) {
    while (pos < text.size() && IsSpace(text[pos])) ++pos;
    if (text.substr(pos).starts_with(kDsCallsEnd)) {
      pos += kDsCallsEnd.size();
      break;
    }
    if (!text.substr(pos).starts_with(kDsCallBegin) || calls.size() >= kMaxCalls) break;
    const std::size_t body = pos + kDsCallBegin.size();
    const std::size_t end = text.find(kDsCallEnd, body);
    if (end == std::string_view::npos) break;  // unterminated: the rest stays text
    auto call = DeepSeekCall(text.substr(body, end - body));
    const std::size_t after = end + kDsCallEnd.size();
    if (call) {
      calls.push_back(std::move(*call));
    } else {
      AppendContent(content, text.substr(pos, after - pos));
    }
    pos = after;
  }
  if (pos < text.size()) AppendContent(content, text.substr(pos));
  return Finish(std::move(content), std::move(calls));
}

// brave_search.call(query="x", count=3): a Llama 3.1 built-in tool call.
std::optional<ToolCall> BuiltinCall(std::string_view s) {
  s = Trim(s);
  std::size_t i = 0;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
  // Built-in tool names are short identifiers (brave_search, wolfram_alpha, code_interpreter).
  if (i == 0 || i > 64 || !s.substr(i).starts_with(".call(") || s.back() != ')')
    return std::nullopt;
  ToolCall call;
  call.name = std::string(s.substr(0, i));
  std::string_view args = s.substr(i + 6, s.size() - (i + 6) - 1);
  Json object = Json::object();
  std::size_t p = 0;
  auto skip = [&] {
    while (p < args.size() && IsSpace(args[p])) ++p;
  };
  skip();
  while (p < args.size()) {
    const std::size_t key_start = p;
    while (p < args.size() && (std::isalnum(static_cast<unsigned char>(args[p])) || args[p] == '_'))
      ++p;
    if (p == key_start) return std::nullopt;
    const std::string key(args.substr(key_start, p - key_start));
    skip();
    if (p >= args.size() || args[p] != '=') return std::nullopt;
    ++p;
    skip();
    if (p >= args.size()) return std::nullopt;
    if (args[p] == '"' || args[p] == '\'') {
      const char quote = args[p++];
      std::string value;
      for (;; ++p) {
        if (p >= args.size()) return std::nullopt;
        if (args[p] == '\\' && p + 1 < args.size()) {
          const char e = args[++p];
          value += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        } else if (args[p] == quote) {
          ++p;
          break;
        } else {
          value += args[p];
        }
      }
      object[key] = value;
    } else {
      const std::size_t v_start = p;
      while (p < args.size() && args[p] != ',' && !IsSpace(args[p])) ++p;
      const std::string word(args.substr(v_start, p - v_start));
      if (word == "True" || word == "true") {
        object[key] = true;
      } else if (word == "False" || word == "false") {
        object[key] = false;
      } else if (word == "None" || word == "null") {
        object[key] = nullptr;
      } else {
        Json number = Json::parse(word, nullptr, false);
        if (number.is_discarded() || !number.is_number()) return std::nullopt;
        object[key] = number;
      }
    }
    skip();
    if (p < args.size()) {
      if (args[p] != ',') return std::nullopt;
      ++p;
      skip();
    }
  }
  call.arguments = Dump(object);
  return call;
}

ParsedReply ParseLlama3(std::string_view text) {
  std::string_view body = Trim(text);
  for (bool again = true; again;) {  // end-of-message markers rendered as text
    again = false;
    for (std::string_view end : {"<|eom_id|>", "<|eot_id|>"}) {
      if (body.ends_with(end)) {
        body = Trim(body.substr(0, body.size() - end.size()));
        again = true;
      }
    }
  }
  std::string content;
  const std::size_t tag = body.find(kPythonTag);
  if (tag != std::string_view::npos) {
    content = std::string(body.substr(0, tag));
    body = Trim(body.substr(tag + kPythonTag.size()));
    if (auto builtin = BuiltinCall(body)) return Finish(std::move(content), {std::move(*builtin)});
  }
  // One or more {"name": ..., "parameters": ...} objects, separated by ';' or blanks.
  std::vector<ToolCall> calls;
  std::size_t p = 0;
  while (p < body.size() && calls.size() < kMaxCalls) {
    if (body[p] != '{') return Finish(std::string(Trim(text)), {});
    const std::size_t end = core::JsonBracketedEnd(body, p);
    if (end == std::string_view::npos) return Finish(std::string(Trim(text)), {});
    auto call = CallFromObject(body.substr(p, end - p), /*require_arguments=*/true);
    if (!call) return Finish(std::string(Trim(text)), {});
    calls.push_back(std::move(*call));
    p = end;
    while (p < body.size() && (IsSpace(body[p]) || body[p] == ';')) ++p;
  }
  if (calls.empty() || p < body.size()) return Finish(std::string(Trim(text)), {});
  return Finish(std::move(content), std::move(calls));
}

}  // namespace

ToolCallSyntax DetectToolCallSyntax(std::string_view t) {
  if (t.find(kDsCallsBegin) != std::string_view::npos ||
      t.find(kDsCallBegin) != std::string_view::npos) {
    return ToolCallSyntax::kDeepSeek;
  }
  if (t.find(kQwenOpen) != std::string_view::npos && t.find(kQwenClose) != std::string_view::npos) {
    return ToolCallSyntax::kQwen;
  }
  if (t.find("<|start_header_id|>") != std::string_view::npos &&
      (t.find(kPythonTag) != std::string_view::npos ||
       t.find("tool_calls") != std::string_view::npos)) {
    return ToolCallSyntax::kLlama3;
  }
  return ToolCallSyntax::kNone;
}

const char* ToolCallSyntaxName(ToolCallSyntax syntax) {
  switch (syntax) {
    case ToolCallSyntax::kQwen:
      return "qwen";
    case ToolCallSyntax::kDeepSeek:
      return "deepseek";
    case ToolCallSyntax::kLlama3:
      return "llama3";
    case ToolCallSyntax::kNone:
      break;
  }
  return "none";
}

ParsedReply ParseToolCalls(std::string_view text, ToolCallSyntax syntax) {
  try {
    switch (syntax) {
      case ToolCallSyntax::kQwen:
        return ParseQwen(text);
      case ToolCallSyntax::kDeepSeek:
        return ParseDeepSeek(text);
      case ToolCallSyntax::kLlama3:
        return ParseLlama3(text);
      case ToolCallSyntax::kNone:
        break;
    }
  } catch (const std::exception&) {  // allocation failure or an unexpected JSON shape
  }
  return Finish(std::string(text), {});
}

}  // namespace airlock::engine
