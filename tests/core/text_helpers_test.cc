// The small text helpers of core/text.h that scan, formats, sign and template share.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "core/text.h"

namespace airlock::core {
namespace {

TEST(TextHelpers, AppendUtf8WritesOneToFourBytesAndKeepsSurrogates) {
  const std::pair<char32_t, std::string> cases[] = {
      {U'A', "A"},
      {0x7F, "\x7F"},
      {0x80, "\xC2\x80"},
      {0x7FF, "\xDF\xBF"},
      {0x800, "\xE0\xA0\x80"},
      {0xFFFF, "\xEF\xBF\xBF"},
      {0x10000, "\xF0\x90\x80\x80"},
      {0x10FFFF, "\xF4\x8F\xBF\xBF"},
      {0xD800, "\xED\xA0\x80"},  // surrogatepass: the caller's rule decides
  };
  for (const auto& [cp, want] : cases) {
    std::string out = "x";
    airlock::core::AppendUtf8(cp, out);
    EXPECT_EQ(out, "x" + want) << static_cast<std::uint32_t>(cp);
  }
}

TEST(TextHelpers, AsciiLowerMapsOnlyAsciiLetters) {
  // {input, expected}; UTF-8 bytes (here É, C3 89) pass unchanged.
  const std::pair<std::string, std::string> cases[] = {{"Model.PKL", "model.pkl"},
                                                       {"ABCDEF0123", "abcdef0123"},
                                                       {"\xc3\x89T\xc3\x89", "\xc3\x89t\xc3\x89"},
                                                       {"", ""}};
  for (const auto& [in, want] : cases) EXPECT_EQ(AsciiLower(in), want) << in;
}

TEST(TextHelpers, EndsWithIgnoreCase) {
  for (const auto& [s, suffix] :
       {std::pair{"MODEL.PKL", ".pkl"}, {"a/b.Safetensors", ".safetensors"}, {"x", ""}})
    EXPECT_TRUE(EndsWithIgnoreCase(s, suffix)) << s << " " << suffix;
  for (const auto& [s, suffix] : {std::pair{"pkl", ".pkl"}, {"model.pkl.gz", ".pkl"}})
    EXPECT_FALSE(EndsWithIgnoreCase(s, suffix)) << s << " " << suffix;
}

TEST(TextHelpers, QuoteNameNeutralizesControlsAndCuts) {
  EXPECT_EQ(QuoteName("data.pkl"), "'data.pkl'");
  EXPECT_EQ(QuoteName("a\x1b[2Jb\n\x7f"),
            "'a?[2Jb?"
            "?'");
  EXPECT_EQ(QuoteName(std::string(250, 'x')), "'" + std::string(200, 'x') + "...'");
  EXPECT_EQ(QuoteName("abcdef", 3), "'abc...'");
  EXPECT_EQ(QuoteName("abc", 3), "'abc'");
}

TEST(TextHelpers, JsonNestingDepthCountsBracketsOutsideStrings) {
  EXPECT_EQ(JsonNestingDepth(""), 0u);
  EXPECT_EQ(JsonNestingDepth("1"), 0u);
  EXPECT_EQ(JsonNestingDepth(R"({"a": [1, {"b": []}]})"), 4u);
  // Brackets inside strings, escaped quotes included, do not count.
  EXPECT_EQ(JsonNestingDepth(R"({"a": "[[[{{{", "b": "x\"[[[[", "c": "\\"})"), 1u);
  // A stray closer cannot take the depth below zero and hide the nesting that follows.
  EXPECT_EQ(JsonNestingDepth("]]]][[["), 3u);
}

TEST(TextHelpers, JsonNestingDepthStopsPastTheLimit) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(JsonNestingDepth(deep), 100000u);
  EXPECT_EQ(JsonNestingDepth(deep, 64), 65u);
  EXPECT_EQ(JsonNestingDepth("[[]]", 2), 2u);
}

TEST(TextHelpers, JsonBracketedEndFindsTheMatchingCloser) {
  const std::string text = R"(call {"name": "f", "args": {"s": "}]\"}"}} tail)";
  const std::size_t start = text.find('{');
  EXPECT_EQ(text.substr(start, JsonBracketedEnd(text, start) - start),
            R"({"name": "f", "args": {"s": "}]\"}"}})");
  EXPECT_EQ(JsonBracketedEnd("[1, [2]] x", 0), 8u);
  EXPECT_EQ(JsonBracketedEnd(R"({"a": {"b": 1})", 0), std::string_view::npos);
  EXPECT_EQ(JsonBracketedEnd(R"({"a": "}")", 0), std::string_view::npos);
}

}  // namespace
}  // namespace airlock::core
