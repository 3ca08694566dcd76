// Internal AST of the template module. Every node carries the byte offset (into the template
// source) where it starts, for error messages and the scanner's findings.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "template/value.h"

namespace airlock::tmpl::internal {

enum class ExprKind {
  kLiteral,      // literal
  kName,         // name
  kList,         // args = items
  kTuple,        // args = items
  kDict,         // args = key0, value0, key1, value1...
  kGetAttr,      // args[0].name
  kGetItem,      // args[0][args[1]]
  kSlice,        // args[0][args[1]:args[2]:args[3]] (any of 1..3 may be null)
  kCall,         // args[0](args[1..], kwargs)
  kFilter,       // args[0] | name(args[1..], kwargs)
  kTest,         // args[0] is [not] name(args[1..])
  kUnary,        // name = "-" / "+"; args[0]
  kBinary,       // name = "+", "-", "*", "/", "//", "%", "**", "~"; args[0], args[1]
  kCompare,      // name = "==", "!=", "<", "<=", ">", ">=", "in", "not in"; args[0], args[1]
  kAnd,          // args[0] and args[1]
  kOr,           // args[0] or args[1]
  kNot,          // not args[0]
  kCond,         // args[0] if args[1] else args[2] (args[2] may be null)
  kPlaceholder,  // the body of a {% filter %} block
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  std::size_t offset = 0;
  std::string name;
  Value literal;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;  // kTest: "is not"
};

enum class StmtKind {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // branches (cond, body) + else_body
  kFor,          // for targets in expr [if cond]: body, else_body
  kSet,          // set targets = expr, or set targets[0].attr = expr
  kSetBlock,     // set targets[0] %}body{% endset (optional filter chain in expr)
  kMacro,        // macro name(targets = defaults) body
  kCallBlock,    // call(targets) expr %} body
  kFilterBlock,  // filter expr (chain over a kPlaceholder) %} body
  kBreak,
  kContinue,
  kDo,     // do expr
  kScope,  // generation %} body (HF extension; renders body)
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind = StmtKind::kText;
  std::size_t offset = 0;
  std::string text;
  ExprPtr expr;
  std::vector<std::string> targets;
  std::string attr;
  std::string name;
  std::vector<ExprPtr> defaults;
  ExprPtr cond;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
};

struct Program {
  std::string source;
  Body body;
};

struct ParseConfig {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
  int max_nesting = 200;
};

// Parses `source`. Errors: kCorrupt "template: syntax error at byte N: ...", kLimitExceeded when
// nesting exceeds max_nesting.
Result<std::shared_ptr<const Program>> ParseProgram(std::string source, const ParseConfig& config);

}  // namespace airlock::tmpl::internal
