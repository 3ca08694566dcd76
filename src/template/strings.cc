#include "template/internal/strings.h"

#include <unicode/uchar.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/text.h"

namespace airlock::tmpl::internal {

std::string FormatPythonFloat(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool negative = !sci.empty() && sci[0] == '-';
  if (negative) sci.erase(0, 1);
  std::size_t epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  int exp = std::atoi(sci.c_str() + epos + 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits.push_back(c);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = negative ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      std::string ip = digits.substr(0, std::min<std::size_t>(digits.size(), std::size_t(exp) + 1));
      while (ip.size() < std::size_t(exp) + 1) ip.push_back('0');
      std::string fp =
          digits.size() > std::size_t(exp) + 1 ? digits.substr(std::size_t(exp) + 1) : "0";
      out += ip + "." + fp;
    } else {
      out += "0." + std::string(std::size_t(-exp - 1), '0') + digits;
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += e;
  }
  return out;
}

bool IsAscii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

namespace {
std::size_t SeqLen(std::string_view s, std::size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) return 1;
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  return n;
}
}  // namespace

std::vector<std::size_t> CodePointOffsets(std::string_view s) {
  std::vector<std::size_t> out;
  out.reserve(s.size() + 1);
  for (std::size_t i = 0; i < s.size(); i += SeqLen(s, i)) out.push_back(i);
  out.push_back(s.size());
  return out;
}

std::size_t CodePointCount(std::string_view s) {
  if (IsAscii(s)) return s.size();
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); i += SeqLen(s, i)) ++n;
  return n;
}

void AppendUtf8(std::string& out, std::uint32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  core::AppendUtf8(cp, out);
}

namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes one UTF-8 sequence at s[i] (invalid bytes decode as themselves, one byte each).
std::uint32_t CodePointAt(std::string_view s, std::size_t i, std::size_t* len) {
  std::size_t n = SeqLen(s, i);
  *len = n;
  auto b = [&](std::size_t k) { return std::uint32_t(static_cast<unsigned char>(s[i + k])); };
  if (n == 1) return b(0);
  if (n == 2) return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
  if (n == 3) return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

// Python's unicodedata lookup for \N{...}: character names (algorithmic ones such as
// "CJK UNIFIED IDEOGRAPH-4E00" and Hangul syllables included) and every name alias, matched
// case-insensitively; not ICU's extended "<control-0000>" forms, which Python refuses.
bool LookupCharacterName(std::string_view name, std::uint32_t* cp) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x80 || u < 0x20 || c == '<' || c == '>') return false;
  }
  std::string z(name);
  for (UCharNameChoice choice : {U_UNICODE_CHAR_NAME, U_CHAR_NAME_ALIAS}) {
    UErrorCode err = U_ZERO_ERROR;
    UChar32 found = u_charFromName(choice, z.c_str(), &err);
    if (U_SUCCESS(err) && found >= 0) {
      *cp = std::uint32_t(found);
      return true;
    }
  }
  // Every alias type of NameAliases.txt (control, abbreviation, figment, alternate), which
  // Python accepts and ICU does not; matched case-insensitively like the names.
  struct Alias {
    const char* name;
    std::uint32_t code_point;
  };
  static constexpr Alias kAliases[] = {
#include "name_aliases.inc"
  };
  for (const Alias& a : kAliases) {
    std::string_view n(a.name);
    if (n.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; same && i < n.size(); ++i)
      same = std::toupper(static_cast<unsigned char>(n[i])) ==
             std::toupper(static_cast<unsigned char>(name[i]));
    if (same) {
      *cp = a.code_point;
      return true;
    }
  }
  return false;
}

}  // namespace

