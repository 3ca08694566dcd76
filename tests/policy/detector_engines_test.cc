// The detectors' two candidate engines (Hyperscan and RE2::Set) against each other and against
// the findings main had before the one-pass engine (tests/data/detectors/corpus_findings.jsonl),
// and the incremental StreamScanner against one-shot scanning at every split position.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "policy/detectors.h"
#include "policy/stream_scanner.h"

namespace airlock::policy {
namespace {

std::string Describe(const std::vector<Match>& matches, std::string_view text) {
  std::string out;
  for (const Match& m : matches) {
    out += std::string(DataClassName(m.data_class)) + "/" + m.rule + "[" + std::to_string(m.begin) +
           "," + std::to_string(m.end) + ")";
    if (m.end <= text.size()) out += "=" + std::string(text.substr(m.begin, m.end - m.begin));
    out += " ";
  }
  return out;
}

std::vector<std::string> CorpusTexts() {
  std::ifstream in(std::string(AIRLOCK_SOURCE_DIR) + "/tests/data/detectors/corpus.jsonl");
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(in, line)) texts.push_back(nlohmann::json::parse(line)["text"]);
  return texts;
}

// Pieces that exercise every class, near misses, separators, and the normalizer.
const std::vector<std::string>& Pieces() {
  static const std::vector<std::string> pieces = {
      "alice@example.com",
      "\u0430lice@ex\u0430mple.com",
      "bob.smith+x@mail.example.org",
      "+44 20 7946 0958",
      "138.1234.5678",
      "(138)1234-5678",
      "+86 138 1234 5678",
      "13812345678",
      "4111 1111 1111 1111",
      "4111-1111-1111-1111",
      "378282246310005",
      "4111111111111112",
      "DE89 3704 0044 0532 0130 00",
      "GB82WEST12345698765432",
      "536-22-1234",
      "11010519491231002X",
      "192.168.1.20",
      "2001:db8::ff00:42:8329",
      "10.4.22.1",
      "1.2.3.4.5",
      "AKIAQ3EGRLVZ2XKJ7N4M",
      "\u0410KIAQ3EGRLVZ2XKJ7N4M",
      "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
      "sk-3f9a0c1b7d2e4f6a8b0c1d2e3f4a5b6c",
      "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
      "xoxb-12345678901-123456789012-aBcDeFgHiJkLmNoPqRsTuVwX",
      "api_key = \"Zx8Qw3Er5Ty7Ui9Op1As\"",
      "password: hunter2hunter2X9",
      "https://user:s3cr3tPassw0rd@db.example.com",
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
      "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq9\n-----END RSA PRIVATE KEY-----",
      "3f9a0c1b7d2e4f6a8b0c1d2e3f4a5b6c.Ab3De5Fg7Hj9Kl1M",
      "\uff11\uff13\uff18\uff11\uff12\uff13"
      "\uff14\uff15\uff16\uff17\uff18",
      "ali\u200bce@exam\u200dple.com",
      "138\x01"
      "1234\x7f"
      "5678",
      "请把发票发给财务部门，并抄送项目经理。",
      "Привет, мир",
      "Καλημέρα",
      " ",
      "\n",
      ", ",
      ".",
      "-",
      ":",
      "@",
      "=",
      "\t",
      "(",
      ")",
      "/",
      "0",
      "9",
      "x",
      "\xff",
      "\xe4\xb8",
      "\u200b",
      "\u00ad",
      std::string(1, '\0'),
      "\u0455k-",
      "Order 2024-0001-5555",
      "9f86d081884c7d659a2feaa0c55ad015.a1B2c3D4e5F6g7H8",  // zhipu-api-key
      "9f86d081884c7d659a2feaa0c55ad01.a1B2c3D4e5F6g7H8",   // one hex digit short
      "v1.2.3",
      "12:30:45",
  };
  return pieces;
}

std::string RandomText(std::mt19937& rng, std::size_t pieces) {
  const auto& all = Pieces();
  std::uniform_int_distribution<std::size_t> pick(0, all.size() - 1);
  std::string text;
  for (std::size_t i = 0; i < pieces; ++i) text += all[pick(rng)];
  return text;
}

class DetectorEnginesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto re2 = DetectorSet::Create({.enabled = {}, .engine = DetectorEngine::kRe2Set});
    ASSERT_TRUE(re2.ok()) << re2.error().message();
    re2_ = std::move(*re2).release();
    if (DetectorEngineAvailable(DetectorEngine::kHyperscan)) {
      auto hs = DetectorSet::Create({.enabled = {}, .engine = DetectorEngine::kHyperscan});
      ASSERT_TRUE(hs.ok()) << hs.error().message();
      hs_ = std::move(*hs).release();
    }
  }
  static void TearDownTestSuite() {
    delete re2_;
    delete hs_;
  }
  // Every engine this build has.
  static std::vector<const DetectorSet*> Engines() {
    std::vector<const DetectorSet*> all{re2_};
    if (hs_) all.push_back(hs_);
    return all;
  }
  static inline DetectorSet* re2_ = nullptr;
  static inline DetectorSet* hs_ = nullptr;
};

