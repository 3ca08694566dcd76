// The hand-written confirmers (policy/internal/confirm.h) against RE2 on the same rule pattern:
// for every rule that has one, at many start and end bounds, on the labelled corpus and on
// random text built from the pieces the formats are made of, the confirmer gives RE2's match
// (whole match and group) or says it is unsure.
#include "policy/internal/confirm.h"

#include <gtest/gtest.h>
#include <re2/re2.h>

#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "policy/internal/rules.h"

namespace airlock::policy::internal {
namespace {

struct Checked {
  const Rule* rule;
  Confirmer confirmer;
  std::unique_ptr<RE2> re;
};

std::vector<Checked> RulesWithConfirmers() {
  std::vector<Checked> out;
  for (const Rule& rule : BuiltinRules()) {
    Confirmer c = ConfirmerFor(rule.id);
    if (!c) continue;
    RE2::Options options;
    options.set_log_errors(false);
    auto re =
        std::make_unique<RE2>(re2::StringPiece(rule.pattern.data(), rule.pattern.size()), options);
    EXPECT_TRUE(re->ok()) << rule.id;
    out.push_back({&rule, c, std::move(re)});
  }
  return out;
}

// Compares one confirmer call with RE2::Match on [from, limit); returns a description of the
// difference, empty when they agree (an unsure answer agrees with anything).
std::string Compare(const Checked& c, std::string_view text, std::size_t from, std::size_t limit,
                    int* unsure) {
  ConfirmedMatch got{};
  ConfirmResult r = c.confirmer(text, from, limit, &got);
  if (r == ConfirmResult::kUnsure) {
    ++*unsure;
    return {};
  }
  re2::StringPiece groups[2];
  bool want = c.re->Match(re2::StringPiece(text.data(), text.size()), from, limit, RE2::UNANCHORED,
                          groups, 2);
  auto describe = [&](std::size_t wb, std::size_t we, std::size_t b, std::size_t e) {
    return "[" + std::to_string(wb) + "," + std::to_string(we) + ") group [" + std::to_string(b) +
           "," + std::to_string(e) + ")";
  };
  std::string where = std::string(c.rule->id) + " from " + std::to_string(from) + " limit " +
                      std::to_string(limit) + " in " +
                      nlohmann::json(std::string(text))
                          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (!want)
    return r == ConfirmResult::kNoMatch
               ? ""
               : where + ": RE2 none, confirmer " +
                     describe(got.whole_begin, got.whole_end, got.begin, got.end);
  std::size_t wb = static_cast<std::size_t>(groups[0].data() - text.data());
  std::size_t b = static_cast<std::size_t>(groups[1].data() - text.data());
  std::string re2_says = describe(wb, wb + groups[0].size(), b, b + groups[1].size());
  if (r == ConfirmResult::kNoMatch) return where + ": RE2 " + re2_says + ", confirmer none";
  std::string mine = describe(got.whole_begin, got.whole_end, got.begin, got.end);
  return mine == re2_says ? "" : where + ": RE2 " + re2_says + ", confirmer " + mine;
}

// Pieces of every format the confirmers cover, near misses and boundaries.
const std::vector<std::string>& Pieces() {
  static const std::vector<std::string> pieces = {
      "alice",
      "a",
      "b.c",
      "x@",
      "@",
      "@@",
      ".",
      "..",
      "-",
      "_",
      "%",
      "+",
      "example",
      "com",
      ".com",
      "co",
      "c",
      "x-y",
      "-x",
      "a1",
      "é",
      "中",
      "\xff",
      "\xc5\xbf",
      "\xe2\x84\xaa",
      " ",
      "  ",
      "\t",
      "\n",
      "\f",
      "\v",
      "\r",
      "'",
      "\"",
      ":",
      "=",
      "==",
      "=>",
      "::",
      ":=",
      "0",
      "1",
      "9",
      "25",
      "255",
      "256",
      "249",
      "199",
      "10",
      "01",
      "300",
      "1.2.3.4",
      "10.20.30.40",
      "999",
      "api",
      "API",
      "key",
      "_key",
      "-key",
      "apikey",
      "secret",
      "SECRET",
      "token",
      "Token",
      "passwd",
      "password",
      "pwd",
      "access",
      "auth",
      "credential",
      "credentials",
      "client",
      "client_secret",
      "API_TOKEN",
      "Zx8Qw3Er5Ty7Ui9Op1As",
      "abcdefghijkl",
      "!@#$%^&*~",
      "ghp_",
      "gho_",
      "ghu_",
      "ghs_",
      "ghr_",
      "github_pat_",
      "glpat-",
      "glptt-",
      "npm_",
      "xoxb-",
      "xoxe-",
      "SK",
      "shpat_",
      "shpss_",
      "lin_api_",
      "hf_",
      "gsk_",
      "pplx-",
      "sk-",
      "AIza",
      "GOCSPX-",
      "LTAI",
      "dop_v1_",
      "HRKU-",
      "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
      "3f9a0c1b7d2e4f6a8b0c1d2e3f4a5b6c",
      "0123456789abcdef",
      "ABCDEF",
      "zzzz",
      "Q",
      "g",
      "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
      // A NUL byte (fuzzer find: a NUL inside a value was read as a value character).
      std::string(1, '\0'), std::string("abc\0def", 7),
      // Letters RE2 folds to ASCII under (?i): KELVIN SIGN, LONG S.
      "api_\u212Aey", "\u017Fecret", "to\u212Aen", "pa\u017F\u017Fword=", "x\u212A",
      // Whole items, so that every common format matches often.
      " ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5 ", " npm_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5 ",
      " 192.168.1.20 ", " 10.0.0.1", "2.25.255.0 ", " bob.smith+x@mail.example.org ",
      " alice@example.com.", " api_key = 'Zx8Qw3Er5Ty7Ui9Op1As' ", "\npassword: hunter2hunter2X9",
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

std::vector<std::string> CorpusTexts() {
  std::ifstream in(std::string(AIRLOCK_SOURCE_DIR) + "/tests/data/detectors/corpus.jsonl");
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(in, line)) texts.push_back(nlohmann::json::parse(line)["text"]);
  return texts;
}

TEST(ConfirmTest, CommonRulesHaveConfirmers) {
  for (std::string_view id : {"email", "ipv4", "generic-api-key", "github-pat"})
    EXPECT_NE(ConfirmerFor(id), nullptr) << id;
  EXPECT_EQ(ConfirmerFor("private-key"), nullptr);
  EXPECT_EQ(ConfirmerFor("no-such-rule"), nullptr);
}

TEST(ConfirmTest, ConfirmersEqualRe2OnTheLabelledCorpus) {
  auto checked = RulesWithConfirmers();
  auto texts = CorpusTexts();
  ASSERT_GT(texts.size(), 300u);
  int unsure = 0;
  for (const std::string& text : texts)
    for (const Checked& c : checked)
      for (std::size_t from = 0; from <= text.size(); from += 1 + from / 8)
        for (std::size_t limit : {text.size(), from + (text.size() - from) / 2}) {
          std::string diff = Compare(c, text, from, limit, &unsure);
          ASSERT_TRUE(diff.empty()) << diff;
        }
  std::printf("unsure answers (left to RE2): %d\n", unsure);
}

TEST(ConfirmTest, ConfirmersEqualRe2OnRandomText) {
  auto checked = RulesWithConfirmers();
  std::mt19937 rng(20261207);
  int unsure = 0, matches = 0;
  std::map<std::string_view, int> matches_by_rule;
  for (int round = 0; round < 6000; ++round) {
    std::string text = RandomText(rng, 1 + round % 24);
    for (const Checked& c : checked) {
      std::size_t from = rng() % (text.size() + 1);
      std::size_t limit = from + rng() % (text.size() - from + 1);
      for (auto [f, l] : {std::pair<std::size_t, std::size_t>{0, text.size()}, {from, limit}}) {
        std::string diff = Compare(c, text, f, l, &unsure);
        ASSERT_TRUE(diff.empty()) << diff;
        ConfirmedMatch m;
        if (c.confirmer(text, f, l, &m) == ConfirmResult::kMatch) {
          ++matches;
          ++matches_by_rule[c.rule->id];
        }
      }
    }
  }
  // The generator must produce matches, or this test could not fail.
  EXPECT_GT(matches, 500);
  for (std::string_view id : {"email", "ipv4", "generic-api-key", "github-pat", "npm-token"})
    EXPECT_GT(matches_by_rule[id], 20) << id;
  std::printf("matches %d, unsure answers (left to RE2): %d\n", matches, unsure);
}

// Each token format built to length, one character short, one too long, and glued to a word.
TEST(ConfirmTest, TokenFormatsAtTheirLengthBounds) {
  auto checked = RulesWithConfirmers();
  int unsure = 0;
  const std::string alphabet = "0123456789abcdefABCDEF_-xyzXYZ";
  for (const Checked& c : checked)
    for (std::string_view prefix :
         {"AIza",  "GOCSPX-", "LTAI",   "doo_v1_",     "dor_v1_", "HRKU-",  "ghp_",  "gho_",
          "ghu_",  "ghs_",    "ghr_",   "github_pat_", "glpat-",  "glptt-", "npm_",  "xoxb-",
          "xoxr-", "SK",      "shpca_", "lin_api_",    "hf_",     "gsk_",   "pplx-", "sk-"})
      for (std::size_t n : {9,  10, 19, 20, 27, 28, 31, 32, 33, 34, 35, 36, 37, 39, 40, 41, 47,
                            48, 49, 51, 52, 53, 59, 60, 61, 63, 64, 65, 75, 76, 77, 81, 82, 83})
        for (std::size_t a = 0; a < 3; ++a) {
          std::string body;
          for (std::size_t i = 0; i < n; ++i)
            body += alphabet[(i * 7 + a * 5) % (a == 0 ? 16 : a == 1 ? 10 : alphabet.size())];
          for (std::string text :
               {std::string(prefix) + body, "x " + std::string(prefix) + body + " y",
                "w" + std::string(prefix) + body, "-" + std::string(prefix) + body + "_",
                "中" + std::string(prefix) + body + "中"}) {
            std::string diff = Compare(c, text, 0, text.size(), &unsure);
            ASSERT_TRUE(diff.empty()) << diff;
            diff = Compare(c, text, 1, text.size(), &unsure);
            ASSERT_TRUE(diff.empty()) << diff;
          }
        }
}

}  // namespace
}  // namespace airlock::policy::internal
