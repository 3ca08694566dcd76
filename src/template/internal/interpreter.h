// Private to template/: the tree-walking interpreter behind Template::Render, split by concern:
//   interpreter.cc        Render/Parse entry points, budget, scopes, output
//   interp_statements.cc  statements (if, for, set, macro, call blocks...) and macro calls
//   interp_expressions.cc expressions: names, attributes, subscripts, operators, comparisons
//   interp_format.cc      Python's printf-style "fmt % args"
//   interp_methods.cc     str/list/dict methods and the string operations they share
//   interp_globals.cc     sandbox globals (range, namespace, raise_exception...) and tests
//   interp_filters.cc     the filters, one function each
// Runtime errors are thrown as RenderError inside these files and become a Status at the
// Render boundary; no exception leaves the module.
#pragma once

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
class Interp;
}  // namespace internal
struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  std::size_t offset = 0;
};

struct CallableData {
  std::string name;
  std::function<Value(internal::Interp&, CallArgs&)> builtin;  // set for built-in functions
  const internal::Stmt* macro = nullptr;  // set for macros and call-block callers
  int caller_frame = -1;                  // call-block caller: scope to render in
  Value caller;                           // macro invoked by a call block
};

namespace internal {

struct RenderError {
  Status status;
};

[[noreturn]] inline void Throw(Status s) { throw RenderError{std::move(s)}; }
[[noreturn]] inline void Error(std::size_t offset, const std::string& what) {
  Throw(InvalidArgument("template: error at byte " + std::to_string(offset) + ": " + what));
}
[[noreturn]] inline void Refuse(std::size_t offset, const std::string& what) {
  Throw(PermissionDenied("template: sandbox refused at byte " + std::to_string(offset) + ": " +
                         what));
}

inline bool IsWs(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

enum class Flow { kNormal, kBreak, kContinue };

const char* KindName(const Value& v);
// True when a string anywhere in `v` holds text from the render's input (input marks).
bool ContainsInput(const Value& v, int depth = 0);

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

  Rendered Run(const Value& variables);

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
  void Emit(const Value& v, std::size_t offset);

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

  Flow Exec(const Stmt& s);

  void Unpack(const std::vector<std::string>& targets, const Value& v, std::size_t offset) {
    if (!v.is_list() || v.items().size() != targets.size())
      Error(offset, "cannot unpack " + std::string(KindName(v)) + " into " +
                        std::to_string(targets.size()) + " names");
    for (std::size_t i = 0; i < targets.size(); ++i) Assign(targets[i], v.items()[i]);
  }

  std::vector<Value> Iterate(const Value& v, std::size_t offset);

  Flow ExecFor(const Stmt& s);

  // ---- cycle prevention ----
  // True when `v` (transitively) contains the container `target`.
  bool Reaches(const Value& v, const void* target, int depth, std::uint64_t& budget);
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

  Value Eval(const Expr& e);

  void CheckName(const std::string& name, std::size_t offset) {
    if (!name.empty() && name[0] == '_') Refuse(offset, "access to attribute '" + name + "'");
  }

  Value GetAttr(const Value& obj, const std::string& name, std::size_t offset);

  std::int64_t AsIndex(const Value& v, std::size_t offset) {
    if (v.is_int()) return v.int_value();
    if (v.is_bool()) return v.bool_value();
    Error(offset, std::string("indices must be integers, not ") + KindName(v));
  }

  Value GetItem(const Value& obj, const Value& key, std::size_t offset);

  Value Slice(const Value& obj, const Value& a, const Value& b, const Value& c, std::size_t offset);

  // Python's printf-style "fmt % args": conversions s r d i f F e E g G x X o c and %%, with
  // flags, width and precision; %(key)s reads a dict key (never an attribute).
  Value PercentFormat(const Value& fmt_v, const Value& args, std::size_t offset);

  StringData ToStr(const Value& v) {
    if (v.is_string()) return v.string_data();
    StringData d;
    d.text = ToPythonString(v);
    if (!d.text.empty() && ContainsInput(v)) d.input.push_back({0, d.text.size()});
    return d;
  }

  static bool Numeric(const Value& v) { return v.is_number() || v.is_bool(); }
  static Value AsNum(const Value& v) { return v.is_bool() ? Value::Int(v.bool_value()) : v; }

  Value Binary(const std::string& op, const Value& l, const Value& r, std::size_t offset);

  bool Contains(const Value& container, const Value& item, std::size_t offset);

  bool Compare(const std::string& op, const Value& l, const Value& r, std::size_t offset);

  // ---- calls ----
  Value EvalCall(const Expr& e);

  Value CallValue(const Value& fn, CallArgs& a, const std::string& what) {
    if (!fn.is_callable()) Error(a.offset, "'" + what + "' is not callable (" + KindName(fn) + ")");
    const CallableData& d = *fn.callable();
    if (d.builtin) return d.builtin(*this, a);
    if (d.caller_frame >= 0) return CallCaller(d, a);
    return CallMacro(fn, a, Value::Undefined("caller"));
  }

  Value CallMacro(const Value& fn, CallArgs& a, const Value& caller);

  Value CallCaller(const CallableData& d, CallArgs& a);

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
              std::size_t offset);

