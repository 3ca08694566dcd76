#include "template/internal/key_values.h"

#include <algorithm>
#include <optional>

namespace airlock::tmpl::internal {
namespace {

constexpr std::size_t kMaxStrings = 64;       // exact values kept per expression
constexpr std::size_t kMaxStringBytes = 256;  // longer exact values become "other"
constexpr std::size_t kExactPasses = 8;       // then growing values are widened
constexpr std::size_t kMaxPasses = 32;        // fixed-point iterations
constexpr std::size_t kMaxWork = 20'000'000;  // bytes of strings built or copied, all passes

bool HasUnderscore(const std::set<std::string>& strings) {
  for (const auto& s : strings)
    if (s.find('_') != std::string::npos) return true;
  return false;
}

// Code points of a UTF-8 string, each as its bytes (invalid bytes stand alone).
std::vector<std::string> CodePoints(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = 1;
    while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80 && n < 4) ++n;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

AbstractValue Unknown() { return {{}, true, true, false}; }
// A Python object (function, macro, global) whose str() may contain '_'.
AbstractValue Object() { return {{}, false, true, false}; }
AbstractValue Runtime() { return {{}, true, false, true}; }
AbstractValue Exact(std::string s) {
  AbstractValue v;
  v.strings.insert(std::move(s));
  return v;
}

// A string computed from `inputs` that keeps none of their values exactly (a substring, a join,
// a format): it may contain any character they contain. Substrings of runtime data may hold '_'
// too (a key such as tool_calls), so deriving from it counts as underscore material.
AbstractValue Derive(std::initializer_list<const AbstractValue*> inputs) {
  AbstractValue r;
  r.other = true;
  for (const AbstractValue* in : inputs) {
    r.underscore |= in->underscore || in->runtime || HasUnderscore(in->strings);
    r.runtime |= in->runtime;
  }
  return r;
}

// The value as text (`~`, |string): a non-string's str() has no '_' of its own unless it is an
// object (underscore set); a container's str() ("['ab__x']") is a new string holding its items'
// characters, whose slices are not slices of the items.
AbstractValue ToText(const AbstractValue& v) {
  AbstractValue r = v;
  if (r.strings.empty() || r.underscore) r.other = true;
  if (r.container) {
    r.other = true;
    r.underscore |= HasUnderscore(r.strings);
  }
  return r;
}

std::optional<long long> IntLiteral(const Expr* e) {
  if (!e) return std::nullopt;
  if (e->kind == ExprKind::kLiteral && e->literal.is_int()) return e->literal.int_value();
  if (e->kind == ExprKind::kUnary && e->name == "-" && e->args[0]->kind == ExprKind::kLiteral &&
      e->args[0]->literal.is_int())
    return -e->args[0]->literal.int_value();
  return std::nullopt;
}

// Python's s[start:stop:step] over code points.
std::string PySlice(const std::string& s, std::optional<long long> start,
                    std::optional<long long> stop, long long step) {
  std::vector<std::string> cps = CodePoints(s);
  long long n = static_cast<long long>(cps.size());
  auto clamp = [&](std::optional<long long> v, long long dflt, long long lo, long long hi) {
    if (!v) return dflt;
    long long x = *v < 0 ? *v + n : *v;
    return std::clamp(x, lo, hi);
  };
  std::string out;
  if (step > 0) {
    long long b = clamp(start, 0, 0, n), e = clamp(stop, n, 0, n);
    for (long long i = b; i < e; i += step) out += cps[i];
  } else {
    long long b = clamp(start, n - 1, -1, n - 1), e = clamp(stop, -1, -1, n - 1);
    if (stop && *stop < 0 && *stop + n < 0) e = -1;
    for (long long i = b; i > e; i += step) out += cps[i];
  }
  return out;
}

std::string AsciiMap(std::string s, int (*fn)(int)) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x80)
      c = static_cast<char>(fn(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  std::size_t b = s.find_first_not_of(" \t\n\r\f\v");
  if (b == std::string::npos) return "";
  std::size_t e = s.find_last_not_of(" \t\n\r\f\v");
  return s.substr(b, e - b + 1);
}

std::string Title(std::string s, bool only_first) {
  bool start = true;
  for (char& c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalpha(u)) {
      c = static_cast<char>(start ? std::toupper(u) : std::tolower(u));
      start = false;
    } else if (!only_first) {
      start = u >= 0x80 ? start : true;
    }
  }
  return s;
}

}  // namespace

