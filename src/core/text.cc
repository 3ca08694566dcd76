#include "core/text.h"

#include <cstdint>

namespace airlock::core {

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | ((cp >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace airlock::core

namespace airlock::core {
namespace {

// Length of the valid UTF-8 sequence at s[i] (1-4), or 0 when the bytes there are not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid). Sets `cp`.
std::size_t Utf8SequenceAt(std::string_view s, std::size_t i, char32_t& cp) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  std::size_t len = b0 < 0x80             ? 1
                    : (b0 & 0xE0) == 0xC0 ? 2
                    : (b0 & 0xF0) == 0xE0 ? 3
                    : (b0 & 0xF8) == 0xF0 ? 4
                                          : 0;
  if (len == 0 || i + len > s.size()) return 0;
  cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (std::size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr char32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool IsUnsafeCodePoint(char32_t cp) {
  return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

}  // namespace

// Escapes for TerminalSafe; `prose` keeps newlines, tabs and backslashes.
static std::string Neutralize(std::string_view s, bool prose) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    char32_t cp = 0;
    std::size_t len = Utf8SequenceAt(s, i, cp);
    if (len == 0) {  // not UTF-8: show the byte
      auto b = static_cast<unsigned char>(s[i]);
      out += "\\x";
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 15]);
      ++i;
      continue;
    }
    if (prose && (cp == '\\' || cp == '\n' || cp == '\t')) {
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\\') {
      out += "\\\\";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (IsUnsafeCodePoint(cp)) {
      if (cp < 0x80) {
        out += "\\x";
        out.push_back(kHex[cp >> 4]);
        out.push_back(kHex[cp & 15]);
      } else {
        out += "\\u";
        for (int shift = 12; shift >= 0; shift -= 4) out.push_back(kHex[(cp >> shift) & 15]);
      }
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string TerminalSafe(std::string_view s) { return Neutralize(s, /*prose=*/false); }

std::string TerminalSafeText(std::string_view s) { return Neutralize(s, /*prose=*/true); }

bool HasUnsafeTerminalText(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    char32_t cp = 0;
    std::size_t len = Utf8SequenceAt(s, i, cp);
    if (len == 0 || IsUnsafeCodePoint(cp)) return true;
    i += len;
  }
  return false;
}

}  // namespace airlock::core

namespace airlock::core {

std::string Base64Encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = (static_cast<std::uint8_t>(bytes[i]) << 16) |
                      (static_cast<std::uint8_t>(bytes[i + 1]) << 8) |
                      static_cast<std::uint8_t>(bytes[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    std::uint32_t v = static_cast<std::uint8_t>(bytes[i]) << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.append("==");
  } else if (rest == 2) {
    std::uint32_t v = (static_cast<std::uint8_t>(bytes[i]) << 16) |
                      (static_cast<std::uint8_t>(bytes[i + 1]) << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool EndsWithIgnoreCase(std::string_view s, std::string_view lower_suffix) {
  if (s.size() < lower_suffix.size()) return false;
  std::string_view tail = s.substr(s.size() - lower_suffix.size());
  for (std::size_t i = 0; i < tail.size(); ++i) {
    char c = tail[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower_suffix[i]) return false;
  }
  return true;
}

std::string QuoteName(std::string_view name, std::size_t max) {
  std::string out = "'";
  for (char c : name.substr(0, max)) {
    auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out + (name.size() > max ? "...'" : "'");
}

namespace {

// Walks a JSON text's brackets outside strings: Step returns the change in depth a character
// makes (+1, -1 or 0).
class JsonBracketWalker {
 public:
  int Step(char c) {
    if (in_string_) {
      if (escaped_) {
        escaped_ = false;
      } else if (c == '\\') {
        escaped_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
      return 0;
    }
    if (c == '"') in_string_ = true;
    if (c == '[' || c == '{') return 1;
    if (c == ']' || c == '}') return -1;
    return 0;
  }

 private:
  bool in_string_ = false;
  bool escaped_ = false;
};

}  // namespace

std::size_t JsonNestingDepth(std::string_view text, std::size_t limit) {
  JsonBracketWalker walker;
  std::size_t depth = 0, deepest = 0;
  for (char c : text) {
    const int step = walker.Step(c);
    if (step > 0 && ++depth > deepest) {
      deepest = depth;
      if (deepest > limit) return deepest;
    } else if (step < 0 && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

std::size_t JsonBracketedEnd(std::string_view text, std::size_t start) {
  JsonBracketWalker walker;
  std::size_t depth = 0;
  for (std::size_t i = start; i < text.size(); ++i) {
    const int step = walker.Step(text[i]);
    if (step > 0) {
      ++depth;
    } else if (step < 0 && depth > 0 && --depth == 0) {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

}  // namespace airlock::core
