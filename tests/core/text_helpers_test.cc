// The small text helpers of core/text.h that scan, formats, sign and template share.
#include <gtest/gtest.h>

#include <string>

#include "core/text.h"

namespace airlock::core {
namespace {

TEST(TextHelpers, AsciiLowerMapsOnlyAsciiLetters) {
  EXPECT_EQ(AsciiLower("Model.PKL"), "model.pkl");
  EXPECT_EQ(AsciiLower("ABCDEF0123"), "abcdef0123");
  // UTF-8 bytes (here É, C3 89) pass unchanged.
  EXPECT_EQ(AsciiLower("\xc3\x89T\xc3\x89"), "\xc3\x89t\xc3\x89");
  EXPECT_EQ(AsciiLower(""), "");
}

TEST(TextHelpers, EndsWithIgnoreCase) {
  EXPECT_TRUE(EndsWithIgnoreCase("MODEL.PKL", ".pkl"));
  EXPECT_TRUE(EndsWithIgnoreCase("a/b.Safetensors", ".safetensors"));
  EXPECT_TRUE(EndsWithIgnoreCase("x", ""));
  EXPECT_FALSE(EndsWithIgnoreCase("pkl", ".pkl"));
  EXPECT_FALSE(EndsWithIgnoreCase("model.pkl.gz", ".pkl"));
}

TEST(TextHelpers, QuoteNameNeutralizesControlsAndCuts) {
  EXPECT_EQ(QuoteName("data.pkl"), "'data.pkl'");
  EXPECT_EQ(QuoteName("a\x1b[2Jb\n\x7f"), "'a?[2Jb??'");
  EXPECT_EQ(QuoteName(std::string(250, 'x')), "'" + std::string(200, 'x') + "...'");
  EXPECT_EQ(QuoteName("abcdef", 3), "'abc...'");
  EXPECT_EQ(QuoteName("abc", 3), "'abc'");
}

}  // namespace
}  // namespace airlock::core