  Value Replace(const Value& v, const std::string& old, const Value& with, std::int64_t count,
                std::size_t offset);

  // ASCII case mapping (keeps byte lengths, so input marks stay valid). Title case follows
  // Jinja's title filter: a word starts after whitespace or one of - ( { [ <.
  // mode: 0 upper, 1 lower, 2 title, 3 capitalize.
  static StringData MapCase(const StringData& s, int mode);

  bool StartsEnds(const Value& s, const Value& affix, bool starts, std::size_t offset);

  static bool IsDictMethod(const std::string& n) {
    return n == "get" || n == "items" || n == "keys" || n == "values";
  }

  Value DictItems(const Value& d, std::size_t offset) {
    std::vector<Value> out;
    for (const auto& [k, v] : d.entries())
      out.push_back(Value::List({Value::String(k, d.dict_keys_are_input()), v}));
    return ListOf(std::move(out), offset);
  }

  Value CallMethod(const Value& obj, const std::string& name, CallArgs& a);

  // ---- globals ----
  Value Builtin(const char* name, std::function<Value(Interp&, CallArgs&)> fn) {
    auto d = std::make_shared<CallableData>();
    d->name = name;
    d->builtin = std::move(fn);
    return Value::Callable(std::move(d));
  }

  Value Global(const std::string& name);

  // ---- tests ----
  bool ApplyTest(const std::string& name, const Value& v, CallArgs& a);

  // ---- filters ----
  Value AttrPath(const Value& item, const std::string& path, std::size_t offset);

  std::vector<Value> AsSeq(const Value& v, const std::string& filter, std::size_t offset) {
    if (v.is_list() || v.is_dict() || v.is_string() || v.is_undefined()) return Iterate(v, offset);
    Error(offset, "filter '" + filter + "' needs a sequence, got " + KindName(v));
  }

  // Sort key comparison: numbers with numbers, strings with strings (optionally case-folded).
  int CompareForSort(const Value& x, const Value& y, bool case_sensitive, std::size_t offset);

  Value ApplyFilter(const std::string& name, const Value& v, CallArgs& a);
  // The filters ApplyFilter dispatches to (interp_filters.cc).
  Value FilterSafe(const std::string& name, const Value& v, CallArgs& a);
  Value FilterString(const std::string& name, const Value& v, CallArgs& a);
  Value FilterTrim(const std::string& name, const Value& v, CallArgs& a);
  Value FilterLength(const std::string& name, const Value& v, CallArgs& a);
  Value FilterUpper(const std::string& name, const Value& v, CallArgs& a);
  Value FilterReplace(const std::string& name, const Value& v, CallArgs& a);
  Value FilterJoin(const std::string& name, const Value& v, CallArgs& a);
  Value FilterDefault(const std::string& name, const Value& v, CallArgs& a);
  Value FilterFirst(const std::string& name, const Value& v, CallArgs& a);
  Value FilterList(const std::string& name, const Value& v, CallArgs& a);
  Value FilterTojson(const std::string& name, const Value& v, CallArgs& a);
  Value FilterInt(const std::string& name, const Value& v, CallArgs& a);
  Value FilterFloat(const std::string& name, const Value& v, CallArgs& a);
  Value FilterAbs(const std::string& name, const Value& v, CallArgs& a);
  Value FilterRound(const std::string& name, const Value& v, CallArgs& a);
  Value FilterItems(const std::string& name, const Value& v, CallArgs& a);
  Value FilterDictsort(const std::string& name, const Value& v, CallArgs& a);
  Value FilterMap(const std::string& name, const Value& v, CallArgs& a);
  Value FilterSelect(const std::string& name, const Value& v, CallArgs& a);
  Value FilterUnique(const std::string& name, const Value& v, CallArgs& a);
  Value FilterReverse(const std::string& name, const Value& v, CallArgs& a);
  Value FilterSort(const std::string& name, const Value& v, CallArgs& a);
  Value FilterEscape(const std::string& name, const Value& v, CallArgs& a);
  Value FilterIndent(const std::string& name, const Value& v, CallArgs& a);
  Value FilterWordcount(const std::string& name, const Value& v, CallArgs& a);
  Value FilterSum(const std::string& name, const Value& v, CallArgs& a);
  Value FilterMin(const std::string& name, const Value& v, CallArgs& a);
  Value FilterCenter(const std::string& name, const Value& v, CallArgs& a);
  Value FilterTruncate(const std::string& name, const Value& v, CallArgs& a);
  Value FilterBatch(const std::string& name, const Value& v, CallArgs& a);
  Value FilterFormat(const std::string& name, const Value& v, CallArgs& a);
  Value FilterAttr(const std::string& name, const Value& v, CallArgs& a);

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

}  // namespace internal
}  // namespace airlock::tmpl
