// Encoded text as the detectors read it (private to the policy module). Data written in an
// encoding a model or a browser reads through (alice%40example.com, alice&#64;example.com,
// alice\u0040example.com, alice=40example.com, a base64 data: URL of a text type) is decoded into
// a shadow text, which the detectors scan in addition to the text itself; every byte of the shadow
// maps back to the original bytes it came from, so that redaction cuts the encoded original.
// Decoded, in one left-to-right pass per round:
//   * percent-encoding %XX (any two hex digits) and %uXXXX, and '+' between two digits (a
//     form-encoded blank);
//   * HTML character references: decimal &#64; and hexadecimal &#x40; (the ';' optional, as
//     browsers read them; any number of leading zeros up to 32 digits in all, as in
//     &#x00000040;) and the named references of characters that make up the detected
//     formats (&commat; &period; &hyphen; &dash; &lowbar; &plus; &colon; &sol; &bsol; &num;
//     &nbsp; &amp; &percnt; &equals; &lt; &gt; &quot; &apos; ...);
//   * backslash escapes of JSON, JavaScript, Python and C strings: \uXXXX (surrogate pairs
//     joined), \UXXXXXXXX, \u{X...} (up to 32 digits, leading zeros included), \xHH, three octal
//     digits \100, \n \r \t \/ \\ \" \' (JSON text inside a JSON string, as in tool-call
//     arguments);
//   * quoted-printable =XX (two upper-case hex digits) and soft line breaks (= at the end of a
//     line);
//   * the base64 payload of a data: URL whose media type is text/* (data:text/plain;base64,...),
//     up to kMaxBase64Payload bytes; each decoded group of 3 bytes maps to its 4 encoded ones.
// Quoted-printable is read in a second shadow, alone (see DecodeFamily).
// Nested encodings (%2540, &amp;#64;, \\u0040) are undone by repeating the pass, at most
// kDecodeRounds times. Each round's output is no longer than its input, so work and memory are
// linear in the text. A reference whose value is past U+10FFFF, or whose digits run longer than 32,
// stays as it is. Not decoded: base64 outside a text data: URL, other media types, punycode,
// ROT13 and any encoding that needs a key word to be recognized.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::policy::internal {

inline constexpr int kDecodeRounds = 3;

// Quoted-printable is decoded into a shadow of its own: its "=XX" would otherwise eat the digits
// of "q=4111+1111..." before the form-encoded blanks are read.
enum class DecodeFamily { kWeb, kQuotedPrintable };
inline constexpr std::size_t kMaxBase64Payload = 64 << 10;

class DecodedText {
 public:
  // Decodes `in` into this object. Returns false, leaving text() empty, when nothing in `in`
  // decodes (then there is no shadow text to scan).
  bool Assign(std::string_view in, DecodeFamily family);

  const std::string& text() const { return text_; }
  // The original byte range covered by decoded bytes [begin, end) (begin < end).
  std::size_t OriginalBegin(std::size_t begin) const;
  std::size_t OriginalEnd(std::size_t end) const;

  // One decoded stretch: output bytes [out_begin, out_end) come from input bytes
  // [in_begin, in_end); bytes between edits are copied one to one.
  struct Edit {
    std::size_t out_begin, out_end, in_begin, in_end;
  };

 private:
  std::string text_;
  std::vector<std::vector<Edit>> rounds_;  // the edits of each round, first round first
};

// Cheap test: whether `in` holds a byte that can start an encoding ('%', '&', '\\', '=', '+',
// or "data:"). Text without one has no shadow.
bool MayHoldEncoding(std::string_view in);

}  // namespace airlock::policy::internal
