// The gateway's cross-field scan (server/internal/policy_apply.h, FindCrossFieldMatches): data
// split between request fields is found at every cut, and joining fields adds no finding where
// the fields hold none (measured on the labelled detector corpus, each line a message).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "policy/detectors.h"
#include "server/internal/policy_apply.h"
#include "server/internal/request.h"

namespace {

using airlock::policy::DataClass;
using airlock::policy::DetectorSet;
using airlock::policy::Match;
using airlock::server::internal::CrossFieldMatch;
using airlock::server::internal::FindCrossFieldMatches;
using airlock::server::internal::ScanUnit;
using json = nlohmann::json;

class CrossFieldTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto d = DetectorSet::Create();
    ASSERT_TRUE(d.ok());
    set_ = std::move(*d).release();
  }
  static void TearDownTestSuite() { delete set_; }

  // Each string its own unit (a message's content), scanned as the gateway does.
  static std::vector<CrossFieldMatch> Cross(const std::vector<std::string>& fields) {
    std::vector<json> values(fields.begin(), fields.end());
    std::vector<ScanUnit> units;
    std::vector<std::string> joined;
    std::vector<std::vector<Match>> matches;
    for (json& v : values) {
      units.push_back(ScanUnit{{&v}});
      joined.push_back(units.back().Joined());
      matches.push_back(set_->Scan(joined.back()));
    }
    return FindCrossFieldMatches(*set_, units, joined, matches);
  }

  static inline DetectorSet* set_ = nullptr;
};

// Every cut of each value between two messages, with nothing, blanks or invisible characters at
// the cut, and over three messages, is found; the pieces cover exactly the value's bytes.
TEST_F(CrossFieldTest, DataSplitAtEveryCutBetweenFieldsIsFound) {
  const std::vector<std::pair<std::string, DataClass>> values = {
      {"alice@example.com", DataClass::kEmail},
      {"13812345678", DataClass::kPhone},
      {"8613812345678", DataClass::kPhone},
      {"4111 1111 1111 1111", DataClass::kPaymentCard},
      {"11010519491231002X", DataClass::kCnResidentId},
      {"ghp_0123456789abcdefghijABCDEFGHIJ012345", DataClass::kSecret},
  };
  for (const auto& [value, cls] : values) {
    for (std::size_t cut = 1; cut < value.size(); ++cut) {
      std::string left = value.substr(0, cut), right = value.substr(cut);
      for (std::string pad : {"", " ", "\n", "\u200b", " \u3000", "\u00a0\t"}) {
        // A blank inside a card is one of its separators; padding it changes the data.
        if (!pad.empty() && (left.back() == ' ' || right.front() == ' ')) continue;
        // "alice@example.co" + "m" too: the first field alone holds an address, but the joined
        // reading wins (see FindCrossFieldMatches).
        auto found = Cross({"see " + left + pad, pad + right + " ok"});
        ASSERT_EQ(found.size(), 1u) << value << " cut at " << cut << " pad '" << pad << "'";
        EXPECT_EQ(found[0].data_class, cls) << value << " cut at " << cut;
        ASSERT_EQ(found[0].pieces.size(), 2u);
        EXPECT_EQ(found[0].pieces[0].unit, 0u);
        EXPECT_EQ(found[0].pieces[0].begin, 4u);
        EXPECT_EQ(found[0].pieces[1].unit, 1u);
        EXPECT_EQ(found[0].pieces[1].end, pad.size() + right.size());
        // In reverse order (a name rendered before its content).
        auto reversed = Cross({pad + right + " ok", "see " + left + pad});
        ASSERT_EQ(reversed.size(), 1u) << value << " reversed, cut at " << cut;
        EXPECT_EQ(reversed[0].pieces[0].unit, 1u);
      }
      if (cut + 1 < value.size()) {
        auto three = Cross(
            {"see " + value.substr(0, cut), value.substr(cut, 1), value.substr(cut + 1) + " ok"});
        ASSERT_EQ(three.size(), 1u) << value << " in three at " << cut;
        EXPECT_EQ(three[0].value, value);
      }
    }
  }
}

// Findings of one field stay that field's; joining fields never repeats them.
TEST_F(CrossFieldTest, FindingsInsideOneFieldAreNotCrossFieldFindings) {
  EXPECT_TRUE(Cross({"mail alice@example.com", "and 13812345678"}).empty());
  EXPECT_TRUE(Cross({"alice@example.com", "bob@example.org"}).empty());
}

// Precision: the 394 labelled corpus lines as consecutive messages, in order and reversed, with
// and without padding at the cuts, give no cross-field finding (every one would be a false
// alarm: each line's data lies inside it).
TEST_F(CrossFieldTest, LabelledCorpusLinesAsMessagesGiveNoCrossFieldFinding) {
  std::ifstream in(std::string(AIRLOCK_SOURCE_DIR) + "/tests/data/detectors/corpus.jsonl");
  ASSERT_TRUE(in);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(json::parse(line)["text"]);
  ASSERT_GT(lines.size(), 360u);
  std::size_t false_alarms = 0;
  for (const std::string& pad : {std::string(), std::string(" \n")}) {
    std::vector<std::string> fields;
    for (const auto& l : lines) fields.push_back(pad + l + pad);
    for (const CrossFieldMatch& m : Cross(fields)) {
      ++false_alarms;
      ADD_FAILURE() << "cross-field false alarm: " << airlock::policy::DataClassName(m.data_class)
                    << " '" << m.value << "' over units " << m.pieces.front().unit << ".."
                    << m.pieces.back().unit;
    }
    // The digits-only lines glued together: the hardest case for joined numbers.
    std::vector<std::string> numbers;
    for (const auto& l : lines) {
      std::string digits;
      for (char c : l)
        if (c >= '0' && c <= '9') digits += c;
      if (!digits.empty()) numbers.push_back(pad + digits.substr(0, 6) + pad);
    }
    std::size_t glued = Cross(numbers).size();
    // Lines with their final punctuation and blanks taken off, so that words glue together.
    std::vector<std::string> bare;
    for (const auto& l : lines) {
      std::string b = l;
      while (!b.empty() && std::string(".!?) \n").find(b.back()) != std::string::npos) b.pop_back();
      bare.push_back(pad + b + pad);
    }
    for (const CrossFieldMatch& m : Cross(bare))
      std::printf("  unpunctuated lines: %s '%s'\n",
                  std::string(airlock::policy::DataClassName(m.data_class)).c_str(),
                  m.value.c_str());
    std::printf(
        "corpus lines as messages (pad '%s'): %zu cross-field findings; first 6 digits "
        "of each line as messages: %zu\n",
        pad.empty() ? "" : "blank+newline", false_alarms, glued);
  }
}

}  // namespace
