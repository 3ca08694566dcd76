// Private to template/: the lexer and recursive-descent parser behind ParseProgram (ast.h),
// split over lexer.cc (tags, whitespace control, literals), parser.cc (statements) and
// parse_expressions.cc (expressions, by precedence). Syntax errors are thrown as SyntaxError
// inside these files and become a Status in ParseProgram.
#pragma once

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "template/internal/ast.h"
#include "template/internal/strings.h"

namespace airlock::tmpl::internal::parse {

enum class Tok {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kInt,
  kFloat,
  kString,
  kOp,
  kEof
};

struct Token {
  Tok kind;
  std::size_t offset;
  std::string text;  // text / name / operator / decoded string
  std::int64_t ival = 0;
  double fval = 0;
};

struct SyntaxError {
  Status status;
};

[[noreturn]] inline void Fail(std::size_t offset, const std::string& what) {
  throw SyntaxError{
      Corrupt("template: syntax error at byte " + std::to_string(offset) + ": " + what)};
}

inline bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
inline bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }
inline bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

class Lexer {
 public:
  Lexer(std::string_view src, const ParseConfig& config) : src_(src), config_(config) {
    end_ = src_.size();
    if (!config_.keep_trailing_newline) {
      if (end_ >= 2 && src_.substr(end_ - 2) == "\r\n")
        end_ -= 2;
      else if (end_ >= 1 && (src_[end_ - 1] == '\n' || src_[end_ - 1] == '\r'))
        end_ -= 1;
    }
  }

  std::vector<Token> Run();

 private:
  // Start of the next "{{", "{%" or "{#" at or after pos (end_ when none).
  std::size_t FindTag(std::size_t pos) const {
    while (pos + 1 < end_) {
      std::size_t b = src_.find('{', pos);
      if (b == std::string_view::npos || b + 1 >= end_) return end_;
      char c = src_[b + 1];
      if (c == '{' || c == '%' || c == '#') return b;
      pos = b + 1;
    }
    return end_;
  }

  void EmitText(std::size_t begin, std::size_t end);

  void StripLastText(bool all);

  void AfterTag(std::size_t& pos, bool strip_after, bool keep_after, bool block);

  bool IsRaw(std::size_t p) const {
    while (p < end_ && IsSpace(src_[p])) ++p;
    if (src_.substr(p, 3) != "raw") return false;
    p += 3;
    while (p < end_ && IsSpace(src_[p])) ++p;
    return p < end_ &&
           (src_.substr(p, 2) == "%}" || src_.substr(p, 3) == "-%}" || src_.substr(p, 3) == "+%}");
  }

  std::size_t LexRaw(std::size_t tag, std::size_t p);

  // Lexes the inside of a {{ }} or {% %} tag starting at p; returns the position after it.
  std::size_t LexTag(std::size_t p, bool block);

  std::size_t LexNumber(std::size_t p);

  std::size_t LexString(std::size_t p);

  std::string_view src_;
  const ParseConfig& config_;
  std::size_t end_ = 0;
  std::vector<Token> tokens_;
  bool line_starting_ = true;
  bool strip_next_ = false;
};

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseConfig& config)
      : toks_(std::move(tokens)), config_(config) {}

  Body ParseTemplate() {
    Body body = ParseBody({});
    if (Peek().kind != Tok::kEof) Fail(Peek().offset, "unexpected tag");
    return body;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p(p) {
      if (++p->depth_ > p->config_.max_nesting)
        throw SyntaxError{LimitExceeded("template: nesting deeper than " +
                                        std::to_string(p->config_.max_nesting) + " at byte " +
                                        std::to_string(p->Peek().offset))};
    }
    ~DepthGuard() { --p->depth_; }
    Parser* p;
  };
  // Left-nested chains (a.b.c, a+b+c, x|f|g) deepen the tree without recursing: each link counts
  // as one nesting level for as long as the chain's parsing function runs.
  struct ChainGuard {
    explicit ChainGuard(Parser* p) : p(p) {}
    void Step() {
      ++n;
      if (++p->depth_ > p->config_.max_nesting)
        throw SyntaxError{LimitExceeded("template: expression nested deeper than " +
                                        std::to_string(p->config_.max_nesting) + " at byte " +
                                        std::to_string(p->Peek().offset))};
    }
    ~ChainGuard() { p->depth_ -= n; }
    Parser* p;
    int n = 0;
  };

  const Token& Peek(std::size_t k = 0) const {
    std::size_t i = std::min(pos_ + k, toks_.size() - 1);
    return toks_[i];
  }
  const Token& Next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool IsOp(const char* op, std::size_t k = 0) const {
    return Peek(k).kind == Tok::kOp && Peek(k).text == op;
  }
  bool IsName(const char* name, std::size_t k = 0) const {
    return Peek(k).kind == Tok::kName && Peek(k).text == name;
  }
  void ExpectOp(const char* op) {
    if (!IsOp(op)) Fail(Peek().offset, std::string("expected '") + op + "'");
    Next();
  }
  std::string ExpectName() {
    if (Peek().kind != Tok::kName) Fail(Peek().offset, "expected a name");
    return Next().text;
  }
  void ExpectBlockEnd() {
    if (Peek().kind != Tok::kBlockEnd) Fail(Peek().offset, "expected end of tag '%}'");
    Next();
  }

  // Parses statements until a block tag whose keyword is in `stops` (left unconsumed: the
  // position is at the tag's keyword) or EOF.
  Body ParseBody(std::initializer_list<const char*> stops);

  StmtPtr ParseStatement();

  ExprPtr Make(ExprKind kind, std::size_t offset) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->offset = offset;
    return e;
  }

  ExprPtr ParseTupleOrExpression();

  ExprPtr ParseExpression() { return ParseOr(true); }

  ExprPtr ParseOr(bool allow_cond);

  ExprPtr ParseAnd();

  ExprPtr ParseNot() {
    DepthGuard guard(this);
    if (IsName("not")) {
      std::size_t off = Next().offset;
      auto e = Make(ExprKind::kNot, off);
      e->args.push_back(ParseNot());
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare();

  ExprPtr Binary(const std::string& op, ExprPtr l, ExprPtr r, std::size_t off) {
    auto e = Make(ExprKind::kBinary, off);
    e->name = op;
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return e;
  }

  ExprPtr ParseConcat();

  ExprPtr ParseAdd();

  ExprPtr ParseMul();

  ExprPtr ParsePow();

  ExprPtr ParseUnary(bool with_filter);

  ExprPtr ParsePrimary();

  ExprPtr ParsePostfix(ExprPtr node);

  ExprPtr ParseSubscript(ExprPtr obj, std::size_t off);

  void ParseArgs(Expr& call);

  ExprPtr ParseCall(ExprPtr callee, std::size_t off) {
    auto e = Make(ExprKind::kCall, off);
    e->args.push_back(std::move(callee));
    ParseArgs(*e);
    return e;
  }

  ExprPtr ParseFilterChain(ExprPtr node, bool first_without_pipe = false);

  bool StartsPrimary() const;

  ExprPtr ParseFilterExpr(ExprPtr node);

  std::vector<Token> toks_;
  const ParseConfig& config_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace airlock::tmpl::internal::parse
