#include "template/internal/strings.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

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
