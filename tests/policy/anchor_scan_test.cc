// The hand-written candidate finders of the Hyperscan prefilter (policy/internal/anchor_scan.h)
// against RE2: the payment-card finder starts a region exactly where the rule's anchor pattern
// matches, the Zhipu finder exactly where the rule's pattern has a match, and every match (every
// accepted card) lies inside a region. Texts are built from pieces that sit just inside and just
// outside each format, at every offset of the 64-byte blocks the finders work in.
#include "policy/internal/anchor_scan.h"

#include <gtest/gtest.h>
#include <re2/re2.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "policy/detectors.h"
#include "policy/internal/rules.h"

namespace airlock::policy::internal {
namespace {

const Rule& RuleById(std::string_view id) {
  for (const Rule& rule : BuiltinRules())
    if (rule.id == id) return rule;
  ADD_FAILURE() << "no rule " << id;
  return BuiltinRules()[0];
}

std::unique_ptr<RE2> Compile(std::string_view pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  EXPECT_TRUE(re->ok()) << re->error();
  return re;
}

std::vector<AnchorRegion> Regions(std::string_view rule_id, std::string_view text) {
  std::optional<HandRule> finder = HandRuleFor(rule_id);
  EXPECT_TRUE(finder.has_value()) << rule_id;
  if (!finder) return {};
  HandRegions all;
  all[1].push_back({0, 0, 0});  // stale regions from an earlier text are cleared
  FindHandAnchors(text, 1u << static_cast<int>(*finder), &all);
  std::vector<AnchorRegion> out = all[static_cast<int>(*finder)];
  // The portable kernel (SSE2 here) finds the same regions as the one this CPU runs by default.
  HandRegions portable;
  FindHandAnchors(text, 1u << static_cast<int>(*finder), &portable, HandScanKernel::kPortable);
  const std::vector<AnchorRegion>& same = portable[static_cast<int>(*finder)];
  EXPECT_TRUE(same.size() == out.size() &&
              std::equal(same.begin(), same.end(), out.begin(),
                         [](const AnchorRegion& x, const AnchorRegion& y) {
                           return x.begin == y.begin && x.end == y.end &&
                                  x.starts_by == y.starts_by;
                         }))
      << rule_id << " " << nlohmann::json(std::string(text)).dump();
  for (int r = 0; r < kHandRuleCount; ++r) {
    if (r != static_cast<int>(*finder)) {
      EXPECT_TRUE(all[r].empty()) << "rule " << r << " was not asked for";
    }
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    EXPECT_LE(out[i].begin, out[i].starts_by);
    EXPECT_LE(out[i].starts_by, out[i].end);
    EXPECT_LE(out[i].end, text.size());
    if (i > 0) {
      EXPECT_LE(out[i - 1].begin, out[i].begin);
    }
  }
  return out;
}

bool Inside(const std::vector<AnchorRegion>& regions, std::size_t begin, std::size_t end) {
  return std::any_of(regions.begin(), regions.end(), [&](const AnchorRegion& r) {
    return r.begin <= begin && end <= r.end && begin <= r.starts_by;
  });
}

std::string RandomText(std::mt19937& rng, const std::vector<std::string>& pieces, int count) {
  std::string text;
  for (int i = 0; i < count; ++i) text += pieces[rng() % pieces.size()];
  return text;
}

const std::vector<std::string>& CardPieces() {
  static const std::vector<std::string> pieces = {"4111",
                                                  "1111",
                                                  "411111",
                                                  "41111",
                                                  "111",
                                                  "1",
                                                  "0",
                                                  "3782",
                                                  "822463",
                                                  "10005",
                                                  "4242424242424242",
                                                  "378282246310005",
                                                  " ",
                                                  "  ",
                                                  " - ",
                                                  " / ",
                                                  "-",
                                                  "/",
                                                  "_",
                                                  ".",
                                                  ":",
                                                  "|",
                                                  "\\",
                                                  "~",
                                                  "\t",
                                                  "\n",
                                                  "\r\n",
                                                  "\r",
                                                  ",",
                                                  "a",
                                                  "Z",
                                                  "+",
                                                  "=",
                                                  "\xc3\xa9",
                                                  "4111 1111 1111 1111",
                                                  "3782 822463 10005",
                                                  "4111-1111-1111-1111-111",
                                                  "2024-0001-5555",
                                                  "1Z999AA10123456784 "};
  return pieces;
}

const std::vector<std::string>& ZhipuPieces() {
  static const std::vector<std::string> pieces = {
      "0123456789abcdef0123456789abcdef",   // 32 lowercase hex digits
      "0123456789abcdef0123456789abcde",    // 31
      "a0123456789abcdef0123456789abcdef",  // 33
      "0123456789ABCDEF0123456789abcdef",   // upper case: not the format
      ".",
      "AbCdEfGh12345678",   // 16 letters and digits
      "AbCdEfGh1234567",    // 15
      "AbCdEfGh123456789",  // 17
      " ", "-", "_", "g", "\xc3\xa9", "\n", "f", "9", "..", "x.y",
      // Whole keys and near misses, so that random texts hold many.
      " 0123456789abcdef0123456789abcdef.AbCdEfGh12345678",
      "-0123456789abcdef0123456789abcdef.AbCdEfGh12345678",
      "\xc3\xa9"
      "0123456789abcdef0123456789abcdef.AbCdEfGh12345678",
      " 0123456789abcdef0123456789abcde.AbCdEfGh12345678",
      " 0123456789abcdef0123456789abcdef.AbCdEfGh1234567",
      "_0123456789abcdef0123456789abcdef.AbCdEfGh12345678 "};
  return pieces;
}

// The offsets where `re` matches anchored at p (with the whole text as context for \b).
std::set<std::size_t> AnchoredStarts(const RE2& re, std::string_view text) {
  std::set<std::size_t> starts;
  re2::StringPiece piece(text.data(), text.size());
  for (std::size_t p = 0; p < text.size(); ++p)
    if (re.Match(piece, p, text.size(), RE2::ANCHOR_START, nullptr, 0)) starts.insert(p);
  return starts;
}

TEST(AnchorScanTest, CardFinderStartsExactlyWhereTheAnchorMatches) {
  auto anchor = Compile(RuleById("payment-card").anchor);
  std::mt19937 rng(4111);
  int found = 0;
  for (int round = 0; round < 4000; ++round) {
    std::string text = RandomText(rng, CardPieces(), 1 + round % 40);
    std::set<std::size_t> want = AnchoredStarts(*anchor, text);
    std::set<std::size_t> got;
    for (const AnchorRegion& r : Regions("payment-card", text)) {
      got.insert(r.begin);
      EXPECT_EQ(r.starts_by, r.begin);
      EXPECT_EQ(r.end, std::min(text.size(), r.begin + 73));
    }
    ASSERT_EQ(got, want) << nlohmann::json(text).dump();
    found += static_cast<int>(want.size());
  }
  EXPECT_GT(found, 1000);  // the generator makes anchors, or this test could not fail
}

TEST(AnchorScanTest, EveryAcceptedCardLiesInAFinderRegion) {
  auto set = DetectorSet::Create(
      {.enabled = {DataClass::kPaymentCard}, .engine = DetectorEngine::kRe2Set});
  ASSERT_TRUE(set.ok());
  // Scan() reads the text normalized and decoded too, where the finder sees other bytes: these
  // pieces are left as they are by both (no control character, nothing that starts an encoding).
  std::vector<std::string> pieces;
  for (const std::string& piece : CardPieces())
    if (piece.find_first_of("\\:+=%&\r") == std::string::npos) pieces.push_back(piece);
  pieces.push_back("\r\n4111");
  std::mt19937 rng(5555);
  int cards = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text = RandomText(rng, pieces, 1 + round % 30);
    auto regions = Regions("payment-card", text);
    for (const Match& m : (*set)->Scan(text)) {
      ++cards;
      ASSERT_TRUE(Inside(regions, m.begin, m.end))
          << nlohmann::json(text).dump() << " card at " << m.begin;
    }
  }
  EXPECT_GT(cards, 100);
}

TEST(AnchorScanTest, ZhipuFinderFindsExactlyThePatternsMatches) {
  auto pattern = Compile(RuleById("zhipu-api-key").pattern);
  std::mt19937 rng(32);
  int found = 0;
  for (int round = 0; round < 4000; ++round) {
    std::string text = RandomText(rng, ZhipuPieces(), 1 + round % 24);
    re2::StringPiece piece(text.data(), text.size());
    // Every match, wherever it starts (not only the leftmost-first walk's).
    std::set<std::size_t> want_dots;
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    for (std::size_t p = 0; p < text.size(); ++p) {
      re2::StringPiece groups[2];
      if (!pattern->Match(piece, p, text.size(), RE2::ANCHOR_START, groups, 2)) continue;
      std::size_t begin = static_cast<std::size_t>(groups[0].data() - text.data());
      std::size_t capture = static_cast<std::size_t>(groups[1].data() - text.data());
      want_dots.insert(capture + 32);
      matches.push_back({begin, begin + groups[0].size()});
    }
    auto regions = Regions("zhipu-api-key", text);
    std::set<std::size_t> got_dots;
    for (const AnchorRegion& r : regions) got_dots.insert(r.starts_by);
    ASSERT_EQ(got_dots, want_dots) << nlohmann::json(text).dump();
    for (const auto& [begin, end] : matches)
      ASSERT_TRUE(Inside(regions, begin, end)) << nlohmann::json(text).dump() << " at " << begin;
    found += static_cast<int>(matches.size());
  }
  EXPECT_GT(found, 200);
}

// Every match of `rule_id`'s pattern, wherever it starts, lies inside a region and starts by its
// starts_by. Returns the number of matches checked.
int CheckCoversEveryMatch(std::string_view rule_id, const std::vector<std::string>& pieces,
                          unsigned seed) {
  auto pattern = Compile(RuleById(rule_id).pattern);
  std::mt19937 rng(seed);
  int found = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text = RandomText(rng, pieces, 1 + round % 30);
    auto regions = Regions(rule_id, text);
    re2::StringPiece piece(text.data(), text.size());
    for (std::size_t p = 0; p < text.size(); ++p) {
      re2::StringPiece whole;
      if (!pattern->Match(piece, p, text.size(), RE2::ANCHOR_START, &whole, 1)) continue;
      std::size_t begin = static_cast<std::size_t>(whole.data() - text.data());
      if (!Inside(regions, begin, begin + whole.size())) {
        ADD_FAILURE() << rule_id << " " << nlohmann::json(text).dump() << " at " << begin;
        return found;
      }
      ++found;
    }
  }
  return found;
}

