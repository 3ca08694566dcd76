// NormalizedText's fast paths (policy/internal/normalize.h) against the plain ones: the cursor
// look-ups used for sorted findings equal the searching ones, and characters found after kept
// line breaks and tabs (which the 16-byte scan steps over) are still normalized.
#include "policy/internal/normalize.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace airlock::policy::internal {
namespace {

TEST(NormalizeTest, OffsetCursorsEqualSearchOnSortedRuns) {
  const std::vector<std::string> pieces = {"a",      "\n",     "\t",     "\uff21", "\u200b",
                                           "\u0430", "\x01",   "中",     "\uff0c", "\u3002",
                                           "\xff",   "alice@", "\u00a0", "12",     "\r\n"};
  std::mt19937 rng(42);
  int normalized = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    for (int i = 0, n = 1 + round % 50; i < n; ++i) text += pieces[rng() % pieces.size()];
    NormalizedText norm;
    if (!norm.Assign(text)) continue;
    ++normalized;
    const std::size_t size = norm.text().size();
    // Sorted, disjoint ranges, as the detectors' findings are.
    std::size_t begin_cursor = 0, end_cursor = 0;
    for (std::size_t begin = 0; begin < size;) {
      std::size_t end = std::min(size, begin + 1 + rng() % 5);
      ASSERT_EQ(norm.OriginalBegin(begin, &begin_cursor), norm.OriginalBegin(begin)) << begin;
      ASSERT_EQ(norm.OriginalEnd(end, &end_cursor), norm.OriginalEnd(end)) << end;
      begin = end + rng() % 4;
    }
  }
  EXPECT_GT(normalized, 1000);
}

TEST(NormalizeTest, CharactersAfterKeptLineBreaksAreStillNormalized) {
  for (std::size_t pad = 0; pad < 40; ++pad) {
    std::string text = std::string(pad, 'x') + "\n\t\r" + std::string(pad % 17, 'y') +
                       "\uff21\u200b" + std::string(20, 'z') + "\n\x01";
    NormalizedText norm;
    ASSERT_TRUE(norm.Assign(text)) << pad;
    EXPECT_EQ(norm.text(), std::string(pad, 'x') + "\n\t\r" + std::string(pad % 17, 'y') + "A" +
                               std::string(20, 'z') + "\n")
        << pad;
    EXPECT_TRUE(NeedsNormalization(text));
  }
  NormalizedText plain;
  EXPECT_FALSE(plain.Assign(std::string(100, 'a') + "\n\t\r\n" + std::string(100, 'b')));
}

// Invalid UTF-8 reads as U+FFFD: the bytes around a dropped control never join into a character
// ("\xEF\xBC" + "\x01" + "\xA0" is not a full-width @, which would then stay unnormalized).
TEST(NormalizeTest, InvalidBytesAroundADroppedControlBecomeReplacementCharacters) {
  NormalizedText norm;
  ASSERT_TRUE(
      norm.Assign("alice\xEF\xBC\x01\xA0"
                  "example.com"));
  EXPECT_EQ(norm.text().find("\xEF\xBC\xA0"), std::string::npos) << norm.text();
  EXPECT_EQ(norm.text().find('@'), std::string::npos) << norm.text();
  EXPECT_NE(norm.text().find("\xEF\xBF\xBD"), std::string::npos) << norm.text();
  EXPECT_EQ(norm.text().rfind("alice", 0), 0u);
  EXPECT_NE(norm.text().find("example.com"), std::string::npos);
  // Every normalized byte maps back inside the original.
  EXPECT_LE(norm.OriginalEnd(norm.text().size()), std::string("alice\xEF\xBC\x01\xA0"
                                                              "example.com")
                                                      .size());
}

}  // namespace
}  // namespace airlock::policy::internal
