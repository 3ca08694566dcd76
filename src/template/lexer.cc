// The lexer of the Jinja subset used by chat templates. Whitespace
// control follows Jinja's lexer: "-" strips, "+" keeps, trim_blocks eats the newline after a
// block/comment tag, lstrip_blocks removes indentation before one, and one trailing newline of
// the template is dropped unless keep_trailing_newline.
#include "template/internal/parser.h"

namespace airlock::tmpl::internal::parse {

std::vector<Token> Lexer::Run() {
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

void Lexer::EmitText(std::size_t begin, std::size_t end) {
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

void Lexer::StripLastText(bool all) {
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

void Lexer::AfterTag(std::size_t& pos, bool strip_after, bool keep_after, bool block) {
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

std::size_t Lexer::LexRaw(std::size_t tag, std::size_t p) {
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
std::size_t Lexer::LexTag(std::size_t p, bool block) {
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

std::size_t Lexer::LexNumber(std::size_t p) {
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

std::size_t Lexer::LexString(std::size_t p) {
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

}  // namespace airlock::tmpl::internal::parse