void AbstractValue::Join(const AbstractValue& o) {
  strings.insert(o.strings.begin(), o.strings.end());
  other |= o.other;
  underscore |= o.underscore;
  runtime |= o.runtime;
}

bool AbstractValue::MayBeUnderscoreName() const {
  for (const auto& s : strings)
    if (!s.empty() && s[0] == '_') return true;
  return UnknownComputedString();
}

KeyValueAnalysis::KeyValueAnalysis(const Program& program,
                                   const std::set<std::string>& runtime_names)
    : runtime_names_(runtime_names) {
  std::size_t pass = 0;
  do {
    changed_ = false;
    widen_ = pass >= kExactPasses;
    WalkBody(program.body);
  } while (changed_ && ++pass < kMaxPasses && !exhausted_);
  if (changed_) exhausted_ = true;  // did not settle: fail closed
}

bool KeyValueAnalysis::Spend(std::size_t work) {
  work_ += work;
  if (work_ > kMaxWork) exhausted_ = true;
  return !exhausted_;
}

void KeyValueAnalysis::Normalize(AbstractValue& v) {
  std::size_t bytes = 1;
  for (const auto& s : v.strings) bytes += s.size() + 16;  // + a set node
  Spend(bytes);  // values are copied about as often as they are normalized
  for (auto it = v.strings.begin(); it != v.strings.end();) {
    if (it->size() > kMaxStringBytes || v.strings.size() > kMaxStrings) {
      v.other = true;
      v.underscore |= it->find('_') != std::string::npos;
      it = v.strings.erase(it);
    } else {
      ++it;
    }
  }
}

void KeyValueAnalysis::Assign(const std::string& name, const AbstractValue& v) {
  Update(vars_[name], v);
}

void KeyValueAnalysis::Update(AbstractValue& slot, const AbstractValue& v) {
  AbstractValue before = slot;
  slot.Join(v);
  Normalize(slot);
  if (slot == before) return;
  if (widen_) {
    // Still growing after several passes (s = s ~ 'x' in a loop, a recursive macro): keep only
    // which characters it may hold, so the iteration settles.
    AbstractValue d = Derive({&slot});
    slot = d;
    if (slot == before) return;
  }
  changed_ = true;
}

bool KeyValueAnalysis::IsAssignedVariable(const std::string& name) const {
  return vars_.count(name) > 0 && !macros_.count(name) && !runtime_names_.count(name);
}

AbstractValue KeyValueAnalysis::WalkBody(const Body& body) {
  // The output of a body: text and {{ }} pieces in sequence are concatenated exactly; anything
  // with control flow only says which characters may appear.
  bool exact = true;
  std::vector<AbstractValue> pieces;
  for (const auto& s : body) {
    AbstractValue out = WalkStmt(*s, exact);
    if (s->kind == StmtKind::kText || s->kind == StmtKind::kOutput ||
        s->kind == StmtKind::kCallBlock || s->kind == StmtKind::kFilterBlock ||
        s->kind == StmtKind::kIf || s->kind == StmtKind::kFor || s->kind == StmtKind::kScope)
      pieces.push_back(std::move(out));
  }
  AbstractValue result = Exact("");
  if (exact) {
    for (const AbstractValue& p : pieces) {
      AbstractValue next;
      if (result.other || p.other || result.strings.size() * p.strings.size() > kMaxStrings) {
        next = Derive({&result, &p});
      } else {
        for (const auto& a : result.strings)
          for (const auto& b : p.strings) {
            if (!Spend(a.size() + b.size())) return Unknown();
            next.strings.insert(a + b);
          }
        next.runtime = result.runtime || p.runtime;
      }
      Normalize(next);
      result = std::move(next);
    }
  } else {
    result = AbstractValue{};
    for (const AbstractValue& p : pieces) {
      AbstractValue d = Derive({&p});
      result.Join(d);
    }
    result.other = true;
  }
  return result;
}

