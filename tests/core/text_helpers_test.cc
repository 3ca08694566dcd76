// The small text helpers of core/text.h that scan, formats, sign and template share.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "core/text.h"

namespace airlock::core {
namespace {

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
  EXPECT_EQ(QuoteName("a\x1b[2Jb\n\x7f"), "'a?[2Jb?" "?'");
  EXPECT_EQ(QuoteName(std::string(250, 'x')), "'" + std::string(200, 'x') + "...'");
  EXPECT_EQ(QuoteName("abcdef", 3), "'abc...'");
  EXPECT_EQ(QuoteName("abc", 3), "'abc'");
}

}  // namespace
}  // namespace airlock::core
