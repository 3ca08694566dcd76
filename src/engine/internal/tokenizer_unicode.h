// Unicode helpers for the tokenizers: lenient UTF-8 decoding (invalid bytes become U+FFFD, as
// llama.cpp does), re-encoding, GPT-2's byte <-> printable code point map, and the per-code-point
// classes the pre-tokenizer regexes are evaluated on. Categories come from PCRE2's Unicode tables,
// computed lazily per 256-code-point block. Thread-safety: all functions are safe to call
// concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::engine::internal {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Decodes `text` into code points. A byte that does not start a well-formed sequence (a stray
// continuation byte, a truncated sequence, 0xF8..0xFF) becomes U+FFFD and one byte is consumed;
// overlong forms are accepted, values above U+10FFFF become U+FFFD. Never fails.
void DecodeUtf8Lenient(std::string_view text, std::vector<uint32_t>* out);

// Appends the UTF-8 form of `cp` (U+FFFD for values above U+10FFFF).
void AppendUtf8(uint32_t cp, std::string* out);

// Length of the UTF-8 sequence a lead byte announces (1 for continuation/invalid bytes), the
// table llama.cpp uses to split text into "characters".
inline std::size_t Utf8SequenceLength(char lead) {
  static constexpr std::size_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[static_cast<uint8_t>(lead) >> 4];
}

// The collapsed byte a code point >= 128 stands for when a regex with \p{..} classes is run
// byte-wise: 0x0B for whitespace, 0xD1 number, 0xD2 letter, 0xD3 punctuation, 0xD4 mark,
// 0xD5 symbol, 0xD0 anything else.
inline constexpr uint8_t kCollapsedSpace = 0x0B;
inline constexpr uint8_t kCollapsedOther = 0xD0;
inline constexpr uint8_t kCollapsedNumber = 0xD1;
inline constexpr uint8_t kCollapsedLetter = 0xD2;
inline constexpr uint8_t kCollapsedPunct = 0xD3;
inline constexpr uint8_t kCollapsedMark = 0xD4;
inline constexpr uint8_t kCollapsedSymbol = 0xD5;
uint8_t CollapsedClass(uint32_t cp);

// Unicode White_Space (the list llama.cpp uses), ASCII included.
bool IsWhitespace(uint32_t cp);

// GPT-2 byte-level mapping: every byte to a printable code point and back.
uint32_t ByteToCodePoint(uint8_t byte);
// -1 when `cp` is not the image of a byte.
int CodePointToByte(uint32_t cp);
// The UTF-8 of ByteToCodePoint(byte), precomputed.
std::string_view ByteToUtf8(uint8_t byte);

}  // namespace airlock::engine::internal
