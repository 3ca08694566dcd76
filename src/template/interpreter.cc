// The sandboxed tree-walking interpreter behind Template::Render, with the filters, tests,
// methods and globals chat templates use. Runtime errors are thrown internally as RenderError and
// turned into a Status at the Render boundary; nothing escapes this file as an exception.
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

class Interp;
struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  std::size_t offset = 0;
};

struct CallableData {
  std::string name;
  std::function<Value(Interp&, CallArgs&)> builtin;  // set for built-in functions
  const internal::Stmt* macro = nullptr;             // set for macros and call-block callers
  int caller_frame = -1;                             // call-block caller: scope to render in
  Value caller;                                      // macro invoked by a call block
};

namespace {

using internal::Expr;
using internal::ExprKind;
using internal::Stmt;
using internal::StmtKind;
using internal::StrBuilder;

struct RenderError {
  Status status;
};

[[noreturn]] void Throw(Status s) { throw RenderError{std::move(s)}; }
[[noreturn]] void Error(std::size_t offset, const std::string& what) {
  Throw(InvalidArgument("template: error at byte " + std::to_string(offset) + ": " + what));
}
[[noreturn]] void Refuse(std::size_t offset, const std::string& what) {
  Throw(PermissionDenied("template: sandbox refused at byte " + std::to_string(offset) + ": " +
                         what));
}

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

bool ContainsInput(const Value& v, int depth = 0) {
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

bool IsWs(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

enum class Flow { kNormal, kBreak, kContinue };

}  // namespace

class Interp {
 public:
  Interp(const internal::Program& program, const RenderOptions& options)
      : program_(program), limits_(options.limits), now_(options.now_unix_seconds) {}

  // Evaluates one expression with no variables (the sandbox's globals only): the scanner folds
  // constant expressions ('...'|replace(...), '%c' % (...), [...]|join) this way.
  Value EvalClosed(const Expr& e) {
    frames_.push_back({{}, -1});
    cur_ = 0;
    // Special-token variables stand for themselves: text glued to them is still constant.
    frames_[0].vars["bos_token"] = Value::String("<s>");
    frames_[0].vars["eos_token"] = Value::String("</s>");
    out_.emplace_back();
    return Eval(e);
  }

  Rendered Run(const Value& variables) {
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

  // ---- budget ----
  void Tick(std::uint64_t n = 1) {
    steps_ += n;
    if (steps_ > limits_.max_steps)
      Throw(LimitExceeded("template: step limit of " + std::to_string(limits_.max_steps) +
                          " exceeded"));
  }
  void ChargeBytes(std::size_t n, std::size_t offset) {
    if (n > limits_.max_string_bytes)
      Throw(LimitExceeded("template: value larger than " +
                          std::to_string(limits_.max_string_bytes) + " bytes at byte " +
                          std::to_string(offset)));
    Tick(n / 16);
  }
  Value Str(StringData d, std::size_t offset) {
    ChargeBytes(d.text.size(), offset);
    return Value::String(std::move(d));
  }
  Value Str(std::string s, std::size_t offset) {
    ChargeBytes(s.size(), offset);
    return Value::String(std::move(s));
  }
  Value ListOf(std::vector<Value> items, std::size_t offset) {
    ChargeBytes(items.size() * 16, offset);
    return Value::List(std::move(items));
  }

  // ---- scopes ----
  struct Frame {
    std::unordered_map<std::string, Value> vars;
    int parent;
  };

  const Value* Lookup(const std::string& name) const {
    // Every frame's parent chain ends at the root frame 0.
    for (int f = cur_; f >= 0; f = frames_[std::size_t(f)].parent) {
      auto it = frames_[std::size_t(f)].vars.find(name);
      if (it != frames_[std::size_t(f)].vars.end()) return &it->second;
    }
    return nullptr;
  }
  void Assign(const std::string& name, Value v) {
    frames_[std::size_t(cur_)].vars[name] = std::move(v);
  }

  struct FrameGuard {
    FrameGuard(Interp& in, int parent) : in(in), saved(in.cur_) {
      in.frames_.push_back({{}, parent});
      in.cur_ = int(in.frames_.size()) - 1;
    }
    ~FrameGuard() {
      in.frames_.pop_back();
      in.cur_ = saved;
    }
    Interp& in;
    int saved;
  };

  // ---- output ----
  void Emit(const Value& v, std::size_t offset) {
    StrBuilder& b = out_.back();
    if (v.is_string()) {
      b.Append(v.string_data());
    } else if (!v.is_undefined()) {
      b.AppendText(ToPythonString(v), ContainsInput(v));
    }
    std::size_t cap = out_.size() == 1 ? limits_.max_output_bytes : limits_.max_string_bytes;
    if (b.size() > cap)
      Throw(LimitExceeded("template: output larger than " + std::to_string(cap) +
                          " bytes at byte " + std::to_string(offset)));
    Tick(v.is_string() ? v.str().size() / 16 : 1);
  }

  StringData Capture(const internal::Body& body) {
    out_.emplace_back();
    Flow f = ExecBody(body);
    (void)f;
    StringData d = out_.back().Take();
    out_.pop_back();
    return d;
  }

  // ---- statements ----
  Flow ExecBody(const internal::Body& body) {
    for (const auto& s : body) {
      Flow f = Exec(*s);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  // Bounds the C++ stack: statements and expressions nested through macro calls.
  struct StackGuard {
    explicit StackGuard(Interp& in) : in(in) {
      if (++in.stack_depth_ > kMaxStackDepth)
        Throw(LimitExceeded("template: evaluation nested deeper than " +
                            std::to_string(kMaxStackDepth)));
    }
    ~StackGuard() { --in.stack_depth_; }
    Interp& in;
  };
  static constexpr int kMaxStackDepth = 1500;

  Flow Exec(const Stmt& s) {
    StackGuard guard(*this);
    Tick();
    switch (s.kind) {
      case StmtKind::kText: {
        StrBuilder& b = out_.back();
        b.AppendText(s.text);
        std::size_t cap = out_.size() == 1 ? limits_.max_output_bytes : limits_.max_string_bytes;
        if (b.size() > cap)
          Throw(LimitExceeded("template: output larger than " + std::to_string(cap) + " bytes"));
        Tick(s.text.size() / 16);
        return Flow::kNormal;
      }
      case StmtKind::kOutput:
        Emit(Eval(*s.expr), s.offset);
        return Flow::kNormal;
      case StmtKind::kIf:
        for (const auto& [cond, body] : s.branches)
          if (Truthy(Eval(*cond))) return ExecBody(body);
        return ExecBody(s.else_body);
      case StmtKind::kFor:
        return ExecFor(s);
      case StmtKind::kSet: {
        Value v = Eval(*s.expr);
        if (!s.attr.empty()) {
          const Value* ns = Lookup(s.targets[0]);
          if (!ns || !ns->is_namespace())
            Error(s.offset, "cannot assign attribute '" + s.attr + "' on a non-namespace object");
          if (s.attr[0] == '_') Refuse(s.offset, "assignment to attribute '" + s.attr + "'");
          CheckNoCycle(v, *ns, s.offset);
          Value copy = *ns;
          copy.Set(s.attr, std::move(v));
        } else if (s.targets.size() == 1) {
          Assign(s.targets[0], std::move(v));
        } else {
          Unpack(s.targets, v, s.offset);
        }
        return Flow::kNormal;
      }
      case StmtKind::kSetBlock: {
        Value v = Str(Capture(s.body), s.offset);
        if (s.expr) v = EvalWithPlaceholder(*s.expr, v);
        Assign(s.targets[0], std::move(v));
        return Flow::kNormal;
      }
      case StmtKind::kMacro: {
        auto fn = std::make_shared<CallableData>();
        fn->name = s.name;
        fn->macro = &s;
        Assign(s.name, Value::Callable(std::move(fn)));
        return Flow::kNormal;
      }
      case StmtKind::kCallBlock: {
        auto caller = std::make_shared<CallableData>();
        caller->name = "caller";
        caller->macro = &s;
        caller->caller_frame = cur_;
        const Expr& call = *s.expr;
        Value callee = Eval(*call.args[0]);
        if (!callee.is_callable() || !callee.callable()->macro)
          Error(s.offset, "call block target is not a macro");
        CallArgs args = EvalArgs(call);
        Emit(CallMacro(callee, args, Value::Callable(std::move(caller))), s.offset);
        return Flow::kNormal;
      }
      case StmtKind::kFilterBlock: {
        Value body = Str(Capture(s.body), s.offset);
        Emit(EvalWithPlaceholder(*s.expr, body), s.offset);
        return Flow::kNormal;
      }
      case StmtKind::kBreak:
        if (loop_depth_ == 0) Error(s.offset, "'break' outside a loop");
        return Flow::kBreak;
      case StmtKind::kContinue:
        if (loop_depth_ == 0) Error(s.offset, "'continue' outside a loop");
        return Flow::kContinue;
      case StmtKind::kDo:
        Eval(*s.expr);
        return Flow::kNormal;
      case StmtKind::kScope:
        return ExecBody(s.body);
    }
    return Flow::kNormal;
  }

  void Unpack(const std::vector<std::string>& targets, const Value& v, std::size_t offset) {
    if (!v.is_list() || v.items().size() != targets.size())
      Error(offset, "cannot unpack " + std::string(KindName(v)) + " into " +
                        std::to_string(targets.size()) + " names");
    for (std::size_t i = 0; i < targets.size(); ++i) Assign(targets[i], v.items()[i]);
  }

  std::vector<Value> Iterate(const Value& v, std::size_t offset) {
    switch (v.kind()) {
      case Value::Kind::kUndefined:
        return {};
      case Value::Kind::kList:
        return v.items();
      case Value::Kind::kDict: {
        std::vector<Value> keys;
        for (const auto& e : v.entries())
          keys.push_back(Value::String(e.first, v.dict_keys_are_input()));
        return keys;
      }
      case Value::Kind::kString: {
        std::vector<Value> chars;
        auto offs = internal::CodePointOffsets(v.str());
        ChargeBytes(offs.size() * 16, offset);  // one value per character
        for (std::size_t i = 0; i + 1 < offs.size(); ++i)
          chars.push_back(Value::String(internal::Substr(v.string_data(), offs[i], offs[i + 1])));
        return chars;
      }
      default:
        Error(offset, std::string("'") + KindName(v) + "' object is not iterable");
    }
  }

  Flow ExecFor(const Stmt& s) {
    Value seq = Eval(*s.expr);
    std::vector<Value> items = Iterate(seq, s.offset);
    Tick(items.size());
    FrameGuard frame(*this, cur_);
    if (s.cond) {
      std::vector<Value> kept;
      for (Value& item : items) {
        Tick();
        if (s.targets.size() == 1)
          Assign(s.targets[0], item);
        else
          Unpack(s.targets, item, s.offset);
        if (Truthy(Eval(*s.cond))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      frames_[std::size_t(cur_)].vars.clear();
      return ExecBody(s.else_body);
    }
    ++loop_depth_;
    std::int64_t n = std::int64_t(items.size());
    // One loop object advanced in place, like Jinja's LoopContext.
    auto index = std::make_shared<std::int64_t>(0);
    auto cycle = std::make_shared<CallableData>();
    cycle->name = "cycle";
    cycle->builtin = [index](Interp&, CallArgs& a) -> Value {
      if (a.args.empty()) Error(a.offset, "loop.cycle() needs at least one argument");
      return a.args[std::size_t(*index) % a.args.size()];
    };
    Value loop = Value::Dict();
    loop.Set("length", Value::Int(n));
    loop.Set("depth", Value::Int(1));
    loop.Set("depth0", Value::Int(0));
    loop.Set("cycle", Value::Callable(std::move(cycle)));
    for (std::int64_t i = 0; i < n; ++i) {
      Tick();
      *index = i;
      loop.Set("index", Value::Int(i + 1));
      loop.Set("index0", Value::Int(i));
      loop.Set("revindex", Value::Int(n - i));
      loop.Set("revindex0", Value::Int(n - i - 1));
      loop.Set("first", Value::Bool(i == 0));
      loop.Set("last", Value::Bool(i == n - 1));
      loop.Set("previtem", i > 0 ? items[std::size_t(i - 1)] : Value::Undefined("previtem"));
      loop.Set("nextitem", i + 1 < n ? items[std::size_t(i + 1)] : Value::Undefined("nextitem"));
      Assign("loop", loop);
      if (s.targets.size() == 1)
        Assign(s.targets[0], items[std::size_t(i)]);
      else
        Unpack(s.targets, items[std::size_t(i)], s.offset);
      Flow f = ExecBody(s.body);
      if (f == Flow::kBreak) break;
    }
    --loop_depth_;
    return Flow::kNormal;
  }

  // ---- cycle prevention ----
  // True when `v` (transitively) contains the container `target`.
  bool Reaches(const Value& v, const void* target, int depth, std::uint64_t& budget) {
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
  void CheckNoCycle(const Value& v, const Value& container, std::size_t offset) {
    if (!v.container_id()) return;
    std::uint64_t budget = 100'000;
    bool r = Reaches(v, container.container_id(), 0, budget);
    Tick(100'000 - budget);
    if (r) Refuse(offset, "storing a container inside itself (or nesting deeper than 128)");
  }

  // ---- expressions ----
  Value EvalWithPlaceholder(const Expr& chain, const Value& v) {
    placeholder_.push_back(v);
    Value r = Eval(chain);
    placeholder_.pop_back();
    return r;
  }

  CallArgs EvalArgs(const Expr& e, std::size_t first = 1) {
    CallArgs a;
    a.offset = e.offset;
    for (std::size_t i = first; i < e.args.size(); ++i) a.args.push_back(Eval(*e.args[i]));
    for (const auto& [k, v] : e.kwargs) a.kwargs.emplace_back(k, Eval(*v));
    return a;
  }

  Value Eval(const Expr& e) {
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

  void CheckName(const std::string& name, std::size_t offset) {
    if (!name.empty() && name[0] == '_') Refuse(offset, "access to attribute '" + name + "'");
  }

  Value GetAttr(const Value& obj, const std::string& name, std::size_t offset) {
    CheckName(name, offset);
    if (obj.is_undefined())
      Error(offset,
            "'" + (obj.undefined_name().empty() ? std::string("value") : obj.undefined_name()) +
                "' is undefined (reading attribute '" + name + "')");
    if (obj.is_dict()) {
      const Value* v = obj.Find(name);
      if (v) return *v;
    }
    return Value::Undefined(name);
  }

  std::int64_t AsIndex(const Value& v, std::size_t offset) {
    if (v.is_int()) return v.int_value();
    if (v.is_bool()) return v.bool_value();
    Error(offset, std::string("indices must be integers, not ") + KindName(v));
  }

  Value GetItem(const Value& obj, const Value& key, std::size_t offset) {
    if (obj.is_undefined())
      Error(offset,
            "'" + (obj.undefined_name().empty() ? std::string("value") : obj.undefined_name()) +
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

  Value Slice(const Value& obj, const Value& a, const Value& b, const Value& c,
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
      for (auto i : idx)
        sb.Append(obj.string_data(), offs[std::size_t(i)], offs[std::size_t(i) + 1]);
    }
    return Str(sb.Take(), offset);
  }

  // Python's printf-style "fmt % args": conversions s r d i f F e E g G x X o c and %%, with
  // flags, width and precision; %(key)s reads a dict key (never an attribute).
  Value PercentFormat(const Value& fmt_v, const Value& args, std::size_t offset) {
    const StringData& fmt = fmt_v.string_data();
    const std::string& f = fmt.text;
    std::vector<Value> positional;
    if (args.is_list())
      positional = args.items();
    else if (!args.is_dict())
      positional.push_back(args);
    std::size_t next = 0;
    StrBuilder b;
    std::size_t lit = 0;
    for (std::size_t i = 0; i < f.size(); ++i) {
      if (f[i] != '%') continue;
      b.Append(fmt, lit, i);
      std::size_t j = i + 1;
      if (j < f.size() && f[j] == '%') {
        b.AppendText("%");
        lit = i = j;
        ++lit;
        continue;
      }
      Value arg;
      bool have = false;
      if (j < f.size() && f[j] == '(') {
        std::size_t close = f.find(')', j);
        if (close == std::string::npos) Error(offset, "incomplete format key");
        std::string key = f.substr(j + 1, close - j - 1);
        if (!args.is_dict()) Error(offset, "format requires a mapping");
        CheckName(key, offset);
        const Value* v = args.Find(key);
        if (!v) Error(offset, "format key '" + key + "' not found");
        arg = *v;
        have = true;
        j = close + 1;
      }
      std::string spec = "%";
      while (j < f.size() && std::strchr("-+ #0", f[j])) spec.push_back(f[j++]);
      int digits = 0;
      while (j < f.size() && std::isdigit(static_cast<unsigned char>(f[j])) && digits < 3)
        spec.push_back(f[j++]), ++digits;
      if (j < f.size() && f[j] == '.') {
        spec.push_back(f[j++]);
        digits = 0;
        while (j < f.size() && std::isdigit(static_cast<unsigned char>(f[j])) && digits < 3)
          spec.push_back(f[j++]), ++digits;
      }
      if (j >= f.size()) Error(offset, "incomplete format");
      char conv = f[j];
      if (!have) {
        if (next >= positional.size()) Error(offset, "not enough arguments for format string");
        arg = positional[next++];
      }
      char buf[512];
      switch (conv) {
        case 's':
        case 'r': {
          StringData text = conv == 's' ? ToStr(arg) : StringData{ToPythonRepr(arg), {}};
          if (conv == 'r' && ContainsInput(arg)) text.input.push_back({0, text.text.size()});
          if (spec == "%") {
            b.Append(text);
          } else {
            std::snprintf(buf, sizeof buf, (spec + "s").c_str(), text.text.substr(0, 256).c_str());
            b.AppendText(buf, !text.input.empty());
          }
          break;
        }
        case 'd':
        case 'i':
        case 'x':
        case 'X':
        case 'o':
        case 'c': {
          if (!Numeric(arg)) Error(offset, std::string("%") + conv + " format needs a number");
          Value n = AsNum(arg);
          long long x = n.is_int() ? n.int_value()
                        : std::isfinite(n.float_value()) && std::fabs(n.float_value()) < 9.2e18
                            ? (long long)n.float_value()
                            : 0;
          char c = conv == 'i' ? 'd' : conv;
          std::snprintf(buf, sizeof buf, (spec + (c == 'c' ? "c" : std::string("ll") + c)).c_str(),
                        c == 'c' ? int(x & 0x7f) : x);
          b.AppendText(buf);
          break;
        }
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G': {
          if (!Numeric(arg)) Error(offset, std::string("%") + conv + " format needs a number");
          std::snprintf(buf, sizeof buf, (spec + conv).c_str(), AsNum(arg).float_value());
          b.AppendText(buf);
          break;
        }
        default:
          Error(offset, std::string("unsupported format character '") + conv + "'");
      }
      ChargeBytes(b.size(), offset);
      i = j;
      lit = j + 1;
    }
    b.Append(fmt, lit, f.size());
    if (!args.is_dict() && next < positional.size())
      Error(offset, "not all arguments converted during string formatting");
    return Str(b.Take(), offset);
  }

  StringData ToStr(const Value& v) {
    if (v.is_string()) return v.string_data();
    StringData d;
    d.text = ToPythonString(v);
    if (!d.text.empty() && ContainsInput(v)) d.input.push_back({0, d.text.size()});
    return d;
  }

  static bool Numeric(const Value& v) { return v.is_number() || v.is_bool(); }
  static Value AsNum(const Value& v) { return v.is_bool() ? Value::Int(v.bool_value()) : v; }

  Value Binary(const std::string& op, const Value& l, const Value& r, std::size_t offset) {
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

  bool Contains(const Value& container, const Value& item, std::size_t offset) {
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

  bool Compare(const std::string& op, const Value& l, const Value& r, std::size_t offset) {
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

  // ---- calls ----
  Value EvalCall(const Expr& e) {
    const Expr& callee = *e.args[0];
    if (callee.kind == ExprKind::kGetAttr) {
      Value obj = Eval(*callee.args[0]);
      CheckName(callee.name, callee.offset);
      if (obj.is_string() || obj.is_list() || (obj.is_dict() && IsDictMethod(callee.name))) {
        CallArgs a = EvalArgs(e);
        return CallMethod(obj, callee.name, a);
      }
      Value fn = GetAttr(obj, callee.name, callee.offset);
      CallArgs a = EvalArgs(e);
      return CallValue(fn, a, callee.name);
    }
    Value fn = Eval(callee);
    CallArgs a = EvalArgs(e);
    return CallValue(fn, a, callee.kind == ExprKind::kName ? callee.name : "expression");
  }

  Value CallValue(const Value& fn, CallArgs& a, const std::string& what) {
    if (!fn.is_callable()) Error(a.offset, "'" + what + "' is not callable (" + KindName(fn) + ")");
    const CallableData& d = *fn.callable();
    if (d.builtin) return d.builtin(*this, a);
    if (d.caller_frame >= 0) return CallCaller(d, a);
    return CallMacro(fn, a, Value::Undefined("caller"));
  }

  Value CallMacro(const Value& fn, CallArgs& a, const Value& caller) {
    const Stmt& m = *fn.callable()->macro;
    if (++call_depth_ > limits_.max_call_depth)
      Throw(LimitExceeded("template: macro calls nested deeper than " +
                          std::to_string(limits_.max_call_depth)));
    if (a.args.size() > m.targets.size())
      Error(a.offset,
            "macro '" + m.name + "' takes " + std::to_string(m.targets.size()) + " arguments");
    StringData out;
    {
      FrameGuard frame(*this, 0);
      for (std::size_t i = 0; i < m.targets.size(); ++i) {
        Value v;
        bool set = false;
        if (i < a.args.size()) {
          v = a.args[i];
          set = true;
        }
        for (auto& [k, kv] : a.kwargs)
          if (k == m.targets[i]) {
            v = kv;
            set = true;
          }
        if (!set) v = m.defaults[i] ? Eval(*m.defaults[i]) : Value::Undefined(m.targets[i]);
        Assign(m.targets[i], v);
      }
      for (auto& [k, kv] : a.kwargs)
        if (std::find(m.targets.begin(), m.targets.end(), k) == m.targets.end())
          Error(a.offset, "macro '" + m.name + "' has no argument '" + k + "'");
      if (!caller.is_undefined()) Assign("caller", caller);
      int saved_loops = loop_depth_;
      loop_depth_ = 0;
      out = Capture(m.body);
      loop_depth_ = saved_loops;
    }
    --call_depth_;
    return Str(std::move(out), a.offset);
  }

  Value CallCaller(const CallableData& d, CallArgs& a) {
    const Stmt& s = *d.macro;
    if (++call_depth_ > limits_.max_call_depth)
      Throw(LimitExceeded("template: macro calls nested deeper than " +
                          std::to_string(limits_.max_call_depth)));
    StringData out;
    {
      FrameGuard frame(*this, d.caller_frame);
      for (std::size_t i = 0; i < s.targets.size(); ++i) {
        Value v = i < a.args.size() ? a.args[i]
                  : s.defaults[i]   ? Eval(*s.defaults[i])
                                    : Value::Undefined(s.targets[i]);
        Assign(s.targets[i], v);
      }
      out = Capture(s.body);
    }
    --call_depth_;
    return Str(std::move(out), a.offset);
  }

  // ---- argument helpers ----
  static const Value* Arg(CallArgs& a, std::size_t pos, const char* name) {
    for (auto& [k, v] : a.kwargs)
      if (k == name) return &v;
    return pos < a.args.size() ? &a.args[pos] : nullptr;
  }
  static void MaxArgs(CallArgs& a, std::size_t n, const std::string& fn) {
    if (a.args.size() > n)
      Error(a.offset, fn + "() takes at most " + std::to_string(n) + " positional arguments");
  }
  std::string StrArg(CallArgs& a, std::size_t pos, const char* name, const std::string& fn,
                     const char* def = nullptr) {
    const Value* v = Arg(a, pos, name);
    if (!v || v->is_none()) {
      if (def) return def;
      Error(a.offset, fn + "() missing argument '" + name + "'");
    }
    if (!v->is_string()) Error(a.offset, fn + "() argument '" + name + "' must be a string");
    return v->str();
  }
  std::int64_t IntArg(CallArgs& a, std::size_t pos, const char* name, std::int64_t def) {
    const Value* v = Arg(a, pos, name);
    if (!v || v->is_none()) return def;
    return AsIndex(*v, a.offset);
  }
  bool BoolArg(CallArgs& a, std::size_t pos, const char* name, bool def) {
    const Value* v = Arg(a, pos, name);
    return v ? Truthy(*v) : def;
  }

  // ---- string operations (keep input marks) ----
  StringData Strip(const StringData& s, const std::string* chars, bool left, bool right) {
    auto strip_char = [&](char c) { return chars ? chars->find(c) != std::string::npos : IsWs(c); };
    std::size_t b = 0, e = s.text.size();
    if (left)
      while (b < e && strip_char(s.text[b])) ++b;
    if (right)
      while (e > b && strip_char(s.text[e - 1])) --e;
    return internal::Substr(s, b, e);
  }

  Value Split(const Value& v, const Value* sep_v, std::int64_t maxsplit, bool from_right,
              std::size_t offset) {
    const StringData& s = v.string_data();
    const std::string& t = s.text;
    std::vector<std::pair<std::size_t, std::size_t>> parts;
    if (!sep_v || sep_v->is_none()) {
      // Whitespace split: runs of whitespace separate, no empty parts.
      if (!from_right) {
        std::size_t i = 0;
        std::int64_t splits = 0;
        while (true) {
          while (i < t.size() && IsWs(t[i])) ++i;
          if (i >= t.size()) break;
          if (maxsplit >= 0 && splits >= maxsplit) {
            std::size_t e = t.size();
            while (e > i && IsWs(t[e - 1])) --e;
            parts.emplace_back(i, e);
            break;
          }
          std::size_t j = i;
          while (j < t.size() && !IsWs(t[j])) ++j;
          parts.emplace_back(i, j);
          ++splits;
          i = j;
        }
      } else {
        std::size_t i = t.size();
        std::int64_t splits = 0;
        while (true) {
          while (i > 0 && IsWs(t[i - 1])) --i;
          if (i == 0) break;
          if (maxsplit >= 0 && splits >= maxsplit) {
            std::size_t b = 0;
            while (b < i && IsWs(t[b])) ++b;
            parts.emplace_back(b, i);
            break;
          }
          std::size_t j = i;
          while (j > 0 && !IsWs(t[j - 1])) --j;
          parts.emplace_back(j, i);
          ++splits;
          i = j;
        }
        std::reverse(parts.begin(), parts.end());
      }
    } else {
      if (!sep_v->is_string()) Error(offset, "split() separator must be a string");
      const std::string& sep = sep_v->str();
      if (sep.empty()) Error(offset, "empty separator");
      if (!from_right) {
        std::size_t i = 0;
        std::int64_t splits = 0;
        while (true) {
          std::size_t f =
              (maxsplit >= 0 && splits >= maxsplit) ? std::string::npos : t.find(sep, i);
          if (f == std::string::npos) {
            parts.emplace_back(i, t.size());
            break;
          }
          parts.emplace_back(i, f);
          ++splits;
          i = f + sep.size();
          Tick();
        }
      } else {
        std::size_t end = t.size();
        std::int64_t splits = 0;
        while (true) {
          std::size_t f = (maxsplit >= 0 && splits >= maxsplit) || end < sep.size()
                              ? std::string::npos
                              : t.rfind(sep, end - sep.size());
          if (f == std::string::npos) {
            parts.emplace_back(0, end);
            break;
          }
          parts.emplace_back(f + sep.size(), end);
          ++splits;
          end = f;
          Tick();
        }
        std::reverse(parts.begin(), parts.end());
      }
    }
    ChargeBytes(parts.size() * 16, offset);
    std::vector<Value> out;
    for (auto [b, e] : parts) out.push_back(Value::String(internal::Substr(s, b, e)));
    ChargeBytes(t.size(), offset);
    return ListOf(std::move(out), offset);
  }

  Value Replace(const Value& v, const std::string& old, const Value& with, std::int64_t count,
                std::size_t offset) {
    const StringData& s = v.string_data();
    StrBuilder b;
    std::size_t i = 0;
    std::int64_t n = 0;
    if (old.empty()) {
      // Python inserts `with` between every character (and at both ends).
      auto offs = internal::CodePointOffsets(s.text);
      for (std::size_t k = 0; k + 1 < offs.size(); ++k) {
        if (count < 0 || n < count) {
          b.Append(with.string_data());
          ++n;
        }
        b.Append(s, offs[k], offs[k + 1]);
        ChargeBytes(b.size(), offset);
      }
      if (count < 0 || n < count) b.Append(with.string_data());
      return Str(b.Take(), offset);
    }
    while (count < 0 || n < count) {
      std::size_t f = s.text.find(old, i);
      if (f == std::string::npos) break;
      b.Append(s, i, f);
      b.Append(with.string_data());
      i = f + old.size();
      ++n;
      ChargeBytes(b.size(), offset);
    }
    b.Append(s, i, s.text.size());
    return Str(b.Take(), offset);
  }

  // ASCII case mapping (keeps byte lengths, so input marks stay valid). Title case follows
  // Jinja's title filter: a word starts after whitespace or one of - ( { [ <.
  static StringData MapCase(const StringData& s,
                            int mode) {  // 0 upper 1 lower 2 title 3 capitalize
    StringData d = s;
    bool word_start = true;
    for (std::size_t i = 0; i < d.text.size(); ++i) {
      char& c = d.text[i];
      bool upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z';
      bool make_upper = mode == 0 || (mode == 2 && word_start) || (mode == 3 && i == 0);
      if (make_upper && lower)
        c = char(c - 32);
      else if (!make_upper && mode != 0 && upper)
        c = char(c + 32);
      word_start = IsWs(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    }
    return d;
  }

  bool StartsEnds(const Value& s, const Value& affix, bool starts, std::size_t offset) {
    if (affix.is_list()) {  // a tuple of strings (one level, like Python)
      for (const Value& x : affix.items()) {
        if (!x.is_string()) Error(offset, "startswith/endswith tuple must hold strings");
        if (StartsEnds(s, x, starts, offset)) return true;
      }
      return false;
    }
    if (!affix.is_string()) Error(offset, "startswith/endswith argument must be a string or tuple");
    const std::string& t = s.str();
    const std::string& a = affix.str();
    if (a.size() > t.size()) return false;
    return starts ? t.compare(0, a.size(), a) == 0
                  : t.compare(t.size() - a.size(), a.size(), a) == 0;
  }

  static bool IsDictMethod(const std::string& n) {
    return n == "get" || n == "items" || n == "keys" || n == "values";
  }

  Value DictItems(const Value& d, std::size_t offset) {
    std::vector<Value> out;
    for (const auto& [k, v] : d.entries())
      out.push_back(Value::List({Value::String(k, d.dict_keys_are_input()), v}));
    return ListOf(std::move(out), offset);
  }

  Value CallMethod(const Value& obj, const std::string& name, CallArgs& a) {
    std::size_t off = a.offset;
    if (obj.is_string()) {
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        const Value* c = Arg(a, 0, "chars");
        std::string chars = c && c->is_string() ? c->str() : "";
        bool have = c && c->is_string();
        return Str(
            Strip(obj.string_data(), have ? &chars : nullptr, name != "rstrip", name != "lstrip"),
            off);
      }
      if (name == "split" || name == "rsplit")
        return Split(obj, Arg(a, 0, "sep"), IntArg(a, 1, "maxsplit", -1), name == "rsplit", off);
      if (name == "startswith" || name == "endswith") {
        const Value* p = Arg(a, 0, "prefix");
        if (!p) Error(off, name + "() needs an argument");
        return Value::Bool(StartsEnds(obj, *p, name == "startswith", off));
      }
      if (name == "replace") {
        std::string old = StrArg(a, 0, "old", name);
        const Value* w = Arg(a, 1, "new");
        if (!w || !w->is_string()) Error(off, "replace() needs two strings");
        return Replace(obj, old, *w, IntArg(a, 2, "count", -1), off);
      }
      if (name == "upper") return Value::String(MapCase(obj.string_data(), 0));
      if (name == "lower") return Value::String(MapCase(obj.string_data(), 1));
      if (name == "title") return Value::String(MapCase(obj.string_data(), 2));
      if (name == "capitalize") return Value::String(MapCase(obj.string_data(), 3));
      if (name == "find" || name == "rfind" || name == "index" || name == "count") {
        std::string sub = StrArg(a, 0, "sub", name);
        const std::string& t = obj.str();
        if (name == "count") {
          if (sub.empty()) return Value::Int(std::int64_t(internal::CodePointCount(t)) + 1);
          std::int64_t n = 0;
          for (std::size_t i = t.find(sub); i != std::string::npos; i = t.find(sub, i + sub.size()))
            ++n;
          return Value::Int(n);
        }
        std::size_t f = name == "rfind" ? t.rfind(sub) : t.find(sub);
        if (f == std::string::npos) {
          if (name == "index") Error(off, "substring not found");
          return Value::Int(-1);
        }
        return Value::Int(std::int64_t(internal::CodePointCount(std::string_view(t).substr(0, f))));
      }
      if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" ||
          name == "islower" || name == "isupper") {
        const std::string& t = obj.str();
        if (t.empty()) return Value::Bool(false);
        bool ok = true, cased = false;
        for (unsigned char c : t) {
          if (name == "isdigit")
            ok &= std::isdigit(c) != 0;
          else if (name == "isalpha")
            ok &= std::isalpha(c) != 0;
          else if (name == "isalnum")
            ok &= std::isalnum(c) != 0;
          else if (name == "isspace")
            ok &= std::isspace(c) != 0;
          else if (name == "islower") {
            ok &= !std::isupper(c);
            cased |= std::islower(c) != 0;
          } else {
            ok &= !std::islower(c);
            cased |= std::isupper(c) != 0;
          }
        }
        if (name == "islower" || name == "isupper") ok &= cased;
        return Value::Bool(ok);
      }
      if (name == "join") {
        const Value* items = Arg(a, 0, "iterable");
        if (!items) Error(off, "join() needs an argument");
        CallArgs fa;
        fa.offset = off;
        fa.args.push_back(obj);
        return ApplyFilter("join", *items, fa);
      }
      if (name == "format" || name == "format_map")
        Refuse(off, "str." + name + "() is not available in the sandbox");
      Error(off, "unknown string method '" + name + "'");
    }
    if (obj.is_list()) {
      if (name == "append") {
        if (a.args.size() != 1) Error(off, "append() takes exactly one argument");
        CheckNoCycle(a.args[0], obj, off);
        if (obj.items().size() >= limits_.max_string_bytes / 16)
          Throw(LimitExceeded("template: list too long"));
        Value target = obj;
        target.Append(a.args[0]);
        Tick();
        return Value::None();
      }
      if (name == "pop") {
        Value target = obj;
        auto* items = target.mutable_items();
        if (items->empty()) Error(off, "pop from empty list");
        std::int64_t i = IntArg(a, 0, "index", -1);
        std::int64_t n = std::int64_t(items->size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) Error(off, "pop index out of range");
        Value v = (*items)[std::size_t(i)];
        items->erase(items->begin() + i);
        return v;
      }
      if (name == "index" || name == "count") {
        const Value* x = Arg(a, 0, "value");
        if (!x) Error(off, name + "() needs an argument");
        std::int64_t n = 0;
        for (std::size_t i = 0; i < obj.items().size(); ++i) {
          Tick();
          if (Equals(obj.items()[i], *x)) {
            if (name == "index") return Value::Int(std::int64_t(i));
            ++n;
          }
        }
        if (name == "index") Error(off, "value not in list");
        return Value::Int(n);
      }
      Error(off, "unknown list method '" + name + "'");
    }
    if (obj.is_dict()) {
      if (name == "get") {
        std::string k = StrArg(a, 0, "key", name);
        CheckName(k.substr(0, 2) == "__" ? k : std::string(), off);
        const Value* v = obj.Find(k);
        if (v) return *v;
        const Value* d = Arg(a, 1, "default");
        return d ? *d : Value::None();
      }
      if (name == "items") return DictItems(obj, off);
      if (name == "keys" || name == "values") {
        std::vector<Value> out;
        for (const auto& [k, v] : obj.entries())
          out.push_back(name == "keys" ? Value::String(k, obj.dict_keys_are_input()) : v);
        return ListOf(std::move(out), off);
      }
    }
    Error(off, std::string("'") + KindName(obj) + "' has no method '" + name + "'");
  }

  // ---- globals ----
  Value Builtin(const char* name, std::function<Value(Interp&, CallArgs&)> fn) {
    auto d = std::make_shared<CallableData>();
    d->name = name;
    d->builtin = std::move(fn);
    return Value::Callable(std::move(d));
  }

  Value Global(const std::string& name) {
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
          if (out.size() >= 1'000'000)
            Throw(LimitExceeded("template: range() longer than 1000000"));
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
        Throw(InvalidArgument("template: raise_exception at byte " + std::to_string(a.offset) +
                              ": " + msg));
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

  // ---- tests ----
  bool ApplyTest(const std::string& name, const Value& v, CallArgs& a) {
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
      if (d == 0 || !v.is_int())
        Error(a.offset, "divisibleby needs integers and a non-zero divisor");
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

  // ---- filters ----
  Value AttrPath(const Value& item, const std::string& path, std::size_t offset) {
    Value cur = item;
    std::size_t i = 0;
    while (true) {
      std::size_t dot = path.find('.', i);
      std::string part = path.substr(i, dot == std::string::npos ? std::string::npos : dot - i);
      CheckName(part, offset);
      bool numeric = !part.empty() && std::all_of(part.begin(), part.end(),
                                                  [](char c) { return c >= '0' && c <= '9'; });
      if (numeric && part.size() < 10 && cur.is_list())
        cur = GetItem(cur, Value::Int(std::stoll(part)), offset);
      else if (cur.is_dict()) {
        const Value* v = cur.Find(part);
        cur = v ? *v : Value::Undefined(part);
      } else {
        cur = Value::Undefined(part);
      }
      if (dot == std::string::npos) return cur;
      i = dot + 1;
    }
  }

  std::vector<Value> AsSeq(const Value& v, const std::string& filter, std::size_t offset) {
    if (v.is_list() || v.is_dict() || v.is_string() || v.is_undefined()) return Iterate(v, offset);
    Error(offset, "filter '" + filter + "' needs a sequence, got " + KindName(v));
  }

  // Sort key comparison: numbers with numbers, strings with strings (optionally case-folded).
  int CompareForSort(const Value& x, const Value& y, bool case_sensitive, std::size_t offset) {
    if (Numeric(x) && Numeric(y)) {
      Value a = AsNum(x), b = AsNum(y);
      double p = a.float_value(), q = b.float_value();
      if (a.is_int() && b.is_int())
        return a.int_value() < b.int_value() ? -1 : a.int_value() > b.int_value();
      return p < q ? -1 : p > q ? 1 : 0;
    }
    if (x.is_string() && y.is_string()) {
      if (case_sensitive) return x.str().compare(y.str());
      return MapCase(x.string_data(), 1).text.compare(MapCase(y.string_data(), 1).text);
    }
    Error(offset,
          std::string("cannot compare ") + KindName(x) + " with " + KindName(y) + " for sorting");
  }

  Value ApplyFilter(const std::string& name, const Value& v, CallArgs& a) {
    std::size_t off = a.offset;
    if (name == "safe" || (name == "string" && v.is_string())) return v;
    if (name == "string") return Str(ToStr(v), off);
    if (name == "trim" || name == "strip") {
      const Value* c = Arg(a, 0, "chars");
      std::string chars = c && c->is_string() ? c->str() : "";
      return Str(Strip(ToStr(v), c && c->is_string() ? &chars : nullptr, true, true), off);
    }
    if (name == "length" || name == "count") {
      if (v.is_string()) return Value::Int(std::int64_t(internal::CodePointCount(v.str())));
      if (v.is_list()) return Value::Int(std::int64_t(v.items().size()));
      if (v.is_dict()) return Value::Int(std::int64_t(v.entries().size()));
      if (v.is_undefined()) return Value::Int(0);
      Error(off, std::string("object of type '") + KindName(v) + "' has no len()");
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      int mode = name == "upper" ? 0 : name == "lower" ? 1 : name == "title" ? 2 : 3;
      return Value::String(MapCase(ToStr(v), mode));
    }
    if (name == "replace") {
      std::string old = StrArg(a, 0, "old", name);
      const Value* w = Arg(a, 1, "new");
      if (!w) Error(off, "replace() needs two arguments");
      Value with = w->is_string() ? *w : Value::String(ToStr(*w));
      return Replace(Value::String(ToStr(v)), old, with, IntArg(a, 2, "count", -1), off);
    }
    if (name == "join") {
      const Value* sep_v = Arg(a, 0, "d");
      StringData sep = sep_v ? ToStr(*sep_v) : StringData{};
      const Value* attr = Arg(a, 1, "attribute");
      StrBuilder b;
      bool first = true;
      for (const Value& item : AsSeq(v, name, off)) {
        if (!first) b.Append(sep);
        first = false;
        b.Append(ToStr(attr ? AttrPath(item, ToPythonString(*attr), off) : item));
        ChargeBytes(b.size(), off);
      }
      return Str(b.Take(), off);
    }
    if (name == "default" || name == "d") {
      const Value* def = Arg(a, 0, "default_value");
      bool boolean = BoolArg(a, 1, "boolean", false);
      if (v.is_undefined() || (boolean && !Truthy(v))) return def ? *def : Value::String("");
      return v;
    }
    if (name == "first" || name == "last") {
      std::vector<Value> seq = AsSeq(v, name, off);
      if (seq.empty()) return Value::Undefined(name);
      return name == "first" ? seq.front() : seq.back();
    }
    if (name == "list") return ListOf(AsSeq(v, name, off), off);
    if (name == "tojson") {
      const Value* ind = Arg(a, 0, "indent");
      int indent = -1;
      if (ind && !ind->is_none()) {
        std::int64_t i = AsIndex(*ind, off);
        indent = int(std::clamp<std::int64_t>(i, 0, 64));
      }
      JsonOptions jo;
      jo.indent = indent;
      jo.sort_keys = BoolArg(a, 99, "sort_keys", false);
      jo.ensure_ascii = BoolArg(a, 99, "ensure_ascii", false);
      jo.max_bytes = limits_.max_string_bytes;
      if (const Value* sep = Arg(a, 99, "separators"); sep && !sep->is_none()) {
        if (!sep->is_list() || sep->items().size() != 2 || !sep->items()[0].is_string() ||
            !sep->items()[1].is_string())
          Error(off, "tojson separators must be a pair of strings");
        jo.item_separator = sep->items()[0].str();
        jo.key_separator = sep->items()[1].str();
        if (jo.item_separator.size() + jo.key_separator.size() > 64)
          Error(off, "tojson separators too long");
        if (jo.item_separator.empty()) jo.item_separator = ",";
      }
      auto json = ToJson(v, jo);
      if (!json)
        Throw(Status(json.error().code(),
                     json.error().message() + " (at byte " + std::to_string(off) + ")"));
      Tick(json->size() / 16);
      return Value::String(std::move(*json), ContainsInput(v));
    }
    if (name == "int") {
      std::int64_t def = IntArg(a, 0, "default", 0);
      if (v.is_int()) return v;
      if (v.is_bool()) return Value::Int(v.bool_value());
      if (v.is_float()) {
        double f = v.float_value();
        if (!std::isfinite(f) || std::fabs(f) >= 9.2e18) return Value::Int(def);
        return Value::Int(std::int64_t(f));
      }
      if (v.is_string()) {
        std::string t = Strip(v.string_data(), nullptr, true, true).text;
        char* end = nullptr;
        errno = 0;
        long long x = std::strtoll(t.c_str(), &end, 10);
        if (!t.empty() && end && *end == 0 && errno == 0) return Value::Int(x);
        double f = std::strtod(t.c_str(), &end);
        if (!t.empty() && end && *end == 0 && std::isfinite(f) && std::fabs(f) < 9.2e18)
          return Value::Int(std::int64_t(f));
      }
      return Value::Int(def);
    }
    if (name == "float") {
      const Value* d = Arg(a, 0, "default");
      Value def = d ? *d : Value::Float(0.0);
      if (v.is_float()) return v;
      if (v.is_int() || v.is_bool()) return Value::Float(AsNum(v).float_value());
      if (v.is_string()) {
        std::string t = Strip(v.string_data(), nullptr, true, true).text;
        char* end = nullptr;
        double f = std::strtod(t.c_str(), &end);
        if (!t.empty() && end && *end == 0) return Value::Float(f);
      }
      return def;
    }
    if (name == "abs") {
      if (v.is_int()) {
        if (v.int_value() == INT64_MIN) Error(off, "integer overflow");
        return Value::Int(std::llabs(v.int_value()));
      }
      if (v.is_float()) return Value::Float(std::fabs(v.float_value()));
      if (v.is_bool()) return Value::Int(v.bool_value());
      Error(off, "abs() needs a number");
    }
    if (name == "round") {
      if (!Numeric(v)) Error(off, "round needs a number");
      std::int64_t prec = std::clamp<std::int64_t>(IntArg(a, 0, "precision", 0), -20, 20);
      std::string method = StrArg(a, 1, "method", name, "common");
      double x = AsNum(v).float_value(), p = std::pow(10.0, double(prec)), r;
      if (method == "common")
        r = std::round(x * p) / p;
      else if (method == "floor")
        r = std::floor(x * p) / p;
      else if (method == "ceil")
        r = std::ceil(x * p) / p;
      else
        Error(off, "round method must be common, ceil or floor");
      return Value::Float(r);
    }
    if (name == "items") {
      if (v.is_undefined()) return Value::List();
      if (!v.is_dict()) Error(off, "items needs a mapping");
      return DictItems(v, off);
    }
    if (name == "dictsort") {
      if (!v.is_dict()) Error(off, "dictsort needs a mapping");
      bool cs = BoolArg(a, 0, "case_sensitive", false);
      std::string by = StrArg(a, 1, "by", name, "key");
      bool rev = BoolArg(a, 2, "reverse", false);
      std::vector<Value> items = DictItems(v, off).items();
      std::size_t k = by == "value" ? 1 : 0;
      for (std::size_t i = 1; i < items.size(); ++i)
        CompareForSort(items[0].items()[k], items[i].items()[k], cs, off);
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        int c = CompareForSort(x.items()[k], y.items()[k], cs, off);
        return rev ? c > 0 : c < 0;
      });
      return ListOf(std::move(items), off);
    }
    if (name == "map") {
      std::vector<Value> seq = AsSeq(v, name, off);
      std::vector<Value> out;
      const Value* attr = Arg(a, 99, "attribute");
      if (attr) {
        const Value* def = Arg(a, 99, "default");
        std::string path = ToPythonString(*attr);
        for (const Value& item : seq) {
          Tick();
          Value r = AttrPath(item, path, off);
          out.push_back(r.is_undefined() && def ? *def : r);
        }
        return ListOf(std::move(out), off);
      }
      if (a.args.empty() || !a.args[0].is_string())
        Error(off, "map() needs a filter name or attribute=");
      std::string filter = a.args[0].str();
      CallArgs rest;
      rest.offset = off;
      rest.args.assign(a.args.begin() + 1, a.args.end());
      for (auto& kw : a.kwargs) rest.kwargs.push_back(kw);
      for (const Value& item : seq) {
        Tick();
        CallArgs copy = rest;
        out.push_back(ApplyFilter(filter, item, copy));
      }
      return ListOf(std::move(out), off);
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      bool by_attr = name == "selectattr" || name == "rejectattr";
      bool keep_if = name == "select" || name == "selectattr";
      std::vector<Value> seq = AsSeq(v, name, off);
      std::size_t first = 0;
      std::string attr;
      if (by_attr) {
        if (a.args.empty() || !a.args[0].is_string())
          Error(off, name + "() needs an attribute name");
        attr = a.args[0].str();
        first = 1;
      }
      std::string test;
      if (a.args.size() > first) {
        if (!a.args[first].is_string()) Error(off, name + "() test name must be a string");
        test = a.args[first].str();
      }
      CallArgs targs;
      targs.offset = off;
      if (a.args.size() > first + 1)
        targs.args.assign(a.args.begin() + long(first) + 1, a.args.end());
      std::vector<Value> out;
      for (const Value& item : seq) {
        Tick();
        Value subject = by_attr ? AttrPath(item, attr, off) : item;
        CallArgs copy = targs;
        bool r = test.empty() ? Truthy(subject) : ApplyTest(test, subject, copy);
        if (r == keep_if) out.push_back(item);
      }
      return ListOf(std::move(out), off);
    }
    if (name == "unique") {
      bool cs = BoolArg(a, 0, "case_sensitive", false);
      const Value* attr = Arg(a, 1, "attribute");
      std::vector<Value> out, keys;
      for (const Value& item : AsSeq(v, name, off)) {
        Value key = attr ? AttrPath(item, ToPythonString(*attr), off) : item;
        if (!cs && key.is_string()) key = Value::String(MapCase(key.string_data(), 1));
        bool seen = false;
        for (const Value& k : keys) {
          Tick();
          if (Equals(k, key)) {
            seen = true;
            break;
          }
        }
        if (!seen) {
          keys.push_back(key);
          out.push_back(item);
        }
      }
      return ListOf(std::move(out), off);
    }
    if (name == "reverse") {
      if (v.is_string()) {
        auto offs = internal::CodePointOffsets(v.str());
        StrBuilder b;
        for (std::size_t i = offs.size() - 1; i > 0; --i)
          b.Append(v.string_data(), offs[i - 1], offs[i]);
        return Str(b.Take(), off);
      }
      std::vector<Value> seq = AsSeq(v, name, off);
      std::reverse(seq.begin(), seq.end());
      return ListOf(std::move(seq), off);
    }
    if (name == "sort") {
      bool rev = BoolArg(a, 0, "reverse", false);
      bool cs = BoolArg(a, 1, "case_sensitive", false);
      const Value* attr = Arg(a, 2, "attribute");
      std::vector<Value> seq = AsSeq(v, name, off);
      std::vector<Value> keys;
      for (const Value& item : seq)
        keys.push_back(attr ? AttrPath(item, ToPythonString(*attr), off) : item);
      for (std::size_t i = 1; i < keys.size(); ++i) CompareForSort(keys[0], keys[i], cs, off);
      std::vector<std::size_t> order(seq.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      Tick(seq.size() * 8);
      std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
        int c = CompareForSort(keys[x], keys[y], cs, off);
        return rev ? c > 0 : c < 0;
      });
      std::vector<Value> out;
      for (std::size_t i : order) out.push_back(seq[i]);
      return ListOf(std::move(out), off);
    }
    if (name == "escape" || name == "e" || name == "forceescape") {
      StringData s = ToStr(v);
      std::string out = core::HtmlEscape(s.text);
      ChargeBytes(out.size(), off);
      return Value::String(std::move(out), !s.input.empty());
    }
    if (name == "indent") {
      const Value* w = Arg(a, 0, "width");
      StringData pad;
      if (!w)
        pad.text = "    ";
      else if (w->is_string())
        pad = w->string_data();
      else
        pad.text =
            std::string(std::size_t(std::clamp<std::int64_t>(AsIndex(*w, off), 0, 256)), ' ');
      bool first = BoolArg(a, 1, "first", false);
      bool blank = BoolArg(a, 2, "blank", false);
      StringData s = ToStr(v);
      StrBuilder b;
      std::size_t i = 0;
      bool is_first = true;
      while (i <= s.text.size()) {
        std::size_t nl = s.text.find('\n', i);
        std::size_t e = nl == std::string::npos ? s.text.size() : nl;
        bool empty_line = e == i;
        if ((!is_first || first) && (blank || !empty_line)) b.Append(pad);
        b.Append(s, i, nl == std::string::npos ? e : e + 1);
        ChargeBytes(b.size(), off);
        is_first = false;
        if (nl == std::string::npos) break;
        i = nl + 1;
      }
      return Str(b.Take(), off);
    }
    if (name == "wordcount") {
      std::int64_t n = 0;
      bool in_word = false;
      for (unsigned char c : ToStr(v).text) {
        bool w = std::isalnum(c) || c == '_' || c >= 0x80;
        if (w && !in_word) ++n;
        in_word = w;
      }
      return Value::Int(n);
    }
    if (name == "sum") {
      const Value* attr = Arg(a, 0, "attribute");
      Value acc = Arg(a, 1, "start") ? *Arg(a, 1, "start") : Value::Int(0);
      for (const Value& item : AsSeq(v, name, off)) {
        Tick();
        acc = Binary("+", acc, attr ? AttrPath(item, ToPythonString(*attr), off) : item, off);
      }
      return acc;
    }
    if (name == "min" || name == "max") {
      bool cs = BoolArg(a, 0, "case_sensitive", false);
      const Value* attr = Arg(a, 1, "attribute");
      std::vector<Value> seq = AsSeq(v, name, off);
      if (seq.empty()) return Value::Undefined(name);
      std::size_t best = 0;
      for (std::size_t i = 1; i < seq.size(); ++i) {
        Value x = attr ? AttrPath(seq[i], ToPythonString(*attr), off) : seq[i];
        Value y = attr ? AttrPath(seq[best], ToPythonString(*attr), off) : seq[best];
        int c = CompareForSort(x, y, cs, off);
        if (name == "min" ? c < 0 : c > 0) best = i;
      }
      return seq[best];
    }
    if (name == "center") {
      std::int64_t width = std::clamp<std::int64_t>(IntArg(a, 0, "width", 80), 0, 4096);
      StringData s = ToStr(v);
      std::int64_t len = std::int64_t(internal::CodePointCount(s.text));
      if (len >= width) return Value::String(s);
      std::int64_t total = width - len, left = total / 2 + (total & width & 1);
      StrBuilder b;
      b.AppendText(std::string(std::size_t(left), ' '));
      b.Append(s);
      b.AppendText(std::string(std::size_t(total - left), ' '));
      return Str(b.Take(), off);
    }
    if (name == "truncate") {
      std::int64_t length = std::max<std::int64_t>(0, IntArg(a, 0, "length", 255));
      StringData s = ToStr(v);
      auto offs = internal::CodePointOffsets(s.text);
      if (std::int64_t(offs.size()) - 1 <= length) return Value::String(s);
      std::string end = StrArg(a, 2, "end", name, "...");
      std::int64_t keep = std::max<std::int64_t>(0, length - std::int64_t(end.size()));
      StrBuilder b;
      b.Append(s, 0, offs[std::size_t(keep)]);
      b.AppendText(end);
      return Str(b.Take(), off);
    }
    if (name == "batch" || name == "slice") Error(off, "filter '" + name + "' is not supported");
    if (name == "format") {
      if (!a.kwargs.empty()) {
        Value d = Value::Dict();
        for (auto& [k, x] : a.kwargs) d.Set(k, x);
        return PercentFormat(Value::String(ToStr(v)), d, off);
      }
      return PercentFormat(Value::String(ToStr(v)), Value::List(a.args), off);
    }
    if (name == "attr") Refuse(off, "filter '" + name + "' is not available in the sandbox");
    Error(off, "unknown filter '" + name + "'");
  }

 private:
  const internal::Program& program_;
  Limits limits_;
  std::optional<std::int64_t> now_;
  std::vector<Frame> frames_;
  int cur_ = 0;
  std::vector<StrBuilder> out_;
  std::vector<Value> placeholder_;
  std::uint64_t steps_ = 0;
  int call_depth_ = 0;
  int loop_depth_ = 0;
  int stack_depth_ = 0;
};

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
    Interp interp(*program_, options);
    return interp.Run(variables);
  } catch (const RenderError& e) {
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
    Interp interp(program, options);
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