AbstractValue KeyValueAnalysis::WalkStmt(const Stmt& s, bool& exact) {
  switch (s.kind) {
    case StmtKind::kText:
      return Exact(s.text);
    case StmtKind::kOutput:
      return ToText(Eval(*s.expr));
    case StmtKind::kSet: {
      AbstractValue v = Eval(*s.expr);
      // `set ns.attr = v` and `set a, b = pair` both put v (flattened) in each named variable.
      for (const auto& t : s.targets) Assign(t, v);
      return {};
    }
    case StmtKind::kSetBlock: {
      AbstractValue body = WalkBody(s.body);
      AbstractValue v = body;
      if (s.expr) {
        placeholder_ = &body;
        v = Eval(*s.expr);
        placeholder_ = nullptr;
      }
      for (const auto& t : s.targets) Assign(t, v);
      return {};
    }
    case StmtKind::kFor: {
      AbstractValue items = Eval(*s.expr);
      for (const auto& str : std::set<std::string>(items.strings))  // a string's characters
        for (auto& cp : CodePoints(str)) items.strings.insert(cp);
      Normalize(items);
      for (const auto& t : s.targets) Assign(t, items);
      Update(loop_items_, items);
      if (s.cond) Eval(*s.cond);
      exact = false;
      AbstractValue out = WalkBody(s.body);
      out.Join(WalkBody(s.else_body));
      return out;
    }
    case StmtKind::kIf: {
      exact = false;
      AbstractValue out;
      for (const auto& [cond, body] : s.branches) {
        Eval(*cond);
        out.Join(WalkBody(body));
      }
      out.Join(WalkBody(s.else_body));
      return out;
    }
    case StmtKind::kMacro: {
      if (std::find(macros_[s.name].begin(), macros_[s.name].end(), &s) == macros_[s.name].end()) {
        macros_[s.name].push_back(&s);
        changed_ = true;
      }
      for (std::size_t i = 0; i < s.targets.size(); ++i)
        if (i < s.defaults.size() && s.defaults[i])
          Assign(s.targets[i], Eval(*s.defaults[i]));
        else
          Assign(s.targets[i], {});  // a parameter is a variable even without a default
      AbstractValue out = WalkBody(s.body);
      Update(macro_output_[s.name], out);
      return {};
    }
    case StmtKind::kCallBlock: {
      AbstractValue out = Eval(*s.expr);
      for (const auto& t : s.targets) Assign(t, caller_args_);
      AbstractValue body = WalkBody(s.body);
      Update(caller_output_, body);
      return out;
    }
    case StmtKind::kFilterBlock: {
      AbstractValue body = WalkBody(s.body);
      placeholder_ = &body;
      AbstractValue out = Eval(*s.expr);
      placeholder_ = nullptr;
      return out;
    }
    case StmtKind::kDo:
      if (s.expr) Eval(*s.expr);
      return {};
    case StmtKind::kScope:
      exact = false;
      return WalkBody(s.body);
    case StmtKind::kBreak:
    case StmtKind::kContinue:
      exact = false;
      return {};
  }
  return {};
}

AbstractValue KeyValueAnalysis::Name(const std::string& name) {
  AbstractValue v;
  auto it = vars_.find(name);
  if (it != vars_.end()) v.Join(it->second);
  if (macros_.count(name) || name == "range" || name == "dict" || name == "namespace" ||
      name == "raise_exception" || name == "strftime_now" || name == "loop" || name == "caller")
    v.Join(Object());
  else if (runtime_names_.count(name) || it == vars_.end())
    v.Join(Runtime());  // the conversation, or a variable only the caller can provide
  return v;
}