TEST(AnchorScanTest, IbanFinderCoversEveryMatch) {
  const std::vector<std::string> pieces = {
      "DE89", "3704", "0044",    "0532", "0130", "00", " ", "GB82WEST12345698765432",
      "DE8",  "X",    "a",       "_",    "-",    "Z",  "9", "DE89 3704 0044 0532 0130 00",
      "  ",   "\n",   "\xc3\xa9"};
  EXPECT_GT(CheckCoversEveryMatch("iban", pieces, 89), 1000);
}

TEST(AnchorScanTest, Ipv6FinderCoversEveryMatch) {
  const std::vector<std::string> pieces = {
      ":",       "::",  "2001",     "db8", "ff00",     "42",    "8329",
      "g",       "G",   " ",        ".",   "12:30:45", "abcde", "2001:db8::ff00:42:8329",
      "fe80::1", ":::", "\xc3\xa9", "0"};
  EXPECT_GT(CheckCoversEveryMatch("ipv6", pieces, 6), 1000);
}

TEST(AnchorScanTest, EmailFinderCoversEveryMatch) {
  const std::vector<std::string> pieces = {
      "alice",  "@",        "example", ".",   "com",
      "a",      "_",        "-",       "+",   "%",
      " ",      "@_",       "@-x",     "b.c", "alice@example.com",
      "x@y.io", "\xc3\xa9", "9",       "..",  "@@",
      "org",    "\n"};
  EXPECT_GT(CheckCoversEveryMatch("email", pieces, 64), 1000);
}

