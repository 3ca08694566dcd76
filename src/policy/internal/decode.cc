#include "policy/internal/decode.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "core/text.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace airlock::policy::internal {
namespace {

using Edit = DecodedText::Edit;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsUpperHex(char c) { return IsDigit(c) || (c >= 'A' && c <= 'F'); }

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Appends code point `cp` as UTF-8; false (nothing appended) for surrogates and values past
// U+10FFFF, which no text holds.
bool AppendUtf8(std::uint32_t cp, std::string* out) {
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
  core::AppendUtf8(cp, *out);
  return true;
}

// A run of digits of a numeric reference (&#...; \u{...}): leading zeros are read like any digit
// (browsers and JavaScript accept any number of them), but a run longer than this stays
// undecoded, so that what one reference can consume is bounded.
constexpr std::size_t kMaxReferenceDigits = 32;

// Reads the digits (base 10 or 16) of in[from, ...), at most kMaxReferenceDigits + 1 of them.
// Returns the end of the run; `*value` is the value, or kTooLarge past U+10FFFF (no overflow).
constexpr std::uint32_t kTooLarge = 0x110000;
std::size_t ReadDigitRun(std::string_view in, std::size_t from, bool hex, std::uint32_t* value) {
  std::uint32_t v = 0;
  std::size_t j = from;
  while (j < in.size() && j - from <= kMaxReferenceDigits) {
    int d = hex ? HexValue(in[j]) : (IsDigit(in[j]) ? in[j] - '0' : -1);
    if (d < 0) break;
    v = std::min<std::uint32_t>(v * (hex ? 16 : 10) + static_cast<std::uint32_t>(d), kTooLarge);
    ++j;
  }
  *value = v;
  return j;
}

// Named HTML references of the characters detected formats are made of (HTML5 names; the ';' is
// required, as for every name a browser reads without one only in legacy contexts).
constexpr std::pair<std::string_view, std::string_view> kNamedReferences[] = {
    {"commat", "@"},   {"period", "."}, {"hyphen", "-"}, {"dash", "-"},     {"lowbar", "_"},
    {"UnderBar", "_"}, {"plus", "+"},   {"colon", ":"},  {"sol", "/"},      {"bsol", "\\"},
    {"num", "#"},      {"nbsp", " "},   {"ensp", " "},   {"emsp", " "},     {"thinsp", " "},
    {"amp", "&"},      {"AMP", "&"},    {"percnt", "%"}, {"equals", "="},   {"lt", "<"},
    {"gt", ">"},       {"quot", "\""},  {"apos", "'"},   {"excl", "!"},     {"quest", "?"},
    {"lpar", "("},     {"rpar", ")"},   {"comma", ","},  {"semi", ";"},     {"verbar", "|"},
    {"vert", "|"},     {"tilde", "~"},  {"Tab", "\t"},   {"NewLine", "\n"}, {"minus", "-"},
    {"ndash", "-"},    {"mdash", "-"},  {"dollar", "$"}, {"ast", "*"},      {"midast", "*"}};

// Decoders for one construct starting at in[i]. Each returns the bytes consumed (0: none here)
// and appends what they decode to `out`.

std::size_t DecodePercent(std::string_view in, std::size_t i, std::string* out) {
  if (i + 5 < in.size() && (in[i + 1] == 'u' || in[i + 1] == 'U')) {  // %u0040 (IIS, escape())
    std::uint32_t cp = 0;
    std::size_t k = i + 2;
    for (; k < i + 6 && HexValue(in[k]) >= 0; ++k) cp = cp * 16 + HexValue(in[k]);
    if (k == i + 6 && cp != 0 && AppendUtf8(cp, out)) return 6;
    return 0;
  }
  if (i + 2 >= in.size()) return 0;
  int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
  if (hi < 0 || lo < 0) return 0;
  out->push_back(static_cast<char>(hi * 16 + lo));
  return 3;
}

std::size_t DecodeCharacterReference(std::string_view in, std::size_t i, std::string* out) {
  std::size_t j = i + 1;
  if (j < in.size() && in[j] == '#') {
    ++j;
    bool hex = j < in.size() && (in[j] == 'x' || in[j] == 'X');
    if (hex) ++j;
    std::size_t start = j;
    std::uint32_t cp = 0;
    j = ReadDigitRun(in, start, hex, &cp);
    if (j == start || j - start > kMaxReferenceDigits) return 0;
    if (j < in.size() && in[j] == ';') ++j;
    if (cp == 0) return 0;
    return AppendUtf8(cp, out) ? j - i : 0;
  }
  std::size_t start = j;
  while (j < in.size() && j - start <= 8 &&
         ((in[j] >= 'a' && in[j] <= 'z') || (in[j] >= 'A' && in[j] <= 'Z')))
    ++j;
  if (j == start || j >= in.size() || in[j] != ';') return 0;
  std::string_view name = in.substr(start, j - start);
  for (const auto& [n, value] : kNamedReferences) {
    if (n == name) {
      out->append(value);
      return j + 1 - i;
    }
  }
  return 0;
}

std::size_t DecodeBackslash(std::string_view in, std::size_t i, std::string* out) {
  if (i + 1 >= in.size()) return 0;
  char c = in[i + 1];
  auto hex_run = [&](std::size_t from, std::size_t count, std::uint32_t* value) {
    if (from + count > in.size()) return false;
    std::uint32_t v = 0;
    for (std::size_t k = from; k < from + count; ++k) {
      int h = HexValue(in[k]);
      if (h < 0) return false;
      v = v * 16 + static_cast<std::uint32_t>(h);
    }
    *value = v;
    return true;
  };
  switch (c) {
    case 'u': {
      std::uint32_t cp = 0;
      if (i + 2 < in.size() && in[i + 2] == '{') {  // \u{1F600}
        std::size_t j = ReadDigitRun(in, i + 3, true, &cp);
        if (j == i + 3 || j - (i + 3) > kMaxReferenceDigits || j >= in.size() || in[j] != '}')
          return 0;
        return cp != 0 && AppendUtf8(cp, out) ? j + 1 - i : 0;
      }
      if (!hex_run(i + 2, 4, &cp) || cp == 0) return 0;
      if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate: join it with "\uDC00".."\uDFFF"
        std::uint32_t low = 0;
        if (i + 12 <= in.size() && in[i + 6] == '\\' && in[i + 7] == 'u' &&
            hex_run(i + 8, 4, &low) && low >= 0xDC00 && low <= 0xDFFF)
          return AppendUtf8(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00), out) ? 12 : 0;
        return 0;
      }
      return AppendUtf8(cp, out) ? 6 : 0;
    }
    case 'U': {  // \U00000040: eight hex digits (Python, C)
      std::uint32_t cp = 0;
      if (!hex_run(i + 2, 8, &cp) || cp == 0) return 0;
      return AppendUtf8(cp, out) ? 10 : 0;
    }
    case 'x': {
      std::uint32_t v = 0;
      if (!hex_run(i + 2, 2, &v) || v == 0) return 0;
      out->push_back(static_cast<char>(v));
      return 4;
    }
    case '0':
    case '1':
    case '2':
    case '3': {  // \100: three octal digits (C, Python, shell)
      if (i + 3 >= in.size()) return 0;
      char d1 = in[i + 2], d2 = in[i + 3];
      if (d1 < '0' || d1 > '7' || d2 < '0' || d2 > '7') return 0;
      int v = (c - '0') * 64 + (d1 - '0') * 8 + (d2 - '0');
      if (v == 0) return 0;
      out->push_back(static_cast<char>(v));
      return 4;
    }
    case 'n':
      out->push_back('\n');
      return 2;
    case 'r':
      out->push_back('\r');
      return 2;
    case 't':
      out->push_back('\t');
      return 2;
    case '/':
    case '\\':
    case '"':
    case '\'':
      out->push_back(c);
      return 2;
    default:
      return 0;
  }
}

