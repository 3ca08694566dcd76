// Expressions: names, attributes, subscripts, arithmetic and string operators, membership and
// comparisons, with the cycle checks that keep containers finite.
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

// True when `v` (transitively) contains the container `target`.
bool Interp::Reaches(const Value& v, const void* target, int depth, std::uint64_t& budget) {
  if (depth > 128 || budget == 0) return true;  // too deep to prove acyclic: refuse
  --budget;
  if (v.container_id() == nullptr) return false;
  if (v.container_id() == target) return true;
  if (v.is_list()) {
    for (const Value& x : v.items())
      if (x.container_id() && Reaches(x, target, depth + 1, budget)) return true;
  } else {
    for (const auto& e : v.entries())
      if (e.second.container_id() && Reaches(e.second, target, depth + 1, budget)) return true;
  }
  return false;
}

Value Interp::Eval(const Expr& e) {
  StackGuard guard(*this);
  Tick();
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.literal;
    case ExprKind::kPlaceholder:
      return placeholder_.empty() ? Value::Undefined() : placeholder_.back();
    case ExprKind::kName: {
      const Value* v = Lookup(e.name);
      if (v) return *v;
      Value g = Global(e.name);
      if (!g.is_undefined()) return g;
      return Value::Undefined(e.name);
    }
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      for (const auto& a : e.args) items.push_back(Eval(*a));
      return ListOf(std::move(items), e.offset);
    }
    case ExprKind::kDict: {
      Value d = Value::Dict();
      for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = Eval(*e.args[i]);
        if (!k.is_string()) Error(e.args[i]->offset, "dict keys must be strings");
        d.Set(k.str(), Eval(*e.args[i + 1]));
      }
      return d;
    }
    case ExprKind::kGetAttr:
      return GetAttr(Eval(*e.args[0]), e.name, e.offset);
    case ExprKind::kGetItem:
      return GetItem(Eval(*e.args[0]), Eval(*e.args[1]), e.offset);
    case ExprKind::kSlice: {
      Value obj = Eval(*e.args[0]);
      Value parts[3];
      for (int i = 0; i < 3; ++i)
        parts[i] = e.args[std::size_t(i) + 1] ? Eval(*e.args[std::size_t(i) + 1]) : Value::None();
      return Slice(obj, parts[0], parts[1], parts[2], e.offset);
    }
    case ExprKind::kCall:
      return EvalCall(e);
    case ExprKind::kFilter: {
      Value v = Eval(*e.args[0]);
      CallArgs a = EvalArgs(e);
      return ApplyFilter(e.name, v, a);
    }
    case ExprKind::kTest: {
      Value v = Eval(*e.args[0]);
      CallArgs a = EvalArgs(e);
      bool r = ApplyTest(e.name, v, a);
      return Value::Bool(e.negated ? !r : r);
    }
    case ExprKind::kUnary: {
      Value v = Eval(*e.args[0]);
      if (v.is_bool()) v = Value::Int(v.bool_value());
      if (!v.is_number())
        Error(e.offset, std::string("bad operand for unary ") + e.name + ": " + KindName(v));
      if (e.name == "+") return v;
      if (v.is_int()) {
        if (v.int_value() == INT64_MIN) Error(e.offset, "integer overflow");
        return Value::Int(-v.int_value());
      }
      return Value::Float(-v.float_value());
    }
    case ExprKind::kBinary:
      return Binary(e.name, Eval(*e.args[0]), Eval(*e.args[1]), e.offset);
    case ExprKind::kCompare:
      return Value::Bool(Compare(e.name, Eval(*e.args[0]), Eval(*e.args[1]), e.offset));
    case ExprKind::kAnd: {
      Value l = Eval(*e.args[0]);
      return Truthy(l) ? Eval(*e.args[1]) : l;
    }
    case ExprKind::kOr: {
      Value l = Eval(*e.args[0]);
      return Truthy(l) ? l : Eval(*e.args[1]);
    }
    case ExprKind::kNot:
      return Value::Bool(!Truthy(Eval(*e.args[0])));
    case ExprKind::kCond:
      if (Truthy(Eval(*e.args[1]))) return Eval(*e.args[0]);
      return e.args[2] ? Eval(*e.args[2]) : Value::Undefined();
  }
  return Value::Undefined();
}

Value Interp::GetAttr(const Value& obj, const std::string& name, std::size_t offset) {
  CheckName(name, offset);
  if (obj.is_undefined())
    Error(offset, "'" +
                      (obj.undefined_name().empty() ? std::string("value") : obj.undefined_name()) +
                      "' is undefined (reading attribute '" + name + "')");
  if (obj.is_dict()) {
    const Value* v = obj.Find(name);
    if (v) return *v;
  }
  return Value::Undefined(name);
}

