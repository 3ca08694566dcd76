// Pre-tokenizer regex cascades on hand-worked examples (including deepseek-v3, which has no
// fixture vocabulary), plus the Unicode helpers they rest on.
#include <gtest/gtest.h>

#include "engine/internal/tokenizer_pretokenizer.h"
#include "engine/internal/tokenizer_unicode.h"

namespace airlock::engine::internal {
namespace {

std::vector<std::string> Words(const std::string& pre, const std::string& text) {
  auto spec = PreTokenizerSpecFor(pre);
  EXPECT_TRUE(spec.ok());
  auto tokenizer = PreTokenizer::Create(spec->regexes);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.error().ToString();
  std::vector<uint32_t> cps;
  DecodeUtf8Lenient(text, &cps);
  std::vector<std::string> words;
  for (auto [begin, end] : tokenizer->Split(cps)) {
    std::string w;
    for (std::size_t i = begin; i < end; ++i) AppendUtf8(cps[i], &w);
    words.push_back(w);
  }
  return words;
}

using W = std::vector<std::string>;

TEST(PreTokenizer, Gpt2) {
  EXPECT_EQ(Words("gpt-2", "I've 2 cats  here\n"),
            (W{"I", "'ve", " 2", " cats", " ", " here", "\n"}));
}

TEST(PreTokenizer, Llama3) {
  EXPECT_EQ(Words("llama-bpe", "Hello 12345\n\n  x"),
            (W{"Hello", " ", "123", "45", "\n\n", " ", " x"}));
  EXPECT_EQ(Words("llama-bpe", "DON'T"), (W{"DON", "'T"}));
}

TEST(PreTokenizer, Qwen2SplitsSingleDigits) {
  EXPECT_EQ(Words("deepseek-r1-qwen", "abc 123"), (W{"abc", " ", "1", "2", "3"}));
}

TEST(PreTokenizer, DeepseekV3) {
  EXPECT_EQ(Words("deepseek-v3", "Hello, world! 12345 \xE4\xBD\xA0\xE5\xA5\xBD"),
            (W{"Hello", ",", " world", "!", " ", "123", "45", " ", "\xE4\xBD\xA0\xE5\xA5\xBD"}));
}

TEST(PreTokenizer, NonAsciiWhitespaceAndInvalidBytes) {
  // U+3000 ideographic space is whitespace; an invalid byte becomes U+FFFD (a symbol).
  EXPECT_EQ(Words("gpt-2",
                  "a\xE3\x80\x80"
                  "b"),
            (W{"a", "\xE3\x80\x80", "b"}));
  EXPECT_EQ(Words("gpt-2", "a\xFF"), (W{"a", "\xEF\xBF\xBD"}));
  EXPECT_TRUE(Words("gpt-2", "").empty());
}

TEST(PreTokenizer, UnknownNameIsUnsupported) {
  EXPECT_EQ(PreTokenizerSpecFor("not-a-pre").status().code(), StatusCode::kUnsupported);
}

TEST(Unicode, LenientDecodingAndClasses) {
  std::vector<uint32_t> cps;
  DecodeUtf8Lenient("A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x80\xC3", &cps);
  EXPECT_EQ(cps, (std::vector<uint32_t>{'A', 0xE9, 0x20AC, 0x1F600, 0xFFFD, 0xFFFD}));
  EXPECT_EQ(CollapsedClass(0xE9), kCollapsedLetter);
  EXPECT_EQ(CollapsedClass(0x0663), kCollapsedNumber);  // Arabic-Indic digit three
  EXPECT_EQ(CollapsedClass(0x3001), kCollapsedPunct);
  EXPECT_EQ(CollapsedClass(0x0301), kCollapsedMark);
  EXPECT_EQ(CollapsedClass(0x20AC), kCollapsedSymbol);
  EXPECT_EQ(CollapsedClass(0x2003), kCollapsedSpace);
  EXPECT_EQ(CollapsedClass(0xE000), kCollapsedOther);  // private use
  for (int b = 0; b < 256; ++b) EXPECT_EQ(CodePointToByte(ByteToCodePoint(b)), b);
  EXPECT_EQ(ByteToCodePoint(' '), 0x120u);  // "Ġ"
}

}  // namespace
}  // namespace airlock::engine::internal