std::size_t DecodeQuotedPrintable(std::string_view in, std::size_t i, std::string* out) {
  if (i + 1 < in.size() &&
      (in[i + 1] == '\n' || (in[i + 1] == '\r' && i + 2 < in.size() && in[i + 2] == '\n')))
    return in[i + 1] == '\n' ? 2 : 3;  // a soft line break: nothing
  if (i + 2 >= in.size() || !IsUpperHex(in[i + 1]) || !IsUpperHex(in[i + 2])) return 0;
  out->push_back(static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
  return 3;
}

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || IsDigit(c) || c == '+' || c == '/' ||
         c == '-' || c == '_';
}
int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (IsDigit(c)) return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  return 63;  // '/' or '_'
}

// The ':' of "data:" at in[colon] (any case): if a text/* media type with ";base64," follows,
// copies the media type and the ',' to `out`, decodes the payload with one edit per group of 4
// characters, and returns the end of the payload; 0 otherwise.
std::size_t DecodeDataUrl(std::string_view in, std::size_t colon, std::string* out,
                          std::vector<Edit>* edits) {
  auto starts_with = [&](std::size_t at, std::string_view word) {
    if (at + word.size() > in.size()) return false;
    for (std::size_t k = 0; k < word.size(); ++k)
      if (Lower(in[at + k]) != word[k]) return false;
    return true;
  };
  if (colon < 4 || !starts_with(colon - 4, "data") || !starts_with(colon + 1, "text/")) return 0;
  // The media type and its parameters end at ','; ";base64" must be the last parameter.
  std::size_t comma = colon + 6;
  while (comma < in.size() && comma - colon < 256 && in[comma] != ',' &&
         static_cast<unsigned char>(in[comma]) > ' ')
    ++comma;
  if (comma >= in.size() || in[comma] != ',' || comma < colon + 13 ||
      !starts_with(comma - 7, ";base64"))
    return 0;
  std::size_t start = comma + 1, end = start;
  while (end < in.size() && end - start < kMaxBase64Payload && IsBase64Char(in[end])) ++end;
  if (end - start < 4) return 0;
  // The media type without ";base64": a later round must read the decoded payload as text, not
  // decode it as base64 again (which mangled a payload that starts with data).
  const std::size_t prefix_begin = out->size();
  out->append(in.substr(colon, comma - 7 - colon));
  out->push_back(',');
  edits->push_back({prefix_begin, out->size(), colon, start});
  std::size_t k = start;
  for (; k + 4 <= end; k += 4) {
    std::uint32_t v = 0;
    for (std::size_t m = 0; m < 4; ++m)
      v = v << 6 | static_cast<std::uint32_t>(Base64Value(in[k + m]));
    std::size_t out_begin = out->size();
    out->push_back(static_cast<char>(v >> 16));
    out->push_back(static_cast<char>((v >> 8) & 0xFF));
    out->push_back(static_cast<char>(v & 0xFF));
    edits->push_back({out_begin, out->size(), k, k + 4});
  }
  // A final group of 2 or 3 characters, with its '=' padding.
  std::size_t rest = end - k;
  if (rest < 2) return k;
  std::uint32_t v = 0;
  for (std::size_t m = 0; m < 4; ++m)
    v = v << 6 | (m < rest ? static_cast<std::uint32_t>(Base64Value(in[k + m])) : 0);
  std::size_t out_begin = out->size();
  out->push_back(static_cast<char>(v >> 16));
  if (rest == 3) out->push_back(static_cast<char>((v >> 8) & 0xFF));
  std::size_t consumed = end;
  while (consumed < in.size() && consumed - end < 4 - rest && in[consumed] == '=') ++consumed;
  edits->push_back({out_begin, out->size(), k, consumed});
  return consumed;
}