TEST(AnchorScanTest, Ipv4FinderCoversEveryMatch) {
  const std::vector<std::string> pieces = {"10", ".", "255", "256",    "1", "0",   "192.168.1.20",
                                           "a",  " ", "..",  "v1.2.3", "-", "999", "\xc3\xa9"};
  EXPECT_GT(CheckCoversEveryMatch("ipv4", pieces, 4), 300);
}

const std::vector<std::string>& NumberPieces() {
  static const std::vector<std::string> pieces = {
      "536-22-4581", "536 22 4581", "536-22 4581", "53-622-4581", "11010519491231002X",
      "110105194912310021", "1101051949123100", "0044 20 7946 0958", "0044(20)79460958", "00", "0",
      "86", "0086", "+", "+86", "+86 ", "+86-", "+86.", "138", "1381234", "(138)", "(", ")",
      "138 1234 5678", "138-1234-5678", "138.1234.5678", "13812345678", "8613812345678",
      "0086 138 1234 5678", "+8613812345678", "+86 (138) 1234-5678", "1234", "5678", "12", " ", "-",
      ".", "/", "a", "_", "x", "\xc3\xa9", "1", "9", "X", "2024-0001-5555",
      // The longest forms each rule can match.
      "001999 (1234) (1234) (1234) (1234) (1234) (1234)", "0086 (138) 1234 5678",
      "0086-(138)-1234-5678", "+86 (138) 1234 5678"};
  return pieces;
}