TEST_F(DetectorEnginesTest, EngineNamesAndDefault) {
  EXPECT_EQ(re2_->engine_name(), "re2-set");
  if (hs_) {
    EXPECT_EQ(hs_->engine_name(), "hyperscan");
  } else {
    std::printf("Hyperscan not in this build or CPU: only RE2::Set is tested\n");
  }
  auto d = DetectorSet::Create();
  ASSERT_TRUE(d.ok());
  std::printf("default detector engine: %s\n", std::string((*d)->engine_name()).c_str());
}

// The findings on the labelled corpus, with both engines, are those recorded in
// corpus_findings.jsonl: lines 1-348 as main's detectors found them before the one-pass engine
// (commit 8114531, RE2::Set and one RE2 pass per rule), byte for byte, except line 329 (a card
// with "." separators, a known miss until card separators were widened); lines 349 on (the #13
// evasion cases appended to the corpus) as found once those evasions were closed.
TEST_F(DetectorEnginesTest, LabelledCorpusFindingsUnchangedWithEveryEngine) {
  auto texts = CorpusTexts();
  ASSERT_GT(texts.size(), 300u);
  std::ifstream in(std::string(AIRLOCK_SOURCE_DIR) + "/tests/data/detectors/corpus_findings.jsonl");
  ASSERT_TRUE(in) << "corpus_findings.jsonl missing";
  std::string line;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    ASSERT_TRUE(std::getline(in, line)) << "findings file shorter than the corpus";
    auto want = nlohmann::json::parse(line);
    for (const DetectorSet* set : Engines()) {
      nlohmann::json got = nlohmann::json::array();
      for (const Match& m : set->Scan(texts[i]))
        got.push_back({std::string(DataClassName(m.data_class)), m.rule, m.begin, m.end});
      EXPECT_EQ(got, want) << set->engine_name() << " on corpus line " << i + 1 << ": " << texts[i];
    }
  }
}

TEST_F(DetectorEnginesTest, EnginesAgreeOnGeneratedText) {
  if (!hs_) GTEST_SKIP() << "Hyperscan not in this build or not usable on this CPU";
  std::mt19937 rng(20261207);
  for (int round = 0; round < 800; ++round) {
    std::string text = RandomText(rng, 1 + round % 40);
    auto a = re2_->Scan(text), b = hs_->Scan(text);
    ASSERT_TRUE(a == b) << "text: "
                        << nlohmann::json(text).dump(-1, ' ', false,
                                                     nlohmann::json::error_handler_t::replace)
                        << "\nre2-set:   " << Describe(a, text)
                        << "\nhyperscan: " << Describe(b, text);
  }
  for (const auto& text : CorpusTexts()) ASSERT_TRUE(re2_->Scan(text) == hs_->Scan(text));
}