// Index of the first byte at or after `i` that is one of kTargets, or in.size(). Sixteen bytes
// at a time where SSE2 is there: most text has none, and this runs on every text the detectors
// see.
template <char... kTargets>
std::size_t NextOf(std::string_view in, std::size_t i) {
  const char* p = in.data();
  const std::size_t n = in.size();
#ifdef __SSE2__
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    __m128i hit = _mm_setzero_si128();
    ((hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, _mm_set1_epi8(kTargets)))), ...);
    if (int mask = _mm_movemask_epi8(hit)) return i + static_cast<std::size_t>(__builtin_ctz(mask));
  }
#endif
  for (; i < n; ++i)
    if (((p[i] == kTargets) || ...)) return i;
  return n;
}

// What can start a construct of each family (the ':' of "data:").
std::size_t NextWebStart(std::string_view in, std::size_t i) {
  return NextOf<'%', '&', '\\', '+', ':'>(in, i);
}
std::size_t NextQuotedPrintableStart(std::string_view in, std::size_t i) {
  return NextOf<'='>(in, i);
}

// One round over `in`: appends the decoded text to `out` and its edits to `edits`. Returns
// whether anything decoded.
bool DecodeRound(std::string_view in, DecodeFamily family, std::string* out,
                 std::vector<Edit>* edits) {
  const bool qp = family == DecodeFamily::kQuotedPrintable;
  out->clear();
  edits->clear();
  std::string piece;
  std::size_t i = 0, copied = 0;  // in[copied, i) is yet to be copied to `out`
  auto flush = [&] {
    if (copied == 0) out->reserve(in.size());  // nothing is built for text with nothing decoded
    out->append(in.substr(copied, i - copied));
    copied = i;
  };
  while (i < in.size()) {
    i = qp ? NextQuotedPrintableStart(in, i) : NextWebStart(in, i);
    if (i >= in.size()) break;
    char c = in[i];
    std::size_t used = 0;
    piece.clear();
    switch (c) {
      case '%':
        used = DecodePercent(in, i, &piece);
        break;
      case '&':
        used = DecodeCharacterReference(in, i, &piece);
        break;
      case '\\':
        used = DecodeBackslash(in, i, &piece);
        break;
      case '=':
        used = DecodeQuotedPrintable(in, i, &piece);
        break;
      case '+':
        // A form-encoded blank between digits ("4111+1111+..."); "+86" or "a+b" stay.
        if (i > 0 && i + 1 < in.size() && IsDigit(in[i - 1]) && IsDigit(in[i + 1])) {
          piece = " ";
          used = 1;
        }
        break;
      case ':': {
        if (i < 4 || Lower(in[i - 4]) != 'd') break;  // not "data:"
        flush();
        if (std::size_t end = DecodeDataUrl(in, i, out, edits)) {
          i = copied = end;
          continue;
        }
        break;
      }
      default:
        break;
    }
    if (used == 0) {
      ++i;
      continue;
    }
    flush();
    std::size_t out_begin = out->size();
    out->append(piece);
    edits->push_back({out_begin, out->size(), i, i + used});
    i = copied = i + used;
  }
  if (edits->empty()) return false;
  flush();
  return true;
}

