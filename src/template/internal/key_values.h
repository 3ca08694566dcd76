// Internal: which strings a chat template's author can make an expression evaluate to, for the
// scanner's subscript-key and attribute-name checks. Real Jinja falls back from obj[key] to
// getattr(obj, key), so a key the template computes ('__class__' kept in a variable, a macro
// argument, a loop over a literal list, a reversed literal, '%c' formatting...) reaches Python
// internals as surely as a literal one.
//
// A conservative, flow-insensitive abstract evaluation over the AST: every variable (set targets,
// loop targets, macro parameters, namespace attributes, block sets) holds the union of everything
// assigned to it anywhere, containers are flattened (a list "holds" every string inside it, at any
// depth), and the analysis iterates to a fixed point. Nothing is rendered.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "template/internal/ast.h"

namespace airlock::tmpl::internal {

// What an expression may evaluate to, as far as strings go. Invariant (what the checks rely on):
// if the real value is a string starting with '_', then `strings` has one starting with '_' or
// both `other` and `underscore` are set.
struct AbstractValue {
  std::set<std::string> strings;  // exact string values (or strings inside a container)
  bool other = false;       // may also be a string not listed (computed, or from runtime data)
  bool underscore = false;  // that unlisted string, or this value's str(), may contain '_'
  bool runtime = false;     // may come from the conversation (messages, tools...): not the author's
  bool container = false;   // may be a list/tuple/dict/namespace: `strings` are items inside it

  void Join(const AbstractValue& o);
  bool operator==(const AbstractValue& o) const = default;
  // A string the template computes may start with '_' (a dunder/private name).
  bool MayBeUnderscoreName() const;
  // A string the template computes (not plain runtime data) and that nothing pins down.
  bool UnknownComputedString() const { return other && underscore; }
};

class KeyValueAnalysis {
 public:
  // `runtime_names`: variables the caller provides (messages, tools, ...).
  KeyValueAnalysis(const Program& program, const std::set<std::string>& runtime_names);

  // The possible values of `e` (an expression of the analyzed program) at any point.
  AbstractValue Eval(const Expr& e);

  // Names assigned by set/for/macro parameters (not macros): calling one calls whatever value it
  // holds, for instance a bound str.format.
  bool IsAssignedVariable(const std::string& name) const;
  bool IsMacro(const std::string& name) const { return macros_.count(name) > 0; }
  // The work cap was hit or the iteration did not settle: every value counts as unknown.
  bool Exhausted() const { return exhausted_; }

 private:
  AbstractValue WalkBody(const Body& body);  // one pass; returns the body's output
  AbstractValue WalkStmt(const Stmt& s, bool& exact);
  void Assign(const std::string& name, const AbstractValue& v);
  void Update(AbstractValue& slot, const AbstractValue& v);  // join; notes a change
  using NamedValues = std::vector<std::pair<std::string, AbstractValue>>;
  void BindArguments(const Stmt& macro, const std::vector<AbstractValue>& args,
                     const NamedValues& kwargs);
  void BindToEveryMacro(const std::vector<AbstractValue>& args, const NamedValues& kwargs);
  AbstractValue EvalCall(const Expr& e);
  AbstractValue EvalFilter(const Expr& e);
  AbstractValue Name(const std::string& name);
  void Normalize(AbstractValue& v);
  bool Spend(std::size_t work);

  std::set<std::string> runtime_names_;
  std::map<std::string, AbstractValue> vars_;
  std::map<std::string, std::vector<const Stmt*>> macros_;
  std::map<std::string, AbstractValue> macro_output_;
  AbstractValue caller_args_;    // arguments of every caller(...) call
  AbstractValue caller_output_;  // output of every {% call %} body
  AbstractValue loop_items_;     // every for-loop's iterable (loop.previtem / nextitem)
  const AbstractValue* placeholder_ = nullptr;
  bool changed_ = false;
  bool widen_ = false;
  bool exhausted_ = false;  // work cap hit: every value is treated as unknown
  std::size_t work_ = 0;
};

}  // namespace airlock::tmpl::internal