AbstractValue KeyValueAnalysis::Eval(const Expr& e) {
  if (exhausted_) return Unknown();
  AbstractValue r;
  switch (e.kind) {
    case ExprKind::kLiteral:
      if (e.literal.is_string()) r = Exact(e.literal.str());
      return r;
    case ExprKind::kPlaceholder:
      return placeholder_ ? *placeholder_ : Unknown();
    case ExprKind::kName:
      return Name(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple:
    case ExprKind::kDict:
      for (const auto& a : e.args)
        if (a) r.Join(Eval(*a));
      r.container = true;
      Normalize(r);
      return r;
    case ExprKind::kGetAttr: {
      const Expr& base = *e.args[0];
      if (base.kind == ExprKind::kName && base.name == "loop" && !vars_.count("loop")) {
        if (e.name == "previtem" || e.name == "nextitem") return loop_items_;
        if (e.name == "cycle" || e.name == "changed") return Object();
        return r;  // index, first, length...: numbers and booleans
      }
      r = Eval(base);
      // A data attribute is part of the value. An attribute of a template-made value is a method
      // (''.format_map), whose str() holds its name. Pieces of runtime data already count as
      // possibly holding '_' once the template cuts them (Derive).
      if (!r.runtime && e.name.find('_') != std::string::npos) r.Join(Object());
      return r;
    }
    case ExprKind::kGetItem: {
      AbstractValue base = Eval(*e.args[0]);
      AbstractValue key = Eval(*e.args[1]);
      r = base;
      // A character of a string: s[0] of '_x' is '_'.
      for (const auto& s : base.strings)
        for (auto& cp : CodePoints(s)) r.strings.insert(cp);
      // obj[key] falls back to getattr(obj, key): a private name reaches an object.
      if (key.MayBeUnderscoreName()) r.Join(Unknown());
      Normalize(r);
      return r;
    }
    case ExprKind::kSlice: {
      AbstractValue base = Eval(*e.args[0]);
      bool known_bounds = true;
      std::optional<long long> bound[3];
      for (int i = 1; i <= 3; ++i) {
        if (!e.args[i]) continue;
        Eval(*e.args[i]);
        bound[i - 1] = IntLiteral(e.args[i].get());
        if (!bound[i - 1]) known_bounds = false;
      }
      long long step = bound[2].value_or(1);
      r = base;  // a list's slice holds some of its items
      if (known_bounds && step != 0 && step > -(1LL << 40) && step < (1LL << 40)) {
        for (const auto& s : base.strings) {
          if (!Spend(s.size())) return Unknown();
          r.strings.insert(PySlice(s, bound[0], bound[1], step));
        }
        if (base.other) r.Join(Derive({&base}));
      } else {
        r.Join(Derive({&base}));
      }
      Normalize(r);
      return r;
    }
    case ExprKind::kCall:
      return EvalCall(e);
    case ExprKind::kFilter:
      return EvalFilter(e);
    case ExprKind::kTest:
    case ExprKind::kUnary:
    case ExprKind::kCompare:
    case ExprKind::kNot:
      for (const auto& a : e.args)
        if (a) Eval(*a);
      for (const auto& [k, v] : e.kwargs)
        if (v) Eval(*v);
      return r;  // booleans and numbers
    case ExprKind::kAnd:
    case ExprKind::kOr:
      r = Eval(*e.args[0]);
      r.Join(Eval(*e.args[1]));
      return r;
    case ExprKind::kCond:
      r = Eval(*e.args[0]);
      Eval(*e.args[1]);
      if (e.args.size() > 2 && e.args[2]) r.Join(Eval(*e.args[2]));
      return r;
    case ExprKind::kBinary: {
      AbstractValue a = Eval(*e.args[0]);
      AbstractValue b = Eval(*e.args[1]);
      bool a_text = a.other || !a.strings.empty();
      bool b_text = b.other || !b.strings.empty();
      if (e.name == "~" || (e.name == "+" && a_text && b_text)) {
        AbstractValue ta = e.name == "~" ? ToText(a) : a;
        AbstractValue tb = e.name == "~" ? ToText(b) : b;
        if (!ta.other && !tb.other && ta.strings.size() * tb.strings.size() <= kMaxStrings) {
          for (const auto& x : ta.strings)
            for (const auto& y : tb.strings) {
              if (!Spend(x.size() + y.size())) return Unknown();
              r.strings.insert(x + y);
            }
          r.runtime = ta.runtime || tb.runtime;
          r.underscore = ta.underscore || tb.underscore;
        } else {
          r = Derive({&ta, &tb});
        }
        if (e.name == "+") {  // list + list
          r.Join(a);
          r.Join(b);
        }
      } else if (e.name == "+") {
        r = a;
        r.Join(b);
      } else if (e.name == "*" && (a_text || b_text)) {
        r = a;  // 'ab' * 2, [x] * 2
        r.Join(b);
        r.Join(Derive({&a, &b}));
      } else if (e.name == "%" && a_text) {
        r = Derive({&a, &b});
        r.underscore = true;  // '%c' % 95 is '_'
      }
      Normalize(r);
      return r;
    }
  }
  return r;
}

void KeyValueAnalysis::BindArguments(const Stmt& macro, const std::vector<AbstractValue>& args,
                                     const NamedValues& kwargs) {
  for (std::size_t i = 0; i < args.size(); ++i)
    Assign(i < macro.targets.size() ? macro.targets[i] : "varargs", args[i]);
  for (const auto& [k, v] : kwargs) {
    if (std::find(macro.targets.begin(), macro.targets.end(), k) != macro.targets.end()) {
      Assign(k, v);
    } else {
      AbstractValue kv = v;
      kv.strings.insert(k);
      Assign("kwargs", kv);
    }
  }
}

void KeyValueAnalysis::BindToEveryMacro(const std::vector<AbstractValue>& args,
                                        const NamedValues& kwargs) {
  for (const auto& [name, defs] : macros_)
    for (const Stmt* m : defs) BindArguments(*m, args, kwargs);
}

AbstractValue KeyValueAnalysis::EvalCall(const Expr& e) {
  const Expr& callee = *e.args[0];
  std::vector<AbstractValue> args;
  for (std::size_t i = 1; i < e.args.size(); ++i) args.push_back(Eval(*e.args[i]));
  NamedValues kwargs;
  for (const auto& [k, v] : e.kwargs) kwargs.emplace_back(k, Eval(*v));
  AbstractValue all;
  for (const auto& a : args) all.Join(a);
  for (const auto& [k, v] : kwargs) all.Join(v);

  if (callee.kind == ExprKind::kName) {
    const std::string& f = callee.name;
    auto macro = macros_.find(f);
    if (macro != macros_.end() && !vars_.count(f)) {
      for (const Stmt* m : macro->second) BindArguments(*m, args, kwargs);
      return macro_output_[f];
    }
    if (f == "caller") {
      Update(caller_args_, all);
      return caller_output_;
    }
    if (f == "namespace" || f == "dict") {
      AbstractValue r = all;
      r.container = true;
      if (f == "dict")
        for (const auto& [k, v] : kwargs) r.strings.insert(k);  // dict(__class__=1)|first
      Normalize(r);
      return r;
    }
    if (f == "range" || f == "raise_exception") return {};
    if (f == "strftime_now") return Derive({&all});  // strftime copies text other than %x
    // A variable may hold a macro (`set f = m`, a macro passed as an argument): the arguments
    // may reach any macro's parameters.
    BindToEveryMacro(args, kwargs);
    return Unknown();
  }

  if (callee.kind == ExprKind::kGetAttr) {
    const Expr& base_expr = *callee.args[0];
    const std::string& m = callee.name;
    if (base_expr.kind == ExprKind::kName && base_expr.name == "loop" && m == "cycle") return all;
    AbstractValue base = Eval(base_expr);
    if (base.underscore) BindToEveryMacro(args, kwargs);  // namespace(f=m).f(...)
    AbstractValue r;
    if (m == "upper" || m == "lower" || m == "title" || m == "capitalize" ||
        ((m == "strip" || m == "lstrip" || m == "rstrip") && args.empty())) {
      r = base;
      r.strings.clear();
      for (const auto& s : base.strings) {
        if (m == "upper")
          r.strings.insert(AsciiMap(s, ::toupper));
        else if (m == "lower")
          r.strings.insert(AsciiMap(s, ::tolower));
        else if (m == "title")
          r.strings.insert(Title(s, false));
        else if (m == "capitalize")
          r.strings.insert(Title(AsciiMap(s, ::tolower), true));
        else
          r.strings.insert(Trim(s));  // strip family: a prefix '_' stays or the text shrinks
      }
      if (m == "lstrip" || m == "rstrip")
        for (const auto& s : base.strings) r.strings.insert(s);
      r.other |= base.underscore;
    } else if (m == "get" || m == "pop" || m == "items" || m == "keys" || m == "values" ||
               m == "setdefault") {
      r = base;
      r.container |= m != "get" && m != "pop";                        // items(), keys(), values()
      for (std::size_t i = 1; i < args.size(); ++i) r.Join(args[i]);  // get(k, default)
      if (m == "setdefault" || m == "pop") r.Join(all);
    } else if (m == "append" || m == "extend" || m == "insert" || m == "update" ||
               m == "setdefault") {
      // Mutation: the argument now lives in the container's variable.
      const Expr* root = &base_expr;
      while (root->kind == ExprKind::kGetAttr || root->kind == ExprKind::kGetItem)
        root = root->args[0].get();
      AbstractValue added = all;
      for (const auto& [k, v] : kwargs) added.strings.insert(k);
      if (root->kind == ExprKind::kName) Assign(root->name, added);
    } else if (m == "startswith" || m == "endswith" || m == "find" || m == "rfind" ||
               m == "index" || m == "count" || m.rfind("is", 0) == 0) {
      // booleans and numbers
    } else if (m == "split" || m == "rsplit" || m == "join" || m == "replace" || m == "strip" ||
               m == "lstrip" || m == "rstrip") {
      r = Derive({&base, &all});
      if (m == "split" || m == "rsplit" || m == "strip" || m == "lstrip" || m == "rstrip")
        r.Join(base);  // pieces of the string, or the string itself
    } else {
      r = Unknown();  // str.format and anything the sandbox does not provide
      BindToEveryMacro(args, kwargs);
    }
    Normalize(r);
    return r;
  }
  Eval(callee);
  BindToEveryMacro(args, kwargs);  // [m][0](...)
  return Unknown();
}

AbstractValue KeyValueAnalysis::EvalFilter(const Expr& e) {
  const std::string& f = e.name;
  AbstractValue base = Eval(*e.args[0]);
  std::vector<AbstractValue> args;
  for (std::size_t i = 1; i < e.args.size(); ++i) args.push_back(Eval(*e.args[i]));
  AbstractValue all;
  for (const auto& a : args) all.Join(a);
  for (const auto& [k, v] : e.kwargs) all.Join(Eval(*v));

  AbstractValue r;
  if (f == "first" || f == "last" || f == "min" || f == "max" || f == "random" || f == "list" ||
      f == "unique" || f == "sort" || f == "items" || f == "dictsort" || f == "select" ||
      f == "reject" || f == "selectattr" || f == "rejectattr" || f == "batch" || f == "slice" ||
      f == "groupby" || f == "sum") {
    r = base;  // items of the value, or characters of a string ('_x'|first is '_')
    for (const auto& s : base.strings)
      for (auto& cp : CodePoints(s)) r.strings.insert(cp);
    r.container |= f != "first" && f != "last" && f != "min" && f != "max" && f != "random";
    if (f == "sum") r.Join(all);
  } else if (f == "reverse") {
    r = base;
    for (const auto& s : base.strings) {
      std::vector<std::string> cps = CodePoints(s);
      std::string rev;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) rev += *it;
      r.strings.insert(rev);
    }
  } else if (f == "default" || f == "d") {
    r = base;
    if (!args.empty()) r.Join(args[0]);
  } else if (f == "upper" || f == "lower" || f == "title" || f == "capitalize" ||
             ((f == "trim" || f == "strip") && args.empty() && e.kwargs.empty())) {
    r = ToText(base);
    r.strings.clear();
    for (const auto& s : base.strings) {
      if (f == "upper")
        r.strings.insert(AsciiMap(s, ::toupper));
      else if (f == "lower")
        r.strings.insert(AsciiMap(s, ::tolower));
      else if (f == "title")
        r.strings.insert(Title(s, false));
      else if (f == "capitalize")
        r.strings.insert(Title(AsciiMap(s, ::tolower), true));
      else
        r.strings.insert(Trim(s));
    }
  } else if (f == "string" || f == "e" || f == "escape" || f == "forceescape" || f == "safe") {
    r = ToText(base);
  } else if (f == "int" || f == "float" || f == "length" || f == "count" || f == "wordcount" ||
             f == "abs" || f == "round") {
    // numbers
  } else if (f == "replace" && args.size() >= 2 && !base.other && !base.container &&
             !args[0].other && !args[1].other &&
             base.strings.size() * args[0].strings.size() * args[1].strings.size() <= kMaxStrings) {
    for (const auto& s : base.strings)
      for (const auto& from : args[0].strings)
        for (const auto& to : args[1].strings) {
          std::string out;
          if (!Spend(s.size() * (to.size() + 1))) return Unknown();
          if (from.empty()) {
            out = s;  // Python inserts `to` between characters; keep it approximate
            r.Join(Derive({&base, &args[1]}));
          } else {
            for (std::size_t i = 0;;) {
              std::size_t j = s.find(from, i);
              if (j == std::string::npos) {
                out += s.substr(i);
                break;
              }
              out += s.substr(i, j - i) + to;
              i = j + from.size();
            }
          }
          r.strings.insert(out);
        }
    r.runtime |= base.runtime;
  } else if (f == "map") {
    // map(attribute=...) picks items; map('upper') transforms them; other filters: anything.
    r = base;
    bool attribute = false;
    for (const auto& [k, v] : e.kwargs) attribute |= k == "attribute";
    if (!attribute) {
      r.Join(Derive({&base}));
      bool known = args.size() >= 1 && !args[0].other && !args[0].strings.empty();
      for (const auto& name : args.empty() ? std::set<std::string>{} : args[0].strings)
        if (name != "upper" && name != "lower" && name != "trim" && name != "string" &&
            name != "title" && name != "capitalize" && name != "int" && name != "float" &&
            name != "length" && name != "tojson" && name != "first" && name != "last" &&
            name != "default" && name != "d" && name != "e" && name != "escape" && name != "safe")
          known = false;
      if (!known)
        r.Join(Unknown());
      else
        r.Join(Derive({&all}));
    }
  } else if (f == "join" || f == "tojson" || f == "indent" || f == "center" || f == "truncate" ||
             f == "wordwrap" || f == "replace" || f == "strip" || f == "trim") {
    r = Derive({&base, &all});
  } else if (f == "format") {
    r = Derive({&base, &all});
    r.underscore = true;  // '%c'|format(95) is '_'
  } else {
    r = Unknown();  // attr and filters the sandbox does not provide
  }
  Normalize(r);
  return r;
}

}  // namespace airlock::tmpl::internal