std::size_t MapBegin(const std::vector<Edit>& edits, std::size_t begin) {
  // The last edit starting at or before `begin` (an edit that decoded to nothing lies before it).
  auto it = std::upper_bound(edits.begin(), edits.end(), begin,
                             [](std::size_t pos, const Edit& e) { return pos < e.out_begin; });
  if (it == edits.begin()) return begin;
  const Edit& e = *(it - 1);
  if (begin < e.out_end) return e.in_begin;
  return e.in_end + (begin - e.out_end);
}

std::size_t MapEnd(const std::vector<Edit>& edits, std::size_t end) {
  std::size_t last = end - 1;
  auto it = std::upper_bound(edits.begin(), edits.end(), last,
                             [](std::size_t pos, const Edit& e) { return pos < e.out_begin; });
  if (it == edits.begin()) return end;
  const Edit& e = *(it - 1);
  if (last < e.out_end) return e.in_end;
  return e.in_end + (last - e.out_end) + 1;
}

}  // namespace

bool MayHoldEncoding(std::string_view in) {
  return NextOf<'%', '&', '\\', '=', '+', ':'>(in, 0) < in.size();
}

namespace {
bool MayHold(std::string_view in, DecodeFamily family) {
  if (family == DecodeFamily::kQuotedPrintable) return in.find('=') != std::string_view::npos;
  return NextWebStart(in, 0) < in.size();
}
}  // namespace

bool DecodedText::Assign(std::string_view in, DecodeFamily family) {
  text_.clear();
  rounds_.clear();
  if (!MayHold(in, family)) return false;
  std::string current(in), next;
  for (int round = 0; round < kDecodeRounds; ++round) {
    std::vector<Edit> edits;
    if (!DecodeRound(current, family, &next, &edits)) break;
    rounds_.push_back(std::move(edits));
    current.swap(next);
    if (!MayHold(current, family)) break;
  }
  if (rounds_.empty()) return false;
  text_ = std::move(current);
  return true;
}

std::size_t DecodedText::OriginalBegin(std::size_t begin) const {
  for (auto it = rounds_.rbegin(); it != rounds_.rend(); ++it) begin = MapBegin(*it, begin);
  return begin;
}

std::size_t DecodedText::OriginalEnd(std::size_t end) const {
  for (auto it = rounds_.rbegin(); it != rounds_.rend(); ++it) end = MapEnd(*it, end);
  return end;
}

}  // namespace airlock::policy::internal
