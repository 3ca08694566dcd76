// Template::Parse and Template::Render, and the interpreter's budget, scopes and output; the rest
// of the interpreter is in interp_*.cc (see template/internal/interpreter.h).
#include "template/internal/interpreter.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <unordered_set>

#include "core/text.h"
#include "template/internal/ast.h"
#include "template/internal/prompt_text.h"
#include "template/internal/strings.h"
#include "template/template.h"

namespace airlock::tmpl {

namespace internal {

const char* KindName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "undefined";
    case Value::Kind::kNone:
      return "none";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "string";
    case Value::Kind::kList:
      return "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kCallable:
      return "function";
  }
  return "?";
}

bool ContainsInput(const Value& v, int depth) {
  if (depth > 128) return true;
  if (v.is_string()) return !v.string_data().input.empty();
  if (v.is_list()) {
    for (const Value& x : v.items())
      if (ContainsInput(x, depth + 1)) return true;
  } else if (v.is_dict()) {
    if (v.dict_keys_are_input() && !v.entries().empty()) return true;
    for (const auto& e : v.entries())
      if (ContainsInput(e.second, depth + 1)) return true;
  }
  return false;
}

Rendered Interp::Run(const Value& variables) {
  frames_.push_back({{}, -1});
  cur_ = 0;
  if (variables.is_dict())
    for (const auto& [k, v] : variables.entries()) frames_[0].vars[k] = v;
  out_.emplace_back();
  ExecBody(program_.body);
  Rendered r;
  StringData d = out_.back().Take();
  r.text = std::move(d.text);
  r.input = std::move(d.input);
  return r;
}

void Interp::Emit(const Value& v, std::size_t offset) {
  StrBuilder& b = out_.back();
  if (v.is_string()) {
    b.Append(v.string_data());
  } else if (!v.is_undefined()) {
    b.AppendText(ToPythonString(v), ContainsInput(v));
  }
  std::size_t cap = out_.size() == 1 ? limits_.max_output_bytes : limits_.max_string_bytes;
  if (b.size() > cap)
    Throw(LimitExceeded("template: output larger than " + std::to_string(cap) + " bytes at byte " +
                        std::to_string(offset)));
  Tick(v.is_string() ? v.str().size() / 16 : 1);
}

}  // namespace internal

Result<Template> Template::Parse(std::string source, const ParseOptions& options) {
  internal::ParseConfig config;
  config.trim_blocks = options.trim_blocks;
  config.lstrip_blocks = options.lstrip_blocks;
  config.keep_trailing_newline = options.keep_trailing_newline;
  config.max_nesting = options.max_nesting;
  AIRLOCK_ASSIGN_OR_RETURN(auto program, internal::ParseProgram(std::move(source), config));
  Template t;
  t.program_ = std::move(program);
  return t;
}

Result<Rendered> Template::Render(const Value& variables, const RenderOptions& options) const {
  if (!program_) return InvalidArgument("template: render of an unparsed template");
  try {
    internal::Interp interp(*program_, options);
    return interp.Run(variables);
  } catch (const internal::RenderError& e) {
    return e.status;
  } catch (const std::bad_alloc&) {
    return LimitExceeded("template: out of memory while rendering");
  } catch (const std::length_error&) {
    return LimitExceeded("template: value too large while rendering");
  } catch (const std::exception& e) {
    return Internal(std::string("template: unexpected error while rendering: ") + e.what());
  }
}

namespace internal {

std::optional<Value> EvaluateClosedExpression(const Program& program, const Expr& expr,
                                              const Limits& limits) {
  try {
    RenderOptions options;
    options.limits = limits;
    options.now_unix_seconds = 0;
    internal::Interp interp(program, options);
    return interp.EvalClosed(expr);
  } catch (...) {  // RenderError, bad_alloc, length_error: not foldable
    return std::nullopt;
  }
}

}  // namespace internal

const std::string& Template::source() const {
  static const std::string kEmpty;
  return program_ ? program_->source : kEmpty;
}

}  // namespace airlock::tmpl
