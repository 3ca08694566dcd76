// Internal string helpers of the template module: Python float formatting, UTF-8 code point
// indexing, and a builder that keeps InputSpan marks through concatenation and slicing.
#pragma once

#include <cstddef>
#include <cstdint>
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

// Appends the UTF-8 encoding of a scalar value (the caller rejects surrogates and values above
// U+10FFFF; they become U+FFFD here).
void AppendUtf8(std::string& out, std::uint32_t cp);

// One backslash escape in a Jinja string literal, decoded exactly as Jinja does: its lexer turns
// non-ASCII characters into \x/\u/\U escapes (backslashreplace) and then applies Python's
// "unicode-escape" codec. So: \n \t \r \b \f \v \a \\ \' \" and backslash-newline; octal (1-3
// digits, up to \777); \xHH, \uHHHH, \UHHHHHHHH; \N{NAME} (Unicode character names and name
// aliases, case-insensitive: names via ICU, aliases from NameAliases.txt); any other escape is kept
// verbatim (backslash and the character, a non-ASCII character spelled as its backslashreplace
// escape).
struct DecodedEscape {
  enum class Kind {
    kText,   // `text` is what the escape stands for
    kError,  // Python refuses the literal (bad hex digits, unknown name, value above U+10FFFF);
             // also lone surrogates, which UTF-8 cannot carry: the template does not parse
  };
  Kind kind = Kind::kText;
  std::string text;        // decoded UTF-8 (kText) or the reason (kError)
  std::size_t length = 0;  // bytes of the source consumed, backslash included (>= 1)
  // True for escapes that spell a character by number or name (octal, \x, \u, \U, \N): the
  // forms obfuscation uses. `code_point` is then the character spelled.
  bool spelled = false;
  std::uint32_t code_point = 0;
};
// `s[pos]` must be a backslash.
DecodedEscape DecodeEscape(std::string_view s, std::size_t pos);

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