Value Interp::GetItem(const Value& obj, const Value& key, std::size_t offset) {
  if (obj.is_undefined())
    Error(offset, "'" +
                      (obj.undefined_name().empty() ? std::string("value") : obj.undefined_name()) +
                      "' is undefined (subscripted)");
  if (key.is_string()) {
    const std::string& k = key.str();
    if (obj.is_dict()) {
      const Value* v = obj.Find(k);
      if (v && !(k.size() >= 2 && k[0] == '_' && k[1] == '_')) return *v;
      CheckName(k, offset);
      return Value::Undefined(k);
    }
    CheckName(k, offset);
    return Value::Undefined(k);
  }
  if (obj.is_list() || obj.is_string()) {
    if (!key.is_int() && !key.is_bool()) return Value::Undefined();
    std::int64_t i = AsIndex(key, offset);
    if (obj.is_list()) {
      std::int64_t n = std::int64_t(obj.items().size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined();
      return obj.items()[std::size_t(i)];
    }
    auto offs = internal::CodePointOffsets(obj.str());
    std::int64_t n = std::int64_t(offs.size()) - 1;
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::Undefined();
    return Value::String(
        internal::Substr(obj.string_data(), offs[std::size_t(i)], offs[std::size_t(i) + 1]));
  }
  return Value::Undefined();
}

Value Interp::Slice(const Value& obj, const Value& a, const Value& b, const Value& c,
                    std::size_t offset) {
  if (!obj.is_list() && !obj.is_string())
    Error(offset, std::string("cannot slice ") + KindName(obj));
  std::vector<std::size_t> offs;
  std::int64_t n;
  if (obj.is_string()) {
    offs = internal::CodePointOffsets(obj.str());
    n = std::int64_t(offs.size()) - 1;
  } else {
    n = std::int64_t(obj.items().size());
  }
  std::int64_t step = c.is_none() ? 1 : AsIndex(c, offset);
  if (step == 0) Error(offset, "slice step cannot be zero");
  auto norm = [&](const Value& v, std::int64_t def, bool is_start) {
    if (v.is_none()) return def;
    std::int64_t i = AsIndex(v, offset);
    if (i < 0) i += n;
    if (step > 0) return std::clamp<std::int64_t>(i, 0, n);
    (void)is_start;
    return std::clamp<std::int64_t>(i, -1, n - 1);
  };
  std::int64_t start = norm(a, step > 0 ? 0 : n - 1, true);
  std::int64_t stop = norm(b, step > 0 ? n : -1, false);
  std::vector<std::int64_t> idx;
  for (std::int64_t i = start; step > 0 ? i < stop : i > stop;) {
    idx.push_back(i);
    if (__builtin_add_overflow(i, step, &i)) break;
  }
  Tick(idx.size());
  if (obj.is_list()) {
    std::vector<Value> items;
    for (auto i : idx) items.push_back(obj.items()[std::size_t(i)]);
    return ListOf(std::move(items), offset);
  }
  StrBuilder sb;
  if (step == 1) {
    if (start < stop)
      sb.Append(obj.string_data(), offs[std::size_t(start)], offs[std::size_t(stop)]);
  } else {
    for (auto i : idx) sb.Append(obj.string_data(), offs[std::size_t(i)], offs[std::size_t(i) + 1]);
  }
  return Str(sb.Take(), offset);
}

Value Interp::Binary(const std::string& op, const Value& l, const Value& r, std::size_t offset) {
  if (op == "~") {
    StrBuilder b;
    b.Append(ToStr(l));
    b.Append(ToStr(r));
    return Str(b.Take(), offset);
  }
  if (l.is_undefined() || r.is_undefined())
    Error(offset, "'" + (l.is_undefined() ? l.undefined_name() : r.undefined_name()) +
                      "' is undefined (operand of " + op + ")");
  if (op == "+") {
    if (l.is_string() && r.is_string()) {
      ChargeBytes(l.str().size() + r.str().size(), offset);
      StrBuilder b;
      b.Append(l.string_data());
      b.Append(r.string_data());
      return Value::String(b.Take());
    }
    if (l.is_list() && r.is_list()) {
      std::vector<Value> items = l.items();
      items.insert(items.end(), r.items().begin(), r.items().end());
      return ListOf(std::move(items), offset);
    }
  }
  if (op == "*") {
    const Value* seq = l.is_string() || l.is_list()   ? &l
                       : r.is_string() || r.is_list() ? &r
                                                      : nullptr;
    const Value& count = seq == &l ? r : l;
    if (seq && (count.is_int() || count.is_bool())) {
      std::int64_t n = std::max<std::int64_t>(0, AsIndex(count, offset));
      std::size_t unit = seq->is_string() ? seq->str().size() : seq->items().size() * 16;
      if (unit == 0) n = 0;  // repeating nothing: skip the loop entirely
      if (unit && std::uint64_t(n) > limits_.max_string_bytes / unit)
        Throw(LimitExceeded("template: repetition too large at byte " + std::to_string(offset)));
      if (seq->is_string()) {
        StrBuilder b;
        for (std::int64_t i = 0; i < n; ++i) b.Append(seq->string_data());
        return Str(b.Take(), offset);
      }
      std::vector<Value> items;
      for (std::int64_t i = 0; i < n; ++i)
        items.insert(items.end(), seq->items().begin(), seq->items().end());
      return ListOf(std::move(items), offset);
    }
  }
  if (op == "%" && l.is_string()) return PercentFormat(l, r, offset);
  if (!Numeric(l) || !Numeric(r))
    Error(offset, std::string("unsupported operand types for ") + op + ": " + KindName(l) +
                      " and " + KindName(r));
  Value a = AsNum(l), b = AsNum(r);
  if (a.is_int() && b.is_int() && op != "/") {
    std::int64_t x = a.int_value(), y = b.int_value(), z = 0;
    if (op == "+") {
      if (__builtin_add_overflow(x, y, &z)) Error(offset, "integer overflow");
      return Value::Int(z);
    }
    if (op == "-") {
      if (__builtin_sub_overflow(x, y, &z)) Error(offset, "integer overflow");
      return Value::Int(z);
    }
    if (op == "*") {
      if (__builtin_mul_overflow(x, y, &z)) Error(offset, "integer overflow");
      return Value::Int(z);
    }
    if (op == "//" || op == "%") {
      if (y == 0) Error(offset, "integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) Error(offset, "integer overflow");
      std::int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        q -= 1;
        m += y;
      }
      return Value::Int(op == "//" ? q : m);
    }
    if (op == "**") {
      if (y < 0) return Value::Float(std::pow(double(x), double(y)));
      std::int64_t acc = 1;
      for (std::int64_t i = 0; i < y; ++i) {
        Tick();
        if (__builtin_mul_overflow(acc, x, &acc)) Error(offset, "integer overflow");
        if (acc == 0 || acc == 1) break;
        if (acc == -1) {
          acc = ((y - i - 1) % 2 == 0) ? -1 : 1;
          break;
        }
      }
      return Value::Int(acc);
    }
  }
  double x = a.float_value(), y = b.float_value();
  if (op == "+") return Value::Float(x + y);
  if (op == "-") return Value::Float(x - y);
  if (op == "*") return Value::Float(x * y);
  if (op == "/") {
    if (y == 0) Error(offset, "division by zero");
    return Value::Float(x / y);
  }
  if (op == "//") {
    if (y == 0) Error(offset, "division by zero");
    return Value::Float(std::floor(x / y));
  }
  if (op == "%") {
    if (y == 0) Error(offset, "modulo by zero");
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    return Value::Float(m);
  }
  if (op == "**") return Value::Float(std::pow(x, y));
  Error(offset, "unknown operator " + op);
}

bool Interp::Contains(const Value& container, const Value& item, std::size_t offset) {
  if (container.is_undefined()) return false;
  if (container.is_string()) {
    if (!item.is_string()) Error(offset, "'in <string>' requires a string on the left");
    Tick(container.str().size() / 16);
    return container.str().find(item.str()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const Value& x : container.items()) {
      Tick();
      if (Equals(x, item)) return true;
    }
    return false;
  }
  if (container.is_dict()) return item.is_string() && container.Find(item.str()) != nullptr;
  Error(offset, std::string("argument of type '") + KindName(container) + "' is not iterable");
}

bool Interp::Compare(const std::string& op, const Value& l, const Value& r, std::size_t offset) {
  if (op == "==") return Equals(l, r);
  if (op == "!=") return !Equals(l, r);
  if (op == "in") return Contains(r, l, offset);
  if (op == "not in") return !Contains(r, l, offset);
  int c;
  if (Numeric(l) && Numeric(r)) {
    Value a = AsNum(l), b = AsNum(r);
    if (a.is_int() && b.is_int())
      c = a.int_value() < b.int_value() ? -1 : a.int_value() > b.int_value();
    else
      c = a.float_value() < b.float_value() ? -1 : a.float_value() > b.float_value() ? 1 : 0;
  } else if (l.is_string() && r.is_string()) {
    c = l.str().compare(r.str());
  } else {
    Error(offset, "'" + op + "' not supported between " + KindName(l) + " and " + KindName(r));
  }
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

}  // namespace airlock::tmpl::internal
