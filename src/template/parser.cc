// Lexer and recursive-descent parser for the Jinja subset used by chat templates. Whitespace
// control follows Jinja's lexer: "-" strips, "+" keeps, trim_blocks eats the newline after a
// block/comment tag, lstrip_blocks removes indentation before one, and one trailing newline of
// the template is dropped unless keep_trailing_newline.
#include <cstring>
#include <string_view>

#include "template/internal/ast.h"
#include "template/internal/strings.h"

namespace airlock::tmpl::internal {
namespace {

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

[[noreturn]] void Fail(std::size_t offset, const std::string& what) {
  throw SyntaxError{
      Corrupt("template: syntax error at byte " + std::to_string(offset) + ": " + what)};
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

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

  std::vector<Token> Run() {
    std::size_t pos = 0;
    while (pos < end_) {
      std::size_t tag = FindTag(pos);
      if (tag > pos) EmitText(pos, tag);
      strip_next_ = false;  // a "-%}" strips only the text right after it
      if (tag >= end_) break;
      char kind = src_[tag + 1];
      std::size_t p = tag + 2;
      char modifier = p < end_ ? src_[p] : 0;
      if (modifier == '-' || modifier == '+')
        ++p;
      else
        modifier = 0;
      // Whitespace control of the text before the tag.
      if (modifier == '-') {
        StripLastText(/*all=*/true);
      } else if (modifier != '+' && kind != '{' && config_.lstrip_blocks) {
        StripLastText(/*all=*/false);
      }
      if (kind == '#') {
        std::size_t close = src_.find("#}", p);
        if (close == std::string_view::npos || close >= end_ + 2) Fail(tag, "unclosed comment");
        bool strip_after = close > p && src_[close - 1] == '-';
        bool keep_after = close > p && src_[close - 1] == '+';
        pos = close + 2;
        AfterTag(pos, strip_after, keep_after, /*block=*/true);
        continue;
      }
      bool block = kind == '%';
      if (block && IsRaw(p)) {
        pos = LexRaw(tag, p);
        continue;
      }
      tokens_.push_back({block ? Tok::kBlockBegin : Tok::kVarBegin, tag, {}});
      pos = LexTag(p, block);
    }
    tokens_.push_back({Tok::kEof, end_, {}});
    return std::move(tokens_);
  }

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

  void EmitText(std::size_t begin, std::size_t end) {
    std::string text;
    text.reserve(end - begin);
    for (std::size_t i = begin; i < end; ++i) {
      if (src_[i] == '\r') {
        text.push_back('\n');
        if (i + 1 < end && src_[i + 1] == '\n') ++i;
      } else {
        text.push_back(src_[i]);
      }
    }
    if (strip_next_) {
      std::size_t k = 0;
      while (k < text.size() && IsSpace(text[k])) ++k;
      text.erase(0, k);
      strip_next_ = false;
    }
    Token t{Tok::kText, begin, std::move(text)};
    t.ival = line_starting_ ? 1 : 0;
    tokens_.push_back(std::move(t));
    line_starting_ = false;
  }

  void StripLastText(bool all) {
    if (tokens_.empty() || tokens_.back().kind != Tok::kText) return;
    std::string& text = tokens_.back().text;
    if (all) {
      while (!text.empty() && IsSpace(text.back())) text.pop_back();
      return;
    }
    std::size_t nl = text.rfind('\n');
    std::size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
    if (l_pos == 0 && tokens_.back().ival == 0) return;
    for (std::size_t i = l_pos; i < text.size(); ++i)
      if (!IsSpace(text[i])) return;
    text.resize(l_pos);
  }

  void AfterTag(std::size_t& pos, bool strip_after, bool keep_after, bool block) {
    line_starting_ = false;
    if (strip_after) {
      strip_next_ = true;
    } else if (block && !keep_after && config_.trim_blocks) {
      if (pos < end_ && src_[pos] == '\n') {
        ++pos;
        line_starting_ = true;
      } else if (pos + 1 < end_ && src_[pos] == '\r' && src_[pos + 1] == '\n') {
        pos += 2;
        line_starting_ = true;
      }
    }
  }

  bool IsRaw(std::size_t p) const {
    while (p < end_ && IsSpace(src_[p])) ++p;
    if (src_.substr(p, 3) != "raw") return false;
    p += 3;
    while (p < end_ && IsSpace(src_[p])) ++p;
    return p < end_ &&
           (src_.substr(p, 2) == "%}" || src_.substr(p, 3) == "-%}" || src_.substr(p, 3) == "+%}");
  }

  std::size_t LexRaw(std::size_t tag, std::size_t p) {
    std::size_t close = src_.find("%}", p);
    bool strip_after = src_[close - 1] == '-';
    std::size_t body = close + 2;
    std::size_t search = body;
    while (true) {
      std::size_t b = src_.find("{%", search);
      if (b == std::string_view::npos || b >= end_) Fail(tag, "unclosed raw block");
      std::size_t q = b + 2;
      bool strip_before = q < end_ && src_[q] == '-';
      if (q < end_ && (src_[q] == '-' || src_[q] == '+')) ++q;
      while (q < end_ && IsSpace(src_[q])) ++q;
      if (src_.substr(q, 6) == "endraw") {
        q += 6;
        while (q < end_ && IsSpace(src_[q])) ++q;
        bool strip_end = q < end_ && src_[q] == '-';
        if (q < end_ && (src_[q] == '-' || src_[q] == '+')) ++q;
        if (src_.substr(q, 2) != "%}") Fail(b, "malformed endraw");
        std::string text(src_.substr(body, b - body));
        if (strip_after) {
          std::size_t k = 0;
          while (k < text.size() && IsSpace(text[k])) ++k;
          text.erase(0, k);
        }
        if (strip_before)
          while (!text.empty() && IsSpace(text.back())) text.pop_back();
        tokens_.push_back({Tok::kText, body, std::move(text)});
        std::size_t pos = q + 2;
        AfterTag(pos, strip_end, false, true);
        return pos;
      }
      search = b + 2;
    }
  }

  // Lexes the inside of a {{ }} or {% %} tag starting at p; returns the position after it.
  std::size_t LexTag(std::size_t p, bool block) {
    int depth = 0;
    const char* close = block ? "%}" : "}}";
    while (true) {
      while (p < end_ && IsSpace(src_[p])) ++p;
      if (p >= end_) Fail(p, block ? "unclosed block tag" : "unclosed expression");
      if (depth == 0) {
        char m = src_[p];
        std::size_t q = (m == '-' || m == '+') ? p + 1 : p;
        // "-%}" / "+%}" end the tag only when the sign directly precedes the delimiter.
        if (src_.substr(q, 2) == close) {
          tokens_.push_back({block ? Tok::kBlockEnd : Tok::kVarEnd, p, {}});
          std::size_t pos = q + 2;
          AfterTag(pos, m == '-', m == '+', block);
          return pos;
        }
      }
      char c = src_[p];
      if (IsNameStart(c)) {
        std::size_t s = p;
        while (p < end_ && IsNameChar(src_[p])) ++p;
        tokens_.push_back({Tok::kName, s, std::string(src_.substr(s, p - s))});
      } else if (IsDigit(c)) {
        p = LexNumber(p);
      } else if (c == '\'' || c == '"') {
        p = LexString(p);
      } else {
        static const char* kOps2[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* o : kOps2)
          if (src_.substr(p, 2) == o) op = o;
        if (op.empty()) {
          if (!std::strchr("+-*/%~<>=()[]{},.:|!", c) || c == '!')
            Fail(p, std::string("unexpected character '") + c + "'");
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") ++depth;
        if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
        tokens_.push_back({Tok::kOp, p, op});
        p += op.size();
      }
    }
  }

  std::size_t LexNumber(std::size_t p) {
    std::size_t s = p;
    std::string digits;
    auto take_digits = [&] {
      while (p < end_ &&
             (IsDigit(src_[p]) || (src_[p] == '_' && p + 1 < end_ && IsDigit(src_[p + 1])))) {
        if (src_[p] != '_') digits.push_back(src_[p]);
        ++p;
      }
    };
    take_digits();
    bool is_float = false;
    if (p + 1 < end_ && src_[p] == '.' && IsDigit(src_[p + 1])) {
      is_float = true;
      digits.push_back('.');
      ++p;
      take_digits();
    }
    if (p < end_ && (src_[p] == 'e' || src_[p] == 'E')) {
      std::size_t q = p + 1;
      if (q < end_ && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < end_ && IsDigit(src_[q])) {
        is_float = true;
        digits.push_back('e');
        if (src_[p + 1] == '-') digits.push_back('-');
        p = q;
        take_digits();
      }
    }
    Token t{is_float ? Tok::kFloat : Tok::kInt, s, digits};
    if (is_float) {
      t.fval = std::strtod(digits.c_str(), nullptr);
    } else {
      std::int64_t v = 0;
      for (char d : digits) {
        if (v > (INT64_MAX - (d - '0')) / 10) Fail(s, "integer literal too large");
        v = v * 10 + (d - '0');
      }
      t.ival = v;
    }
    tokens_.push_back(std::move(t));
    return p;
  }

  std::size_t LexString(std::size_t p) {
    char q = src_[p];
    std::size_t s = p++;
    std::string out;
    while (true) {
      if (p >= end_) Fail(s, "unterminated string");
      char c = src_[p];
      if (c == q) {
        ++p;
        break;
      }
      if (c != '\\') {
        if (c == '\r') {
          out.push_back('\n');
          if (p + 1 < end_ && src_[p + 1] == '\n') ++p;
        } else {
          out.push_back(c);
        }
        ++p;
        continue;
      }
      if (p + 1 >= end_) Fail(s, "unterminated string");
      internal::DecodedEscape esc = internal::DecodeEscape(src_.substr(0, end_), p);
      if (esc.kind == internal::DecodedEscape::Kind::kError)
        Fail(p, "string literal escape Python refuses: " + esc.text);
      out += esc.text;
      p += esc.length;
    }
    tokens_.push_back({Tok::kString, s, std::move(out)});
    return p;
  }

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
  Body ParseBody(std::initializer_list<const char*> stops) {
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

  StmtPtr ParseStatement() {
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

  ExprPtr Make(ExprKind kind, std::size_t offset) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->offset = offset;
    return e;
  }

  ExprPtr ParseTupleOrExpression() {
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

  ExprPtr ParseExpression() { return ParseOr(true); }

  ExprPtr ParseOr(bool allow_cond) {
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

  ExprPtr ParseAnd() {
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

  ExprPtr ParseCompare() {
    std::size_t off = Peek().offset;
    ExprPtr left = ParseConcat();
    ChainGuard chain(this);
    while (true) {
      chain.Step();
      std::string op;
      if (Peek().kind == Tok::kOp &&
          (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" ||
           Peek().text == "<=" || Peek().text == ">" || Peek().text == ">=")) {
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

  ExprPtr Binary(const std::string& op, ExprPtr l, ExprPtr r, std::size_t off) {
    auto e = Make(ExprKind::kBinary, off);
    e->name = op;
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return e;
  }

  ExprPtr ParseConcat() {
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

  ExprPtr ParseAdd() {
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

  ExprPtr ParseMul() {
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

  ExprPtr ParsePow() {
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

  ExprPtr ParseUnary(bool with_filter) {
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

  ExprPtr ParsePrimary() {
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

  ExprPtr ParsePostfix(ExprPtr node) {
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

  ExprPtr ParseSubscript(ExprPtr obj, std::size_t off) {
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

  void ParseArgs(Expr& call) {
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

  ExprPtr ParseCall(ExprPtr callee, std::size_t off) {
    auto e = Make(ExprKind::kCall, off);
    e->args.push_back(std::move(callee));
    ParseArgs(*e);
    return e;
  }

  ExprPtr ParseFilterChain(ExprPtr node, bool first_without_pipe = false) {
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

  bool StartsPrimary() const {
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

  ExprPtr ParseFilterExpr(ExprPtr node) {
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

  std::vector<Token> toks_;
  const ParseConfig& config_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Result<std::shared_ptr<const Program>> ParseProgram(std::string source, const ParseConfig& config) {
  auto program = std::make_shared<Program>();
  program->source = std::move(source);
  try {
    Lexer lexer(program->source, config);
    Parser parser(lexer.Run(), config);
    program->body = parser.ParseTemplate();
  } catch (const SyntaxError& e) {
    return e.status;
  } catch (const std::bad_alloc&) {
    return LimitExceeded("template: out of memory while parsing");
  } catch (const std::exception& e) {
    return Internal(std::string("template: unexpected error while parsing: ") + e.what());
  }
  return std::shared_ptr<const Program>(std::move(program));
}

}  // namespace airlock::tmpl::internal
