// ParseProgram and the statement parser of the Jinja subset used by chat templates (if, for, set,
// macro, call, filter, with, raw, break/continue); the lexer is in lexer.cc and expressions in
// parse_expressions.cc (see template/internal/parser.h).
#include "template/internal/parser.h"

namespace airlock::tmpl::internal {

namespace parse {

// Parses statements until a block tag whose keyword is in `stops` (left unconsumed: the
// position is at the tag's keyword) or EOF.
Body Parser::ParseBody(std::initializer_list<const char*> stops) {
  DepthGuard guard(this);
  Body body;
  while (true) {
    const Token& t = Peek();
    if (t.kind == Tok::kEof) {
      if (stops.size() != 0)
        Fail(t.offset, std::string("missing end tag ({% ") + *stops.begin() + " %})");
      return body;
    }
    if (t.kind == Tok::kText) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kText;
      s->offset = t.offset;
      s->text = t.text;
      Next();
      if (!s->text.empty()) body.push_back(std::move(s));
      continue;
    }
    if (t.kind == Tok::kVarBegin) {
      Next();
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kOutput;
      s->offset = t.offset;
      s->expr = ParseExpression();
      if (Peek().kind != Tok::kVarEnd) Fail(Peek().offset, "expected '}}'");
      Next();
      body.push_back(std::move(s));
      continue;
    }
    if (t.kind == Tok::kBlockBegin) {
      const Token& kw = Peek(1);
      if (kw.kind != Tok::kName) Fail(kw.offset, "expected a statement keyword");
      for (const char* stop : stops)
        if (kw.text == stop) {
          Next();  // the block begin; position is at the keyword
          return body;
        }
      Next();
      body.push_back(ParseStatement());
      continue;
    }
    Fail(t.offset, "unexpected token");
  }
}

StmtPtr Parser::ParseStatement() {
  const Token kw = Next();
  auto s = std::make_unique<Stmt>();
  s->offset = kw.offset;
  const std::string& k = kw.text;
  if (k == "if") {
    s->kind = StmtKind::kIf;
    ExprPtr cond = ParseExpression();
    ExpectBlockEnd();
    while (true) {
      Body b = ParseBody({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(b));
      std::string which = Next().text;
      if (which == "elif") {
        cond = ParseExpression();
        ExpectBlockEnd();
        continue;
      }
      ExpectBlockEnd();
      if (which == "else") {
        s->else_body = ParseBody({"endif"});
        Next();
        ExpectBlockEnd();
      }
      break;
    }
  } else if (k == "for") {
    s->kind = StmtKind::kFor;
    s->targets.push_back(ExpectName());
    while (IsOp(",")) {
      Next();
      s->targets.push_back(ExpectName());
    }
    if (!IsName("in")) Fail(Peek().offset, "expected 'in'");
    Next();
    s->expr = ParseOr(/*allow_cond=*/false);
    if (IsName("if")) {
      Next();
      s->cond = ParseExpression();
    }
    if (IsName("recursive")) Fail(Peek().offset, "recursive loops are not supported");
    ExpectBlockEnd();
    s->body = ParseBody({"else", "endfor"});
    if (Next().text == "else") {
      ExpectBlockEnd();
      s->else_body = ParseBody({"endfor"});
      Next();
    }
    ExpectBlockEnd();
  } else if (k == "set") {
    std::string first = ExpectName();
    s->targets.push_back(first);
    if (IsOp(".")) {
      Next();
      s->attr = ExpectName();
    } else {
      while (IsOp(",")) {
        Next();
        s->targets.push_back(ExpectName());
      }
    }
    if (IsOp("=")) {
      Next();
      s->kind = StmtKind::kSet;
      s->expr = ParseTupleOrExpression();
      ExpectBlockEnd();
    } else {
      if (!s->attr.empty() || s->targets.size() != 1) Fail(Peek().offset, "expected '='");
      s->kind = StmtKind::kSetBlock;
      if (IsOp("|")) {
        auto ph = std::make_unique<Expr>();
        ph->kind = ExprKind::kPlaceholder;
        ph->offset = Peek().offset;
        s->expr = ParseFilterChain(std::move(ph));
      }
      ExpectBlockEnd();
      s->body = ParseBody({"endset"});
      Next();
      ExpectBlockEnd();
    }
  } else if (k == "macro" || k == "call") {
    bool is_macro = k == "macro";
    s->kind = is_macro ? StmtKind::kMacro : StmtKind::kCallBlock;
    if (is_macro) s->name = ExpectName();
    if (is_macro || IsOp("(")) {
      ExpectOp("(");
      while (!IsOp(")")) {
        s->targets.push_back(ExpectName());
        if (IsOp("=")) {
          Next();
          s->defaults.push_back(ParseExpression());
        } else {
          s->defaults.push_back(nullptr);
        }
        if (!IsOp(",")) break;
        Next();
      }
      ExpectOp(")");
    }
    if (!is_macro) {
      s->expr = ParseExpression();
      if (s->expr->kind != ExprKind::kCall) Fail(s->expr->offset, "call block needs a call");
    }
    ExpectBlockEnd();
    s->body = ParseBody({is_macro ? "endmacro" : "endcall"});
    Next();
    ExpectBlockEnd();
  } else if (k == "filter") {
    s->kind = StmtKind::kFilterBlock;
    auto ph = std::make_unique<Expr>();
    ph->kind = ExprKind::kPlaceholder;
    ph->offset = Peek().offset;
    // "filter upper|trim": the first filter has no leading pipe.
    s->expr = ParseFilterChain(std::move(ph), /*first_without_pipe=*/true);
    ExpectBlockEnd();
    s->body = ParseBody({"endfilter"});
    Next();
    ExpectBlockEnd();
  } else if (k == "break" || k == "continue") {
    s->kind = k == "break" ? StmtKind::kBreak : StmtKind::kContinue;
    ExpectBlockEnd();
  } else if (k == "do") {
    s->kind = StmtKind::kDo;
    s->expr = ParseTupleOrExpression();
    ExpectBlockEnd();
  } else if (k == "generation") {
    s->kind = StmtKind::kScope;
    ExpectBlockEnd();
    s->body = ParseBody({"endgeneration"});
    Next();
    ExpectBlockEnd();
  } else {
    Fail(kw.offset, "unknown or unsupported statement '" + k + "'");
  }
  return s;
}

}  // namespace parse

Result<std::shared_ptr<const Program>> ParseProgram(std::string source, const ParseConfig& config) {
  auto program = std::make_shared<Program>();
  program->source = std::move(source);
  try {
    parse::Lexer lexer(program->source, config);
    parse::Parser parser(lexer.Run(), config);
    program->body = parser.ParseTemplate();
  } catch (const parse::SyntaxError& e) {
    return e.status;
  } catch (const std::bad_alloc&) {
    return LimitExceeded("template: out of memory while parsing");
  } catch (const std::exception& e) {
    return Internal(std::string("template: unexpected error while parsing: ") + e.what());
  }
  return std::shared_ptr<const Program>(std::move(program));
}

}  // namespace airlock::tmpl::internal