TEST_F(DetectorEnginesTest, EnginesAgreeOnLongRunsAndRandomBytes) {
  if (!hs_) GTEST_SKIP() << "Hyperscan not in this build or not usable on this CPU";
  std::vector<std::string> inputs = {std::string(100000, '4'), std::string(100000, 'a'),
                                     std::string(50000, ':') + "1",
                                     "api_key=" + std::string(50000, ' ') + "Zx8Qw3Er5Ty7Ui9Op1As"};
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string bytes(1 + rng() % 2000, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 4 == 0 ? "4 -.@:a1"[rng() % 8] : rng());
    inputs.push_back(bytes);
  }
  for (const auto& in : inputs) ASSERT_TRUE(re2_->Scan(in) == hs_->Scan(in));
}

// Attack (found by detector_engines_fuzz): invalid UTF-8 bytes with a control character between
// them joined into a valid character once the control was dropped ("alice\xEF\xBC" + "\x01" +
// "\xA0example.com" read as a full-width @, "to\xE2\x84" + "\x03" + "\xAAen" as KELVIN SIGN),
// a character the normalizer never mapped: the engines disagreed. Invalid bytes now read as
// U+FFFD, so nothing joins, and the engines agree.
TEST_F(DetectorEnginesTest, InvalidBytesAroundADroppedControlDoNotJoin) {
  for (const std::string text : {std::string("mail alice\xEF\xBC\x01\xA0"
                                             "example.com x"),
                                 std::string("to\xE2\x84\x03\xAA"
                                             "en=abcdefghijkl123"),
                                 std::string("\xF0\x9F\x01\x98\x80"
                                             " token=Zx8Qw3Er5Ty7Ui9Op1As")}) {
    for (const DetectorSet* engine : Engines()) {
      for (const Match& m : engine->Scan(text))
        EXPECT_EQ(text.substr(m.begin, m.end - m.begin).find('\x01'), std::string::npos)
            << Describe(engine->Scan(text), text);
    }
    if (hs_) {
      auto a = re2_->Scan(text), b = hs_->Scan(text);
      EXPECT_TRUE(a == b) << "re2-set:   " << Describe(a, text)
                          << "\nhyperscan: " << Describe(b, text);
    }
  }
}

// The payment-card anchor covers only the cards the validator accepts (rules.h, the weaker
// contract): text made of digit groups, separators and near-miss numbers, where the pattern
// matches often and the validator rejects most matches, gives Hyperscan's findings equal to
// RE2::Set's (whose regions are the whole text).
TEST_F(DetectorEnginesTest, CardAnchorEnginesAgreeOnDigitGroups) {
  if (!hs_) GTEST_SKIP() << "Hyperscan not in this build or not usable on this CPU";
  const std::vector<std::string> pieces = {"4111",
                                           "1111",
                                           "411111",
                                           "41111",
                                           "111",
                                           "1",
                                           "0",
                                           "5",
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
                                           ",",
                                           "a",
                                           "+",
                                           "=",
                                           "4111 1111 1111 1111",
                                           "3782 822463 10005",
                                           "4111-1111-1111-1111-111",
                                           "2024-0001-5555"};
  std::mt19937 rng(4111);
  int cards = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    for (int i = 0, n = 1 + round % 30; i < n; ++i) text += pieces[rng() % pieces.size()];
    auto a = re2_->Scan(text), b = hs_->Scan(text);
    for (const Match& m : a) cards += m.data_class == DataClass::kPaymentCard;
    ASSERT_TRUE(a == b) << "text: " << nlohmann::json(text).dump()
                        << "\nre2-set:   " << Describe(a, text)
                        << "\nhyperscan: " << Describe(b, text);
  }
  EXPECT_GT(cards, 100);  // the generator makes cards, or this test could not fail
}

