// Expressions of the Jinja subset, one function per precedence level (or, and, not, comparisons,
// ~, + -, * / // %, **, unary, primary, postfix, filters and tests).
#include "template/internal/parser.h"

namespace airlock::tmpl::internal::parse {

ExprPtr Parser::ParseTupleOrExpression() {
  std::size_t off = Peek().offset;
  ExprPtr first = ParseExpression();
  if (!IsOp(",")) return first;
  DepthGuard guard(this);
  auto t = Make(ExprKind::kTuple, off);
  t->args.push_back(std::move(first));
  while (IsOp(",")) {
    Next();
    if (Peek().kind == Tok::kBlockEnd || Peek().kind == Tok::kVarEnd) break;
    t->args.push_back(ParseExpression());
  }
  return t;
}

ExprPtr Parser::ParseOr(bool allow_cond) {
  DepthGuard guard(this);
  std::size_t off = Peek().offset;
  ExprPtr left = ParseAnd();
  ChainGuard chain(this);
  while (IsName("or")) {
    chain.Step();
    Next();
    auto e = Make(ExprKind::kOr, off);
    e->args.push_back(std::move(left));
    e->args.push_back(ParseAnd());
    left = std::move(e);
  }
  if (allow_cond && IsName("if")) {
    Next();
    auto e = Make(ExprKind::kCond, off);
    e->args.push_back(std::move(left));
    e->args.push_back(ParseOr(false));
    if (IsName("else")) {
      Next();
      e->args.push_back(ParseOr(true));
    } else {
      e->args.push_back(nullptr);
    }
    return e;
  }
  return left;
}

ExprPtr Parser::ParseAnd() {
  std::size_t off = Peek().offset;
  ExprPtr left = ParseNot();
  ChainGuard chain(this);
  while (IsName("and")) {
    chain.Step();
    Next();
    auto e = Make(ExprKind::kAnd, off);
    e->args.push_back(std::move(left));
    e->args.push_back(ParseNot());
    left = std::move(e);
  }
  return left;
}

ExprPtr Parser::ParseCompare() {
  std::size_t off = Peek().offset;
  ExprPtr left = ParseConcat();
  ChainGuard chain(this);
  while (true) {
    chain.Step();
    std::string op;
    if (Peek().kind == Tok::kOp &&
        (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" || Peek().text == "<=" ||
         Peek().text == ">" || Peek().text == ">=")) {
      op = Next().text;
    } else if (IsName("in")) {
      Next();
      op = "in";
    } else if (IsName("not") && IsName("in", 1)) {
      Next();
      Next();
      op = "not in";
    } else {
      return left;
    }
    auto e = Make(ExprKind::kCompare, off);
    e->name = op;
    e->args.push_back(std::move(left));
    e->args.push_back(ParseConcat());
    left = std::move(e);
  }
}

ExprPtr Parser::ParseConcat() {
  std::size_t off = Peek().offset;
  ExprPtr left = ParseAdd();
  ChainGuard chain(this);
  while (IsOp("~")) {
    chain.Step();
    Next();
    left = Binary("~", std::move(left), ParseAdd(), off);
  }
  return left;
}

ExprPtr Parser::ParseAdd() {
  std::size_t off = Peek().offset;
  ExprPtr left = ParseMul();
  ChainGuard chain(this);
  while (IsOp("+") || IsOp("-")) {
    chain.Step();
    std::string op = Next().text;
    left = Binary(op, std::move(left), ParseMul(), off);
  }
  return left;
}

ExprPtr Parser::ParseMul() {
  std::size_t off = Peek().offset;
  ExprPtr left = ParsePow();
  ChainGuard chain(this);
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
    chain.Step();
    std::string op = Next().text;
    left = Binary(op, std::move(left), ParsePow(), off);
  }
  return left;
}

ExprPtr Parser::ParsePow() {
  std::size_t off = Peek().offset;
  ExprPtr left = ParseUnary(true);
  ChainGuard chain(this);
  while (IsOp("**")) {
    chain.Step();
    Next();
    left = Binary("**", std::move(left), ParseUnary(true), off);
  }
  return left;
}

