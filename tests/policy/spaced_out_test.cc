// Red team RT4 F10: data spaced out one character at a time ("4 1 1 1 ...", "5 3 6 - 2 2 - ...",
// "a l i c e @ e x a m p l e . c o m", "4-1-1-1-...") defeated every detector. DetectorSet::Scan
// now also reads such runs collapsed; a finding covers the run's characters from the first to
// the last, so a redaction cuts the spaced original.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "policy/detectors.h"

namespace {

using airlock::policy::DataClass;
using airlock::policy::DetectorSet;

std::string Spaced(const std::string& value, const std::string& gap) {
  std::string out;
  for (char c : value) {
    if (!out.empty()) out += gap;
    out += c;
  }
  return out;
}

class SpacedOutTest : public ::testing::Test {
 protected:
  static const DetectorSet& set() {
    static const std::unique_ptr<DetectorSet> detectors = std::move(*DetectorSet::Create());
    return *detectors;
  }
};

TEST_F(SpacedOutTest, DataSpacedOutOneCharacterAtATimeIsFound) {
  const std::vector<std::pair<std::string, DataClass>> values = {
      {"4111111111111111", DataClass::kPaymentCard},
      {"536-22-4581", DataClass::kUsSsn},
      {"alice@example.com", DataClass::kEmail},
      {"ghp_R4nd0mT0k3nV4lu3xYz1234567890abCDEFg", DataClass::kSecret},
      {"13812345678", DataClass::kPhone},
  };
  for (const auto& [value, cls] : values)
    for (const std::string gap : {" ", "-", "  ", " - ", ".", "\t"}) {
      // A gap made of a character the value holds ("." in an address) is ambiguous: not read.
      if (value.find_first_of(gap.substr(gap.size() / 2, 1)) != std::string::npos &&
          gap.find_first_not_of(" \t") != std::string::npos)
        continue;
      const std::string spaced = Spaced(value, gap);
      const std::string text = "here: " + spaced + " ok";
      auto found = set().Scan(text);
      ASSERT_EQ(found.size(), 1u) << "'" << text << "'";
      EXPECT_EQ(found[0].data_class, cls) << text;
      // The finding covers the spaced value, first character to last.
      EXPECT_EQ(found[0].begin, 6u) << text;
      EXPECT_EQ(found[0].end, 6 + spaced.size()) << text;
    }
}

// Attack (review of F10's fix): a single-character word spaced out beside the data ("5 3 6 - 2 2
// - 4 5 8 1 x", "x 4 1 1 1 ...") joined the run, so the collapsed reading glued it to the value
// ("536-22-4581x") and the missing word boundary hid it; the SSN reached an upstream whose policy
// blocks SSNs. The run is also read with a break where its letters and digits meet.
TEST_F(SpacedOutTest, SingleLetterWordsSpacedBesideTheDataDoNotHideIt) {
  const std::vector<std::pair<std::string, DataClass>> values = {
      {"4111111111111111", DataClass::kPaymentCard},
      {"536-22-4581", DataClass::kUsSsn},
      {"13812345678", DataClass::kPhone},
  };
  for (const auto& [value, cls] : values)
    for (const std::string gap : {" ", "  ", "\t"})
      for (const std::string& wrapped :
           {Spaced(value + "x", gap), Spaced("x" + value, gap), Spaced("ab" + value + "yz", gap)}) {
        const std::string text = "here: " + wrapped + " ok";
        auto found = set().Scan(text);
        bool seen = false;
        for (const auto& m : found) seen = seen || m.data_class == cls;
        EXPECT_TRUE(seen) << "'" << text << "'";
      }
}

// Attack (review of F10's fix): the runs were looked for in the raw text, so a gap disguised as
// Unicode (a no-break space, an ideographic space, a thin space, a zero-width space beside a
// blank) or full-width characters hid a spaced-out SSN that a plain space would not. Runs are
// now looked for in the normalized text; the finding still covers the original bytes.
TEST_F(SpacedOutTest, GapsDisguisedAsUnicodeSpacesAreReadLikeBlanks) {
  for (const std::string gap : {std::string("\xC2\xA0"), std::string("\xE3\x80\x80"),
                                std::string("\xE2\x80\x89"), std::string(" \xE2\x80\x8B")}) {
    const std::string spaced = Spaced("536-22-4581", gap);
    const std::string text = "here: " + spaced + " ok";
    auto found = set().Scan(text);
    ASSERT_EQ(found.size(), 1u) << "'" << text << "'";
    EXPECT_EQ(found[0].data_class, DataClass::kUsSsn) << text;
    EXPECT_EQ(found[0].begin, 6u) << text;
    EXPECT_EQ(found[0].end, 6 + spaced.size()) << text;
  }
  // Full-width digits and hyphens between ideographic spaces.
  std::string wide;
  for (char c : std::string("536-22-4581")) {
    if (!wide.empty()) wide += "\xE3\x80\x80";
    if (c == '-') {
      wide += "\xEF\xBC\x8D";
    } else {
      wide += "\xEF\xBC";
      wide += static_cast<char>(0x90 + (c - '0'));
    }
  }
  auto found = set().Scan("id " + wide + " ok");
  ASSERT_EQ(found.size(), 1u) << wide;
  EXPECT_EQ(found[0].data_class, DataClass::kUsSsn);
  EXPECT_EQ(found[0].begin, 3u);
  EXPECT_EQ(found[0].end, 3 + wide.size());
}

// Prose with one-letter words, spaced lists and short spaced runs gives no finding.
TEST_F(SpacedOutTest, SpacedProseAndListsAreNotFindings) {
  for (const char* text : {
           "I am a b c d person",
           "options: a, b, c, d, e, f, g, h",
           "1 2 3 4 5 6 7 8 9 10 11 12",
           "x - y - z - w - v - u",
           "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
           "4 1 1 1",
           "0 1 1 0 1 0 0 1",
           "2 0 2 6 - 1 2 - 0 7",
       })
    EXPECT_TRUE(set().Scan(text).empty()) << text;
}

}  // namespace