// Classes whose rules are all found by the hand-written finders (policy/internal/anchor_scan.h)
// leave the Hyperscan prefilter without a database; it still finds what RE2::Set does.
TEST_F(DetectorEnginesTest, ClassesFoundOnlyByHandFindersScanAlike) {
  if (!hs_) GTEST_SKIP() << "Hyperscan not in this build or not usable on this CPU";
  std::mt19937 rng(20);
  std::vector<std::string> texts = CorpusTexts();
  for (int i = 0; i < 200; ++i) texts.push_back(RandomText(rng, 1 + i % 20));
  for (DataClass c : {DataClass::kPaymentCard, DataClass::kIban, DataClass::kUsSsn,
                      DataClass::kCnResidentId, DataClass::kIpAddress, DataClass::kEmail}) {
    auto hs = DetectorSet::Create({.enabled = {c}, .engine = DetectorEngine::kHyperscan});
    auto re2 = DetectorSet::Create({.enabled = {c}, .engine = DetectorEngine::kRe2Set});
    ASSERT_TRUE(hs.ok() && re2.ok()) << DataClassName(c);
    int found = 0;
    for (const std::string& text : texts) {
      auto a = (*re2)->Scan(text), b = (*hs)->Scan(text);
      found += static_cast<int>(a.size());
      ASSERT_TRUE(a == b) << DataClassName(c) << " " << nlohmann::json(text).dump()
                          << "\nre2-set:   " << Describe(a, text)
                          << "\nhyperscan: " << Describe(b, text);
    }
    EXPECT_GT(found, 0) << DataClassName(c);
  }
}

// Per-thread Hyperscan scratch space: sets created and destroyed in turn on one thread (a new
// database may take a freed one's address) and several sets used alternately all scan right.
TEST_F(DetectorEnginesTest, ManyDetectorSetsOnOneThreadScanAlike) {
  std::string text = "mail alice@example.com, card 4111 1111 1111 1111, host 10.20.30.40";
  auto want = re2_->Scan(text);
  ASSERT_EQ(want.size(), 3u);
  for (int i = 0; i < 4; ++i) {
    auto set = DetectorSet::Create(
        {.enabled = i % 2 ? std::vector<DataClass>{DataClass::kEmail} : std::vector<DataClass>{},
         .engine = DetectorEngine::kDefault});
    ASSERT_TRUE(set.ok());
    EXPECT_EQ((*set)->Scan(text).size(), i % 2 ? 1u : 3u);
    EXPECT_TRUE(re2_->Scan(text) == want);
    if (hs_) {
      EXPECT_TRUE(hs_->Scan(text) == want);
    }
  }
}

// Incremental scanning: whatever the chunking, the findings are those of one pass over the
// whole text, with absolute offsets, each reported once, never before the release point.
std::vector<Match> Streamed(const DetectorSet& set, std::string_view text,
                            const std::vector<std::size_t>& cuts, StreamScanner::Options options) {
  StreamScanner scanner(set, options);
  std::vector<Match> all;
  std::size_t released = 0, last = 0;
  auto take = [&](std::vector<Match> found) {
    for (Match& m : found) {
      EXPECT_GE(m.begin, released) << "a finding starts before bytes already released";
      EXPECT_LE(m.end, scanner.total());
      all.push_back(std::move(m));
    }
    EXPECT_GE(scanner.safe_to_release(), released);
    released = scanner.safe_to_release();
    EXPECT_LE(released, scanner.total());
  };
  for (std::size_t cut : cuts) {
    take(scanner.Feed(text.substr(last, cut - last)));
    last = cut;
  }
  take(scanner.Feed(text.substr(last)));
  take(scanner.Finish());
  EXPECT_EQ(scanner.safe_to_release(), text.size());
  return all;
}