ExprPtr Parser::ParseUnary(bool with_filter) {
  DepthGuard guard(this);
  std::size_t off = Peek().offset;
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    std::string op = Next().text;
    node = Make(ExprKind::kUnary, off);
    node->name = op;
    node->args.push_back(ParseUnary(false));
  } else {
    node = ParsePrimary();
  }
  node = ParsePostfix(std::move(node));
  if (with_filter) node = ParseFilterExpr(std::move(node));
  return node;
}

ExprPtr Parser::ParsePrimary() {
  const Token& t = Peek();
  std::size_t off = t.offset;
  if (t.kind == Tok::kName) {
    std::string n = Next().text;
    auto e = Make(ExprKind::kLiteral, off);
    if (n == "true" || n == "True")
      e->literal = Value::Bool(true);
    else if (n == "false" || n == "False")
      e->literal = Value::Bool(false);
    else if (n == "none" || n == "None")
      e->literal = Value::None();
    else {
      e->kind = ExprKind::kName;
      e->name = n;
    }
    return e;
  }
  if (t.kind == Tok::kString) {
    std::string s = Next().text;
    while (Peek().kind == Tok::kString) s += Next().text;  // adjacent literals concatenate
    auto e = Make(ExprKind::kLiteral, off);
    e->literal = Value::String(std::move(s));
    return e;
  }
  if (t.kind == Tok::kInt || t.kind == Tok::kFloat) {
    auto e = Make(ExprKind::kLiteral, off);
    e->literal = t.kind == Tok::kInt ? Value::Int(t.ival) : Value::Float(t.fval);
    Next();
    return e;
  }
  if (IsOp("(")) {
    Next();
    if (IsOp(")")) {
      Next();
      return Make(ExprKind::kTuple, off);
    }
    ExprPtr first = ParseExpression();
    if (IsOp(")")) {
      Next();
      return first;
    }
    auto tup = Make(ExprKind::kTuple, off);
    tup->args.push_back(std::move(first));
    while (IsOp(",")) {
      Next();
      if (IsOp(")")) break;
      tup->args.push_back(ParseExpression());
    }
    ExpectOp(")");
    return tup;
  }
  if (IsOp("[")) {
    Next();
    auto list = Make(ExprKind::kList, off);
    while (!IsOp("]")) {
      list->args.push_back(ParseExpression());
      if (!IsOp(",")) break;
      Next();
    }
    ExpectOp("]");
    return list;
  }
  if (IsOp("{")) {
    Next();
    auto dict = Make(ExprKind::kDict, off);
    while (!IsOp("}")) {
      dict->args.push_back(ParseExpression());
      ExpectOp(":");
      dict->args.push_back(ParseExpression());
      if (!IsOp(",")) break;
      Next();
    }
    ExpectOp("}");
    return dict;
  }
  Fail(off, t.kind == Tok::kEof ? "unexpected end of template" : "unexpected '" + t.text + "'");
}

ExprPtr Parser::ParsePostfix(ExprPtr node) {
  ChainGuard chain(this);
  while (true) {
    chain.Step();
    std::size_t off = Peek().offset;
    if (IsOp(".")) {
      Next();
      const Token& t = Peek();
      if (t.kind == Tok::kName) {
        auto e = Make(ExprKind::kGetAttr, off);
        e->name = Next().text;
        e->args.push_back(std::move(node));
        node = std::move(e);
      } else if (t.kind == Tok::kInt) {
        auto e = Make(ExprKind::kGetItem, off);
        e->args.push_back(std::move(node));
        auto idx = Make(ExprKind::kLiteral, t.offset);
        idx->literal = Value::Int(t.ival);
        Next();
        e->args.push_back(std::move(idx));
        node = std::move(e);
      } else {
        Fail(t.offset, "expected an attribute name after '.'");
      }
    } else if (IsOp("[")) {
      Next();
      node = ParseSubscript(std::move(node), off);
    } else if (IsOp("(")) {
      node = ParseCall(std::move(node), off);
    } else {
      return node;
    }
  }
}

