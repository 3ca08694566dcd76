// The sandbox's global functions and Jinja tests (is defined, is string...).
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
#include "template/internal/interpreter.h"
#include "template/internal/prompt_text.h"
#include "template/internal/strings.h"
#include "template/template.h"

namespace airlock::tmpl::internal {

Value Interp::Global(const std::string& name) {
  if (name == "range")
    return Builtin("range", [](Interp& in, CallArgs& a) -> Value {
      if (a.args.empty() || a.args.size() > 3) Error(a.offset, "range() takes 1 to 3 arguments");
      std::int64_t start = 0, stop, step = 1;
      if (a.args.size() == 1) {
        stop = in.AsIndex(a.args[0], a.offset);
      } else {
        start = in.AsIndex(a.args[0], a.offset);
        stop = in.AsIndex(a.args[1], a.offset);
        if (a.args.size() == 3) step = in.AsIndex(a.args[2], a.offset);
      }
      if (step == 0) Error(a.offset, "range() step must not be zero");
      std::vector<Value> out;
      for (std::int64_t i = start; step > 0 ? i < stop : i > stop;) {
        if (out.size() >= 1'000'000) Throw(LimitExceeded("template: range() longer than 1000000"));
        in.Tick();
        out.push_back(Value::Int(i));
        if (__builtin_add_overflow(i, step, &i)) break;
      }
      return in.ListOf(std::move(out), a.offset);
    });
  if (name == "dict" || name == "namespace")
    return Builtin(name == "dict" ? "dict" : "namespace",
                   [is_ns = name == "namespace"](Interp& in, CallArgs& a) -> Value {
                     Value d = Value::Dict();
                     for (const Value& p : a.args) {
                       if (!p.is_dict()) Error(a.offset, "positional argument must be a dict");
                       for (const auto& [k, v] : p.entries()) d.Set(k, v);
                     }
                     for (auto& [k, v] : a.kwargs) d.Set(k, v);
                     if (is_ns) d.MarkNamespace();
                     in.Tick(d.entries().size());
                     return d;
                   });
  if (name == "raise_exception")
    return Builtin("raise_exception", [](Interp&, CallArgs& a) -> Value {
      std::string msg = a.args.empty() ? "" : ToPythonString(a.args[0]);
      if (msg.size() > 512) msg.resize(512);
      Throw(InvalidArgument("template: raise_exception at byte " + std::to_string(a.offset) + ": " +
                            msg));
    });
  if (name == "strftime_now")
    return Builtin("strftime_now", [](Interp& in, CallArgs& a) -> Value {
      std::string fmt = in.StrArg(a, 0, "format", "strftime_now");
      if (fmt.size() > 128) Error(a.offset, "strftime_now() format too long");
      std::time_t t = in.now_ ? std::time_t(*in.now_) : std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[512];
      std::size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
      return Value::String(std::string(buf, n));
    });
  return Value::Undefined(name);
}

bool Interp::ApplyTest(const std::string& name, const Value& v, CallArgs& a) {
  auto arg0 = [&]() -> const Value& {
    if (a.args.empty()) Error(a.offset, "test '" + name + "' needs an argument");
    return a.args[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number() || v.is_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.bool_value();
  if (name == "false") return v.is_bool() && !v.bool_value();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.is_callable();
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    StringData m = MapCase(v.string_data(), name == "lower" ? 1 : 0);
    return m.text == v.str();
  }
  if (name == "even" || name == "odd") {
    if (!v.is_int()) Error(a.offset, "test '" + name + "' needs an integer");
    return (v.int_value() % 2 == 0) == (name == "even");
  }
  if (name == "divisibleby") {
    std::int64_t d = AsIndex(arg0(), a.offset);
    if (d == 0 || !v.is_int()) Error(a.offset, "divisibleby needs integers and a non-zero divisor");
    return v.int_value() % d == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return Equals(v, arg0());
  if (name == "ne" || name == "!=") return !Equals(v, arg0());
  if (name == "lt" || name == "lessthan" || name == "<") return Compare("<", v, arg0(), a.offset);
  if (name == "le" || name == "<=") return Compare("<=", v, arg0(), a.offset);
  if (name == "gt" || name == "greaterthan" || name == ">")
    return Compare(">", v, arg0(), a.offset);
  if (name == "ge" || name == ">=") return Compare(">=", v, arg0(), a.offset);
  if (name == "in") return Contains(arg0(), v, a.offset);
  if (name == "sameas") {
    const Value& o = arg0();
    if (v.container_id() || o.container_id()) return v.container_id() == o.container_id();
    return v.kind() == o.kind() && Equals(v, o);
  }
  Error(a.offset, "unknown test '" + name + "'");
}

}  // namespace airlock::tmpl::internal
