// Internal string helpers of the template module: Python float formatting, UTF-8 code point
// indexing, and a builder that keeps InputSpan marks through concatenation and slicing.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "template/value.h"

namespace airlock::tmpl::internal {

// Python repr(float): shortest round-trip digits, "1.0", "1e-05", "1.5e+16", "inf", "nan".
std::string FormatPythonFloat(double f);

bool IsAscii(std::string_view s);
// Byte offsets of each code point start plus s.size() at the end (size = code points + 1).
// Invalid UTF-8 bytes count as one code point each.
std::vector<std::size_t> CodePointOffsets(std::string_view s);
std::size_t CodePointCount(std::string_view s);

// The bytes [begin, end) of `s` with its input marks.
StringData Substr(const StringData& s, std::size_t begin, std::size_t end);

// Concatenates strings keeping input marks.
class StrBuilder {
 public:
  void Append(const StringData& s) { Append(s, 0, s.text.size()); }
  void Append(const StringData& s, std::size_t begin, std::size_t end);
  void AppendText(std::string_view t, bool is_input = false);
  std::size_t size() const { return data_.text.size(); }
  StringData Take() { return std::move(data_); }
  const StringData& data() const { return data_; }

 private:
  void Mark(std::size_t begin, std::size_t end);
  StringData data_;
};

}  // namespace airlock::tmpl::internal
