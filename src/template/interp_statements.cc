// Statements: bodies, if/for/set/with/macro/call blocks and the calls of macros and callers.
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

Flow Interp::Exec(const Stmt& s) {
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

std::vector<Value> Interp::Iterate(const Value& v, std::size_t offset) {
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

Flow Interp::ExecFor(const Stmt& s) {
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

Value Interp::EvalCall(const Expr& e) {
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

Value Interp::CallMacro(const Value& fn, CallArgs& a, const Value& caller) {
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

Value Interp::CallCaller(const CallableData& d, CallArgs& a) {
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

}  // namespace airlock::tmpl::internal