ExprPtr Parser::ParseSubscript(ExprPtr obj, std::size_t off) {
  ExprPtr parts[3];
  int n = 0;
  bool is_slice = false;
  while (true) {
    if (IsOp(":")) {
      is_slice = true;
      Next();
      if (++n > 2) Fail(Peek().offset, "too many ':' in slice");
      continue;
    }
    if (IsOp("]")) break;
    if (parts[n]) Fail(Peek().offset, "expected ':' or ']'");
    parts[n] = ParseExpression();
  }
  ExpectOp("]");
  if (!is_slice) {
    if (!parts[0]) Fail(off, "empty subscript");
    auto e = Make(ExprKind::kGetItem, off);
    e->args.push_back(std::move(obj));
    e->args.push_back(std::move(parts[0]));
    return e;
  }
  auto e = Make(ExprKind::kSlice, off);
  e->args.push_back(std::move(obj));
  for (auto& p : parts) e->args.push_back(std::move(p));
  return e;
}

void Parser::ParseArgs(Expr& call) {
  ExpectOp("(");
  while (!IsOp(")")) {
    if (IsOp("*") || IsOp("**")) Fail(Peek().offset, "*args and **kwargs are not supported");
    if (Peek().kind == Tok::kName && IsOp("=", 1)) {
      std::string key = Next().text;
      Next();
      call.kwargs.emplace_back(key, ParseExpression());
    } else {
      if (!call.kwargs.empty()) Fail(Peek().offset, "positional argument after keyword argument");
      call.args.push_back(ParseExpression());
    }
    if (!IsOp(",")) break;
    Next();
  }
  ExpectOp(")");
}

ExprPtr Parser::ParseFilterChain(ExprPtr node, bool first_without_pipe) {
  bool first = first_without_pipe;
  ChainGuard chain(this);
  while (first || IsOp("|")) {
    chain.Step();
    std::size_t off = Peek().offset;
    if (!first) Next();
    first = false;
    auto f = Make(ExprKind::kFilter, off);
    f->name = ExpectName();
    while (IsOp(".")) {  // dotted filter names are not supported; keep the name for errors
      Next();
      f->name += "." + ExpectName();
    }
    f->args.push_back(std::move(node));
    if (IsOp("(")) ParseArgs(*f);
    node = std::move(f);
  }
  return node;
}

bool Parser::StartsPrimary() const {
  const Token& t = Peek();
  if (t.kind == Tok::kString || t.kind == Tok::kInt || t.kind == Tok::kFloat) return true;
  if (t.kind == Tok::kOp) return t.text == "(" || t.text == "[" || t.text == "{";
  if (t.kind == Tok::kName) {
    static const char* kKeywords[] = {"and", "or", "else", "if", "is", "in", "not"};
    for (const char* k : kKeywords)
      if (t.text == k) return false;
    return true;
  }
  return false;
}

ExprPtr Parser::ParseFilterExpr(ExprPtr node) {
  ChainGuard chain(this);
  while (true) {
    chain.Step();
    if (IsOp("|")) {
      node = ParseFilterChain(std::move(node));
    } else if (IsName("is")) {
      std::size_t off = Next().offset;
      auto t = Make(ExprKind::kTest, off);
      if (IsName("not")) {
        Next();
        t->negated = true;
      }
      // Tests named like literals ("is none", "is true") arrive as names.
      const Token& n = Peek();
      if (n.kind != Tok::kName) Fail(n.offset, "expected a test name after 'is'");
      t->name = Next().text;
      t->args.push_back(std::move(node));
      if (IsOp("(")) {
        ParseArgs(*t);
      } else if (StartsPrimary()) {
        t->args.push_back(ParsePostfix(ParsePrimary()));
      }
      node = std::move(t);
    } else if (IsOp("(")) {
      node = ParseCall(std::move(node), Peek().offset);
    } else {
      return node;
    }
  }
}

}  // namespace airlock::tmpl::internal::parse
