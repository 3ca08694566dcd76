// Decoding the arguments of the text opcodes (STRING, UNICODE, INT, LONG) as CPython does, and
// the hex/base64 decoders that find pickles embedded in literals.
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

#include "core/text.h"
#include "formats/internal/pickle_vm.h"

namespace airlock::formats::pickle::internal {

std::string Hex2(std::uint8_t c) {
  static const char* kDigits = "0123456789abcdef";
  return std::string("0x") + kDigits[c >> 4] + kDigits[c & 15];
}

void AppendUtf8(std::string& out, std::uint32_t cp) {
  core::AppendUtf8(cp, out);  // surrogates kept, as Python's surrogatepass writes them
}

bool ValidUtf8(std::string_view s, bool surrogatepass) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n;
    std::uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff))) return false;
    if (!surrogatepass && cp >= 0xd800 && cp <= 0xdfff) return false;
    i += n + 1;
  }
  return true;
}

std::string Printable(std::string_view s, std::size_t max) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && out.size() < max; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += Hex2(c).substr(2);
    }
  }
  if (out.size() >= max) out += "...";
  return out;
}

bool Machine::DecodeHex(std::string_view s, std::string& out) {
  std::string clean;
  for (char c : s) {
    if (c == ' ' || c == '\n' || c == '\t') continue;
    if (!IsHex(c)) return false;
    clean += c;
  }
  if (clean.size() % 2 != 0) return false;
  for (std::size_t k = 0; k < clean.size(); k += 2) {
    out += static_cast<char>(HexVal(clean[k]) * 16 + HexVal(clean[k + 1]));
  }
  return true;
}

bool Machine::DecodeBase64(std::string_view s, std::string& out) {
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+' || c == '-')
      v = 62;
    else if (c == '/' || c == '_')
      v = 63;
    else if (c == '=')
      break;
    else if (c == '\n' || c == '\r' || c == ' ')
      continue;
    else
      return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return true;
}

// Python's bytes escape decoding used by STRING.
std::string Machine::DecodeEscape(std::string_view s) {
  std::string out;
  for (std::size_t k = 0; k < s.size(); ++k) {
    char c = s[k];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++k >= s.size()) Corrupt("Trailing \\ in string");
    c = s[k];
    switch (c) {
      case '\n':
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 't':
        out += '\t';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 'v':
        out += '\v';
        break;
      case 'a':
        out += '\a';
        break;
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7': {
        int v = c - '0';
        for (int d = 0; d < 2 && k + 1 < s.size() && s[k + 1] >= '0' && s[k + 1] <= '7'; ++d) {
          v = v * 8 + (s[++k] - '0');
        }
        out += static_cast<char>(v & 0xff);
        break;
      }
      case 'x':
        if (k + 2 < s.size() && IsHex(s[k + 1]) && IsHex(s[k + 2])) {
          out += static_cast<char>(HexVal(s[k + 1]) * 16 + HexVal(s[k + 2]));
          k += 2;
        } else {
          Corrupt("invalid \\x escape in STRING");
        }
        break;
      default:
        out += '\\';
        out += c;
        break;
    }
  }
  return out;
}

// raw-unicode-escape decoding used by UNICODE: only \uXXXX and \UXXXXXXXX (after an odd run
// of backslashes) are escapes; every other byte is Latin-1.
std::string Machine::DecodeRawUnicodeEscape(std::string_view s) {
  std::string out;
  std::size_t k = 0;
  while (k < s.size()) {
    auto c = static_cast<unsigned char>(s[k]);
    if (c != '\\') {
      AppendUtf8(out, c);
      ++k;
      continue;
    }
    std::size_t run = 0;
    while (k < s.size() && s[k] == '\\') {
      ++run;
      ++k;
    }
    bool escape = (run % 2 == 1) && k < s.size() && (s[k] == 'u' || s[k] == 'U');
    for (std::size_t r = 0; r < run - (escape ? 1 : 0); ++r) out += '\\';
    if (!escape) continue;
    int digits = s[k] == 'u' ? 4 : 8;
    ++k;
    std::uint32_t cp = 0;
    for (int d = 0; d < digits; ++d) {
      if (k >= s.size() || !IsHex(s[k])) {
        Corrupt(digits == 4 ? "truncated \\uXXXX escape" : "truncated \\UXXXXXXXX escape");
      }
      cp = cp * 16 + static_cast<std::uint32_t>(HexVal(s[k++]));
    }
    if (cp > 0x10ffff) Corrupt("\\Uxxxxxxxx out of range");
    AppendUtf8(out, cp);
  }
  return out;
}

// PyLong_FromString(s, NULL, 10) on a C string (stops at an embedded NUL): optional
// whitespace and sign, digits with single underscores between them, trailing whitespace.
std::optional<std::int64_t> Machine::ParseDecimal(std::string_view line) {
  std::size_t nul = line.find('\0');
  if (nul != std::string_view::npos) line = line.substr(0, nul);
  std::size_t k = 0;
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
  while (k < line.size() && space(line[k])) ++k;
  bool neg = false;
  if (k < line.size() && (line[k] == '+' || line[k] == '-')) neg = line[k++] == '-';
  std::size_t digits = 0;
  unsigned __int128 v = 0;
  bool overflow = false;
  while (k < line.size()) {
    char c = line[k];
    if (c >= '0' && c <= '9') {
      v = v * 10 + static_cast<unsigned>(c - '0');
      if (v > (static_cast<unsigned __int128>(1) << 64)) overflow = true;
      ++digits;
      ++k;
    } else if (c == '_' && digits > 0 && k + 1 < line.size() && line[k + 1] >= '0' &&
               line[k + 1] <= '9') {
      ++k;
    } else {
      break;
    }
  }
  while (k < line.size() && space(line[k])) ++k;
  if (digits == 0 || k != line.size()) return std::nullopt;
  if (overflow || v > static_cast<unsigned __int128>(INT64_MAX)) {
    return neg ? std::optional<std::int64_t>(INT64_MIN) : std::optional<std::int64_t>(INT64_MAX);
  }
  return neg ? -static_cast<std::int64_t>(v) : static_cast<std::int64_t>(v);
}

}  // namespace airlock::formats::pickle::internal