TEST(AnchorScanTest, DigitRuleFindersCoverEveryMatch) {
  EXPECT_GT(CheckCoversEveryMatch("us-ssn", NumberPieces(), 536), 300);
  EXPECT_GT(CheckCoversEveryMatch("cn-resident-id", NumberPieces(), 110), 100);
  EXPECT_GT(CheckCoversEveryMatch("phone-dialled-00", NumberPieces(), 44), 300);
  EXPECT_GT(CheckCoversEveryMatch("phone-cn-mobile", NumberPieces(), 138), 300);
  EXPECT_GT(CheckCoversEveryMatch("phone-cn-mobile-cc", NumberPieces(), 86), 300);
}

TEST(AnchorScanTest, ZhipuFinderCoversEveryMatch) {
  EXPECT_GT(CheckCoversEveryMatch("zhipu-api-key", ZhipuPieces(), 16), 200);
}

TEST(AnchorScanTest, FindersReadNothingPastShortOrEmptyText) {
  for (std::string_view id : {"payment-card", "zhipu-api-key", "iban", "ipv6", "email", "ipv4"}) {
    EXPECT_TRUE(Regions(id, "").empty());
    EXPECT_TRUE(Regions(id, "4").empty());
    // The text is a view into a longer buffer: what lies after it is not read as digits.
    std::string buffer = "4111 1111 1111 1111";
    EXPECT_TRUE(Regions(id, std::string_view(buffer).substr(0, 12)).empty()) << id;
  }
  EXPECT_EQ(Regions("payment-card", "4111 1111 1111 1").size(), 1u);
  EXPECT_EQ(Regions("iban", "DE89 3704 0044 0532 0130 00").size(), 1u);
  EXPECT_EQ(Regions("ipv6", "::").size(), 1u);
  EXPECT_EQ(Regions("zhipu-api-key", "0123456789abcdef0123456789abcdef.AbCdEfGh12345678").size(),
            1u);
}

TEST(AnchorScanTest, OnlyTheSlowRulesHaveFinders) {
  for (std::string_view id :
       {"payment-card", "zhipu-api-key", "iban", "ipv6", "email", "ipv4", "us-ssn",
        "cn-resident-id", "phone-dialled-00", "phone-cn-mobile", "phone-cn-mobile-cc"})
    EXPECT_TRUE(HandRuleFor(id).has_value()) << id;
  EXPECT_FALSE(HandRuleFor("phone-e164").has_value());
  EXPECT_FALSE(HandRuleFor("github-pat").has_value());
}

}  // namespace
}  // namespace airlock::policy::internal