std::vector<std::string> StreamTexts() {
  std::mt19937 rng(1207);
  std::vector<std::string> texts = {
      "Contact ops+alerts@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111, IBAN "
      "DE89 3704 0044 0532 0130 00, token ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5 and "
      "\u0430lice@ex\u0430mple.com, phone 138.1234.5678, id 11010519491231002X, host 10.20.30.40. "
      "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq9\n-----END RSA PRIVATE KEY----- done "
      "api_key = \"Zx8Qw3Er5Ty7Ui9Op1As\" \uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16"
      "\uff17\uff18 请把发票发给财务部门，并抄送 li.wei@example.cn 。"};
  for (int i = 0; i < 3; ++i) texts.push_back(RandomText(rng, 30 + 20 * i));
  return texts;
}

TEST_F(DetectorEnginesTest, StreamScannerSplitAtEveryPositionEqualsWholeText) {
  // Small windows so that the window really slides over these texts.
  StreamScanner::Options options{
      .hold_back = 200, .context = 400, .min_scan = 1, .max_window = 1 << 20};
  for (const DetectorSet* set : Engines()) {
    for (const std::string& text : StreamTexts()) {
      auto whole = set->Scan(text);
      ASSERT_FALSE(whole.empty());
      for (std::size_t cut = 0; cut <= text.size(); ++cut) {
        auto streamed = Streamed(*set, text, {cut}, options);
        ASSERT_TRUE(streamed == whole)
            << set->engine_name() << " split at " << cut << "\nwhole:    " << Describe(whole, text)
            << "\nstreamed: " << Describe(streamed, text);
      }
    }
  }
}

TEST_F(DetectorEnginesTest, StreamScannerByteByByteAndRandomChunksEqualWholeText) {
  std::mt19937 rng(99);
  for (const DetectorSet* set : Engines()) {
    for (const std::string& text : StreamTexts()) {
      auto whole = set->Scan(text);
      std::vector<std::size_t> every_byte;
      for (std::size_t i = 1; i < text.size(); ++i) every_byte.push_back(i);
      for (StreamScanner::Options options :
           {StreamScanner::Options{
                .hold_back = 200, .context = 400, .min_scan = 1, .max_window = 1 << 20},
            StreamScanner::Options{
                .hold_back = 200, .context = 400, .min_scan = 37, .max_window = 1 << 20},
            StreamScanner::Options{}}) {
        ASSERT_TRUE(Streamed(*set, text, every_byte, options) == whole) << text;
        for (int round = 0; round < 20; ++round) {
          std::vector<std::size_t> cuts;
          for (std::size_t at = rng() % 50; at < text.size(); at += 1 + rng() % 80)
            cuts.push_back(at);
          ASSERT_TRUE(Streamed(*set, text, cuts, options) == whole) << text;
        }
      }
    }
  }
}

TEST_F(DetectorEnginesTest, StreamScannerHoldsAGrowingPrivateKeyAndBoundsItsWindow) {
  StreamScanner scanner(*re2_,
                        {.hold_back = 64, .context = 128, .min_scan = 1, .max_window = 1 << 20});
  std::string head = "ok -----BEGIN RSA PRIVATE KEY-----\n";
  scanner.Feed(head);
  std::string body;
  for (int i = 0; i < 50; ++i) {
    std::string line = "MIIEowIBAAKCAQEA7bq9MIIEowIBAAKCAQEA7bq9MIIEowIBAAKCAQEA7bq9\n";
    body += line;
    EXPECT_TRUE(scanner.Feed(line).empty());
    // Nothing from the key's first byte on may be released while it is still open.
    EXPECT_LE(scanner.safe_to_release(), 3u);
  }
  auto found = scanner.Feed("-----END RSA PRIVATE KEY----- and then a long tail of text " +
                            std::string(200, '.'));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].begin, 3u);
  EXPECT_EQ(found[0].rule, "private-key");
  EXPECT_TRUE(scanner.Finish().empty());
}

}  // namespace
}  // namespace airlock::policy