DecodedEscape DecodeEscape(std::string_view s, std::size_t pos) {
  DecodedEscape out;
  auto fail = [&](std::string why, std::size_t length) {
    out.kind = DecodedEscape::Kind::kError;
    out.text = std::move(why);
    out.length = length;
    return out;
  };
  auto spelled = [&](std::uint32_t cp, std::size_t length) {
    if (cp > 0x10FFFF) return fail("escape above U+10FFFF", length);
    if (cp >= 0xD800 && cp <= 0xDFFF) return fail("escape spells a lone surrogate", length);
    out.spelled = true;
    out.code_point = cp;
    AppendUtf8(out.text, cp);
    out.length = length;
    return out;
  };
  if (pos + 1 >= s.size()) return fail("backslash at the end of the literal", 1);
  char e = s[pos + 1];
  out.length = 2;
  switch (e) {
    case 'n':
      out.text = "\n";
      return out;
    case 't':
      out.text = "\t";
      return out;
    case 'r':
      out.text = "\r";
      return out;
    case 'b':
      out.text = "\b";
      return out;
    case 'f':
      out.text = "\f";
      return out;
    case 'v':
      out.text = "\v";
      return out;
    case 'a':
      out.text = "\a";
      return out;
    case '\\':
      out.text = "\\";
      return out;
    case '\'':
      out.text = "'";
      return out;
    case '"':
      out.text = "\"";
      return out;
    case '\n':  // line continuation
      return out;
    case '\r':  // Jinja normalizes \r\n and \r to \n before decoding
      if (pos + 2 < s.size() && s[pos + 2] == '\n') out.length = 3;
      return out;
    case 'x':
    case 'u':
    case 'U': {
      std::size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
      std::uint32_t cp = 0;
      for (std::size_t k = 0; k < digits; ++k) {
        std::size_t at = pos + 2 + k;
        int h = at < s.size() ? HexDigit(s[at]) : -1;
        if (h < 0)
          return fail("truncated \\" + std::string(1, e) + " escape (needs " +
                          std::to_string(digits) + " hex digits)",
                      2 + k);
        if (cp > 0x10FFFF) return fail("escape above U+10FFFF", 2 + k);
        cp = cp * 16 + std::uint32_t(h);
      }
      return spelled(cp, 2 + digits);
    }
    case 'N': {
      if (pos + 2 >= s.size() || s[pos + 2] != '{') return fail("malformed \\N escape", 2);
      // Names are spelled with letters, digits, spaces and hyphens only: stopping at anything
      // else keeps the search inside the literal (Python would not find such a name either).
      std::size_t close = pos + 3;
      while (close < s.size() && close - pos < 300 &&
             (std::isalnum(static_cast<unsigned char>(s[close])) || s[close] == ' ' ||
              s[close] == '-'))
        ++close;
      if (close >= s.size() || s[close] != '}') return fail("malformed \\N escape", 2);
      std::string_view name = s.substr(pos + 3, close - pos - 3);
      std::uint32_t cp = 0;
      if (!LookupCharacterName(name, &cp))
        return fail("unknown Unicode character name in \\N escape", close + 1 - pos);
      return spelled(cp, close + 1 - pos);
    }
    default:
      break;
  }
  if (e >= '0' && e <= '7') {
    std::uint32_t cp = std::uint32_t(e - '0');
    std::size_t len = 2;
    while (len < 4 && pos + len < s.size() && s[pos + len] >= '0' && s[pos + len] <= '7')
      cp = cp * 8 + std::uint32_t(s[pos + len++] - '0');
    return spelled(cp, len);
  }
  std::size_t char_len = 1;
  std::uint32_t cp = CodePointAt(s, pos + 1, &char_len);
  out.length = 1 + char_len;
  if (cp < 0x80) {  // unknown escape: Python keeps it (with a DeprecationWarning)
    out.text.assign(s.substr(pos, 2));
    return out;
  }
  // A backslash before a non-ASCII character: Jinja's backslashreplace step has turned the
  // character into "\\xe9"/"\\u4e2d"/"\\U0001f600", so the codec reads an escaped backslash
  // followed by the escape's letters as plain text.
  char buf[16];
  if (cp < 0x100)
    std::snprintf(buf, sizeof buf, "x%02x", unsigned(cp));
  else if (cp < 0x10000)
    std::snprintf(buf, sizeof buf, "u%04x", unsigned(cp));
  else
    std::snprintf(buf, sizeof buf, "U%08x", unsigned(cp));
  out.text = "\\";
  out.text += buf;
  return out;
}

StringData Substr(const StringData& s, std::size_t begin, std::size_t end) {
  StrBuilder b;
  b.Append(s, begin, end);
  return b.Take();
}

void StrBuilder::Mark(std::size_t begin, std::size_t end) {
  if (begin >= end) return;
  auto& v = data_.input;
  if (!v.empty() && v.back().end == begin)
    v.back().end = end;
  else
    v.push_back({begin, end});
}

void StrBuilder::Append(const StringData& s, std::size_t begin, std::size_t end) {
  end = std::min(end, s.text.size());
  if (begin >= end) return;
  std::size_t base = data_.text.size();
  data_.text.append(s.text, begin, end - begin);
  for (const InputSpan& span : s.input) {
    std::size_t b = std::max(span.begin, begin), e = std::min(span.end, end);
    if (b < e) Mark(base + b - begin, base + e - begin);
  }
}

void StrBuilder::AppendText(std::string_view t, bool is_input) {
  std::size_t base = data_.text.size();
  data_.text.append(t);
  if (is_input) Mark(base, data_.text.size());
}

}  // namespace airlock::tmpl::internal
