// Red-team bypasses of the gateway's request governance (issue #13, F6 and F8), each closed as a
// class and tested by name:
//  * digit-grouped data (cards, SSN, resident ID, phones, IBAN, IP) and e-mail split between two
//    fields exactly at a group boundary with no separator at the cut ("card 4111 1111" +
//    "1111 1111", "ssn 536-22" + "4581"), at every byte, between messages, content parts and a
//    name and its content, and "alice@example.co" + "m";
//  * card groups on separate lines (LF, CRLF);
//  * encoded data: percent-encoding, HTML character references, backslash escapes (JSON text in a
//    JSON string), quoted-printable, base64 text data: URLs, nested up to the decoding rounds.
//  * (red team R4) both at once: a value split at a group boundary whose separators are
//    encoded ("card 4111%201111" + "1111%201111", "ssn 536%2D22" + "4581"), or with encoded
//    padding at the cut; (R6) numeric references and escapes with leading zeros, \U00000040.
// Detector-level tests use DetectorSet directly; the gateway tests run a real `airlock serve`
// (AIRLOCK_EXE) in front of a logging upstream (a TEST DOUBLE, RecordingUpstream in
// gateway_support.h), all on loopback, every wait bounded.
#include <chrono>
#include <fstream>
#include <memory>

#include "gateway_support.h"
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
using airlock::testing::RecordingUpstream;
using airlock::testing::ServeArgs;
using airlock::testing::ServeProcess;
using airlock::testing::ServeProcessOptions;
using json = nlohmann::json;

// Samples of every digit-grouped class (and e-mail), written with separators between groups.
const std::vector<std::pair<std::string, DataClass>>& GroupedSamples() {
  static const std::vector<std::pair<std::string, DataClass>> samples = {
      {"4111 1111 1111 1111", DataClass::kPaymentCard},
      {"4111-1111-1111-1111", DataClass::kPaymentCard},
      {"536-22-4581", DataClass::kUsSsn},
      {"11010519491231002X", DataClass::kCnResidentId},
      {"138 1234 5678", DataClass::kPhone},
      {"+86 138 1234 5678", DataClass::kPhone},
      {"DE89 3704 0044 0532 0130 00", DataClass::kIban},
      {"192.168.10.20", DataClass::kIpAddress},
      {"alice@example.com", DataClass::kEmail},
  };
  return samples;
}

// Letters and digits only: what is left of data however it is cut or padded.
std::string Compact(std::string_view s) {
  std::string out;
  for (char c : s)
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) out += c;
  return out;
}

class DecodedDetectionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto d = DetectorSet::Create();
    ASSERT_TRUE(d.ok());
    set_ = std::move(*d).release();
  }
  static void TearDownTestSuite() { delete set_; }

  // The one finding of `text`, which must cover `covered` exactly.
  static void ExpectFound(const std::string& text, DataClass cls, const std::string& covered) {
    std::vector<Match> found = set_->Scan(text);
    ASSERT_EQ(found.size(), 1u) << text;
    EXPECT_EQ(found[0].data_class, cls) << text;
    EXPECT_EQ(text.substr(found[0].begin, found[0].end - found[0].begin), covered) << text;
  }

  static inline DetectorSet* set_ = nullptr;
};

TEST_F(DecodedDetectionTest, PercentEncodedEmailAndCardAreFound) {
  ExpectFound("mail alice%40example.com now", DataClass::kEmail, "alice%40example.com");
  ExpectFound("https://x.example/?to=alice%40example.com&x=1", DataClass::kEmail,
              "alice%40example.com");
  ExpectFound("card 4111%201111%201111%201111 ok", DataClass::kPaymentCard,
              "4111%201111%201111%201111");
  ExpectFound("q=4111+1111+1111+1111", DataClass::kPaymentCard, "4111+1111+1111+1111");
  // Full-width @ percent-encoded as UTF-8 (decoded, then normalized).
  ExpectFound("alice%EF%BC%A0example.com", DataClass::kEmail, "alice%EF%BC%A0example.com");
  // Every character encoded.
  std::string all;
  for (char c : std::string("bob@example.org")) {
    char hex[4];
    std::snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(c));
    all += hex;
  }
  ExpectFound("x " + all + " y", DataClass::kEmail, all);
}

TEST_F(DecodedDetectionTest, HtmlNumericAndNamedReferencesAreFound) {
  for (std::string at : {"&#64;", "&#064;", "&#x40;", "&#X40;", "&commat;", "&#64"}) {
    std::string text = "<p>alice" + at + "example.com</p>";
    ExpectFound(text, DataClass::kEmail, "alice" + at + "example.com");
  }
  ExpectFound("alice&commat;example&period;com", DataClass::kEmail,
              "alice&commat;example&period;com");
  ExpectFound("ssn 536&hyphen;22&hyphen;4581", DataClass::kUsSsn, "536&hyphen;22&hyphen;4581");
  ExpectFound("4111&nbsp;1111&nbsp;1111&nbsp;1111", DataClass::kPaymentCard,
              "4111&nbsp;1111&nbsp;1111&nbsp;1111");
}

TEST_F(DecodedDetectionTest, BackslashEscapesInsideJsonStringsAreFound) {
  // Tool-call arguments are JSON text inside a JSON string: after the request is parsed, its
  // escapes are still there.
  ExpectFound(R"({"to":"alice\u0040example.com"})", DataClass::kEmail, R"(alice\u0040example.com)");
  ExpectFound(R"(alice\x40example.com)", DataClass::kEmail, R"(alice\x40example.com)");
  ExpectFound(R"(alice\u{40}example.com)", DataClass::kEmail, R"(alice\u{40}example.com)");
  ExpectFound(R"(alice\100example.com)", DataClass::kEmail, R"(alice\100example.com)");
  ExpectFound("alice%u0040example.com", DataClass::kEmail, "alice%u0040example.com");
  ExpectFound(R"({"card":"4111\n1111\n1111\n1111"})", DataClass::kPaymentCard,
              R"(4111\n1111\n1111\n1111)");
  // Full-width digits as JSON escapes (decoded, then normalized).
  ExpectFound(R"(tel \uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18)",
              DataClass::kPhone,
              R"(\uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18)");
}

TEST_F(DecodedDetectionTest, QuotedPrintableIsFound) {
  ExpectFound("To: alice=40example.com", DataClass::kEmail, "alice=40example.com");
  // A soft line break inside the address.
  ExpectFound("mail alice@exam=\r\nple.com ok", DataClass::kEmail, "alice@exam=\r\nple.com");
}

TEST_F(DecodedDetectionTest, Base64TextDataUrlIsFoundAndCutInPlace) {
  // base64("mail alice@example.com, card 4111 1111 1111 1111")
  const std::string payload = "bWFpbCBhbGljZUBleGFtcGxlLmNvbSwgY2FyZCA0MTExIDExMTEgMTExMSAxMTEx";
  const std::string text = "see data:text/plain;charset=utf-8;base64," + payload + " ok";
  std::vector<Match> found = set_->Scan(text);
  ASSERT_EQ(found.size(), 2u) << text;
  EXPECT_EQ(found[0].data_class, DataClass::kEmail);
  EXPECT_EQ(found[1].data_class, DataClass::kPaymentCard);
  // The findings cover whole groups of 4 characters inside the payload; cutting them leaves no
  // part of either value decodable.
  std::string cut = text;
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    EXPECT_GE(it->begin, text.find(payload));
    EXPECT_LE(it->end, text.find(payload) + payload.size());
    cut.replace(it->begin, it->end - it->begin, "[X]");
  }
  EXPECT_TRUE(set_->Scan(cut).empty()) << cut;
  // Not a text type: binary data is not decoded (documented; the gateway refuses a field that is
  // a data: URL).
  EXPECT_TRUE(set_->Scan("data:image/png;base64," + payload).empty());
}

// Attack (red team): a data: URL whose payload starts with the value passed, because the next
// decoding round read the decoded payload as base64 again behind the copied ";base64," marker.
TEST_F(DecodedDetectionTest, Base64DataUrlWhosePayloadStartsWithTheValueIsFound) {
  ExpectFound("see data:text/plain;base64,NDExMTExMTExMTExMTExMQ== ok", DataClass::kPaymentCard,
              "NDExMTExMTExMTExMTExMQ==");
  ExpectFound("see data:text/plain;base64,YWxpY2VAZXhhbXBsZS5jb20= ok", DataClass::kEmail,
              "YWxpY2VAZXhhbXBsZS5jb20=");
}

TEST_F(DecodedDetectionTest, NestedEncodingsAreDecodedUpToTheRoundLimit) {
  ExpectFound("alice%2540example.com", DataClass::kEmail, "alice%2540example.com");
  ExpectFound("alice&amp;#64;example.com", DataClass::kEmail, "alice&amp;#64;example.com");
  ExpectFound(R"(alice\\u0040example.com)", DataClass::kEmail, R"(alice\\u0040example.com)");
  ExpectFound("alice%252540example.com", DataClass::kEmail, "alice%252540example.com");
  // Four levels exceed the fixed number of rounds (3): documented as not decoded.
  EXPECT_TRUE(set_->Scan("alice%25252540example.com").empty());
}

// Decoding adds a reading; it never takes away what the text itself shows.
TEST_F(DecodedDetectionTest, DecodingNeverHidesWhatThePlainTextShows) {
  // "=13" would decode to U+0013 (dropped), "%20" inside a token to a blank.
  ExpectFound("phone=13812345678", DataClass::kPhone, "13812345678");
  ExpectFound("id=4111111111111111", DataClass::kPaymentCard, "4111111111111111");
  ExpectFound(R"(path C:\x41\alice@example.com)", DataClass::kEmail, "alice@example.com");
  ExpectFound("ops+alerts@example.com", DataClass::kEmail, "ops+alerts@example.com");
}

// Hostile input: deep or dense encodings, truncated escapes, huge data: URLs. Each call must
// return (linear work: every round's output is no longer than its input), and a finding's range
// stays inside the text.
TEST_F(DecodedDetectionTest, HostileEncodedInputIsBoundedAndNeverCrashes) {
  std::vector<std::string> inputs;
  std::string s;
  for (int i = 0; i < 100000; ++i) s += "%25";
  inputs.push_back(s);
  s.clear();
  for (int i = 0; i < 50000; ++i) s += "&amp;#6";
  inputs.push_back(s);
  s.clear();
  for (int i = 0; i < 50000; ++i) s += "\\\\u00";
  inputs.push_back(s + "\\u");
  inputs.push_back("data:text/plain;base64," + std::string(1 << 20, 'A'));
  inputs.push_back(std::string(1 << 16, '=') + "4");
  inputs.push_back("\\uD800\\uDC0");
  inputs.push_back("&#x110000;&#xD800;&#0;&#99999999999;&;&#;&#x;%;%4;\\x4;\\u{};=4");
  for (const std::string& in : inputs) {
    for (const Match& m : set_->Scan(in)) {
      EXPECT_LT(m.begin, m.end);
      EXPECT_LE(m.end, in.size());
    }
  }
}

// R6: numeric references and escapes with more digits than the value needs (leading zeros), and
// the eight-digit \U escape, are decoded.
TEST_F(DecodedDetectionTest, LongNumericReferencesWithLeadingZerosAreDecoded) {
  for (const std::string& at : std::vector<std::string>{
           "&#x00000040;", "&#000000064;", "&#0000000000064", "&#" + std::string(29, '0') + "64;",
           "\\U00000040", "\\u{000000040}", "\\u{" + std::string(30, '0') + "40}"}) {
    std::string text = "mail alice" + at + "example.com";
    ExpectFound(text, DataClass::kEmail, "alice" + at + "example.com");
  }
  ExpectFound("card 4111&#x0000000020;1111&#0000000032;1111\\U000000201111",
              DataClass::kPaymentCard, "4111&#x0000000020;1111&#0000000032;1111\\U000000201111");
}

// R6: what stays undecoded: a value past U+10FFFF, a run of digits longer than any reference
// needs (the output stays bounded), and a \U without its eight digits.
TEST_F(DecodedDetectionTest, OverlongOrOutOfRangeReferencesStayUndecoded) {
  for (const std::string& at : std::vector<std::string>{
           "&#x110040;", "&#x" + std::string(40, '0') + "40;", "&#" + std::string(40, '0') + "64;",
           "\\U00110040", "\\U0040", "\\u{" + std::string(40, '0') + "40}",
           "&#99999999999999999999999999;"}) {
    std::string text = "mail alice" + at + "example.com";
    EXPECT_TRUE(set_->Scan(text).empty()) << text;
  }
  // Hostile: endless zeros after one reference start, and many such starts; each call returns.
  for (const std::string& in : std::vector<std::string>{
           "&#x" + std::string(1 << 20, '0') + "40;", "\\u{" + std::string(1 << 20, '0'), [] {
             std::string s;
             for (int i = 0; i < 50000; ++i) s += "&#0000000000000000000000000000000000";
             return s;
           }()}) {
    for (const Match& m : set_->Scan(in)) EXPECT_LE(m.end, in.size());
  }
}

TEST_F(DecodedDetectionTest, CardGroupsOnSeparateLinesAreFound) {
  ExpectFound("card:\n4111\n1111\n1111\n1111\nthanks", DataClass::kPaymentCard,
              "4111\n1111\n1111\n1111");
  ExpectFound("card:\r\n4111\r\n1111\r\n1111\r\n1111\r\n", DataClass::kPaymentCard,
              "4111\r\n1111\r\n1111\r\n1111");
  ExpectFound("5500\n0000\n0000\n0004", DataClass::kPaymentCard, "5500\n0000\n0000\n0004");
  // A column of numbers that is not laid out as a card, or fails Luhn, is not one.
  EXPECT_TRUE(set_->Scan("2021\n2022\n2023\n2024\n").empty());
  EXPECT_TRUE(set_->Scan("4111\n1111\n1111\n1112\n").empty());
  EXPECT_TRUE(set_->Scan("4111\n1111 1111-1111").empty());
}

// ---- cross-field splits (the gateway's FindCrossFieldMatches) ----

class SplitAtGroupBoundaryTest : public DecodedDetectionTest {
 protected:
  // Fields as ScanUnits: each inner vector one unit (a message), each string one part of it.
  static std::vector<CrossFieldMatch> Cross(const std::vector<std::vector<std::string>>& units_in) {
    std::vector<std::vector<json>> values;
    for (const auto& parts : units_in) values.emplace_back(parts.begin(), parts.end());
    std::vector<ScanUnit> units;
    std::vector<std::string> joined;
    std::vector<std::vector<Match>> matches;
    for (auto& parts : values) {
      ScanUnit u;
      for (json& p : parts) u.parts.push_back(&p);
      units.push_back(u);
      joined.push_back(units.back().Joined());
      matches.push_back(set_->Scan(joined.back()));
    }
    return FindCrossFieldMatches(*set_, units, joined, matches);
  }
  // The class found for the value split at `cut` in this arrangement, by the unit scans or
  // across fields (what the gateway acts on).
  static bool Found(const std::vector<std::vector<std::string>>& units, DataClass cls) {
    for (const auto& c : Cross(units))
      if (c.data_class == cls) return true;
    for (const auto& parts : units) {
      std::string joined;
      for (const auto& p : parts) joined += p;
      for (const Match& m : set_->Scan(joined))
        if (m.data_class == cls) return true;
    }
    return false;
  }
};

TEST_F(SplitAtGroupBoundaryTest, CardAndSsnSplitAtAGroupBoundaryWithNoSeparatorAreFound) {
  EXPECT_TRUE(Found({{"card 4111 1111"}, {"1111 1111"}}, DataClass::kPaymentCard));
  EXPECT_TRUE(Found({{"ssn 536-22"}, {"4581"}}, DataClass::kUsSsn));
  EXPECT_TRUE(Found({{"card 4111 1111", "1111 1111"}}, DataClass::kPaymentCard));
  EXPECT_TRUE(Found({{"ssn 536-22", "4581 ok"}}, DataClass::kUsSsn));
  EXPECT_TRUE(Found({{"card 4111-1111-1111"}, {"1111 thanks"}}, DataClass::kPaymentCard));
  EXPECT_TRUE(Found({{"card 4111"}, {"1111 1111 1111"}}, DataClass::kPaymentCard));
}

// The two pieces of `value` cut at every byte: as they are, and where the cut falls on a
// separator between two digit groups, with that separator left out (the attack: "4111 1111" + "1111
// 1111").
std::vector<std::pair<std::string, std::string>> EveryCut(const std::string& value) {
  std::vector<std::pair<std::string, std::string>> cuts;
  for (std::size_t cut = 1; cut < value.size(); ++cut) {
    cuts.emplace_back(value.substr(0, cut), value.substr(cut));
    auto digit = [&](std::size_t i) { return value[i] >= '0' && value[i] <= '9'; };
    if (cut + 1 < value.size() && !digit(cut) && digit(cut - 1) && digit(cut + 1))
      cuts.emplace_back(value.substr(0, cut), value.substr(cut + 1));
  }
  return cuts;
}

// Every digit-grouped class split at every byte between two messages, two content parts of one
// message, and in reverse order, with and without the separator at a group boundary: found.
TEST_F(SplitAtGroupBoundaryTest, GroupedDataSplitAtEveryByteIsFound) {
  for (const auto& [value, cls] : GroupedSamples()) {
    for (const auto& [first, second] : EveryCut(value)) {
      std::string left = "see " + first, right = second + " ok";
      std::string where = value + " as '" + first + "' + '" + second + "'";
      EXPECT_TRUE(Found({{left}, {right}}, cls)) << where << " in two messages";
      EXPECT_TRUE(Found({{left, right}}, cls)) << where << " in two parts";
      EXPECT_TRUE(Found({{right}, {left}}, cls)) << where << " reversed";
    }
  }
}

// "alice@example.co" + "m": the first field alone holds an address; the joined reading wins, so
// the cut takes the glued-on "m" too and the placeholder stands for alice@example.com.
TEST_F(SplitAtGroupBoundaryTest, EmailWhoseLastLabelIsCompletedByTheNextFieldIsReadJoined) {
  auto found = Cross({{"mail alice@example.co"}, {"m please"}});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].value, "alice@example.com");
  ASSERT_EQ(found[0].pieces.size(), 2u);
  EXPECT_EQ(found[0].pieces[0].begin, 5u);
  EXPECT_EQ(found[0].pieces[1].end, 1u);
  // Two whole addresses glued together stay two findings of their own fields.
  EXPECT_TRUE(Cross({{"alice@example.com"}, {"bob@example.org"}}).empty());
}

// `text` with each character other than a letter or digit written in `encoding` ("%", "&#",
// "&#x", "\\u", "="; see Encoded).
std::string Encoded(const std::string& text, const std::string& encoding) {
  std::string out;
  for (char c : text) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      out += c;
      continue;
    }
    char buf[16];
    unsigned v = static_cast<unsigned char>(c);
    if (encoding == "%") std::snprintf(buf, sizeof buf, "%%%02X", v);
    if (encoding == "&#") std::snprintf(buf, sizeof buf, "&#%u;", v);
    if (encoding == "&#x") std::snprintf(buf, sizeof buf, "&#x%x;", v);
    if (encoding == "\\u") std::snprintf(buf, sizeof buf, "\\u%04x", v);
    if (encoding == "=") std::snprintf(buf, sizeof buf, "=%02X", v);
    out += buf;
  }
  return out;
}

// R4: the red team's strings: the value split between two fields exactly at a group boundary,
// the separators written encoded, so that neither field shows one in clear.
TEST_F(SplitAtGroupBoundaryTest, EncodedGroupSeparatorSplitAtAGroupBoundaryIsFound) {
  for (const char* sep : {"%20", "&#32;", "\\u0020", "=20", "&#x20;", "%u0020", "&nbsp;"}) {
    std::string s = sep;
    EXPECT_TRUE(Found({{"card 4111" + s + "1111"}, {"1111" + s + "1111"}}, DataClass::kPaymentCard))
        << s;
    EXPECT_TRUE(Found({{"card 4111" + s + "1111", "1111" + s + "1111"}}, DataClass::kPaymentCard))
        << s << " in two parts";
    EXPECT_TRUE(Found({{"1111" + s + "1111"}, {"card 4111" + s + "1111"}}, DataClass::kPaymentCard))
        << s << " reversed";
  }
  EXPECT_TRUE(Found({{"ssn 536%2D22"}, {"4581"}}, DataClass::kUsSsn));
  EXPECT_TRUE(Found({{"ssn 536&#45;22"}, {"4581"}}, DataClass::kUsSsn));
  EXPECT_TRUE(Found({{"ssn 536"}, {"22%2D4581"}}, DataClass::kUsSsn));
  // The separator encoded at the end of the first field, at the start of the second, the value
  // cut in the middle of an escape, and two encodings mixed.
  EXPECT_TRUE(Found({{"card 4111%20"}, {"1111%201111%201111"}}, DataClass::kPaymentCard));
  EXPECT_TRUE(Found({{"card 4111"}, {"%201111%201111%201111"}}, DataClass::kPaymentCard));
  EXPECT_TRUE(Found({{"card 4111%2"}, {"01111%201111%201111"}}, DataClass::kPaymentCard));
  EXPECT_TRUE(Found({{"card 4111&#32;1111"}, {"1111%201111"}}, DataClass::kPaymentCard));
  EXPECT_TRUE(Found({{"card 4111=201111"}, {"1111%201111"}}, DataClass::kPaymentCard));
  EXPECT_TRUE(Found({{"card 4111\\u00201111"}, {"1111&#x20;1111"}}, DataClass::kPaymentCard));
  // Other classes the same way: IBAN, phone, IP address.
  EXPECT_TRUE(Found({{"iban DE89%203704%200044"}, {"0532%200130%2000"}}, DataClass::kIban));
  EXPECT_TRUE(Found({{"phone 138%201234"}, {"5678"}}, DataClass::kPhone));
  EXPECT_TRUE(Found({{"ip 192%2E168%2E10"}, {"20"}}, DataClass::kIpAddress));
}

// R4: padding at the cut written encoded (a line break, a blank, a zero-width space): an e-mail
// and a token split there are read joined, as they are when the padding is in clear.
TEST_F(SplitAtGroupBoundaryTest, EncodedPaddingAtTheCutIsTrimmed) {
  EXPECT_TRUE(Found({{"mail alice%40%0A"}, {"example.com"}}, DataClass::kEmail));
  EXPECT_TRUE(Found({{"mail alice&#64;&#10;"}, {"&#32;example.com"}}, DataClass::kEmail));
  EXPECT_TRUE(Found({{"mail alice@"}, {"\\u200bexample.com"}}, DataClass::kEmail));
  EXPECT_TRUE(Found({{"token ghp_aB3dE5fG7hJ9kL1mN3pQ5r%E2%80%8B"}, {"S7tU9vW1xY3zA5"}},
                    DataClass::kSecret));
  EXPECT_TRUE(Found({{"card 4111 1111=20"}, {"=201111 1111"}}, DataClass::kPaymentCard));
}

// R4, as a class: every grouped sample with every separator encoded (five encodings), split at
// every byte (with and without the separator at a group boundary), between two messages, two
// parts and in reverse order: found.
TEST_F(SplitAtGroupBoundaryTest, GroupedDataWithEncodedSeparatorsSplitAtEveryByteIsFound) {
  for (const char* encoding : {"%", "&#", "&#x", "\\u", "="}) {
    for (const auto& [value, cls] : GroupedSamples()) {
      for (const auto& [first, second] : EveryCut(value)) {
        std::string left = "see " + Encoded(first, encoding), right = Encoded(second, encoding);
        if (right.empty()) continue;
        std::string where = value + " as '" + left + "' + '" + right + "'";
        EXPECT_TRUE(Found({{left}, {right}}, cls)) << where << " in two messages";
        EXPECT_TRUE(Found({{left, right}}, cls)) << where << " in two parts";
        EXPECT_TRUE(Found({{right}, {left}}, cls)) << where << " reversed";
      }
    }
  }
}

// The cut a decoded reading finds covers the encoded bytes of each field, and the placeholder
// stands for the decoded value.
TEST_F(SplitAtGroupBoundaryTest, EncodedSplitFindingCutsTheEncodedBytes) {
  auto found = Cross({{"card 4111%201111"}, {"1111%201111 ok"}});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].data_class, DataClass::kPaymentCard);
  EXPECT_EQ(Compact(found[0].value), "4111111111111111");
  ASSERT_EQ(found[0].pieces.size(), 2u);
  EXPECT_EQ(found[0].pieces[0].unit, 0u);
  EXPECT_EQ(found[0].pieces[0].begin, 5u);
  EXPECT_EQ(found[0].pieces[0].end, 16u);
  EXPECT_EQ(found[0].pieces[1].unit, 1u);
  EXPECT_EQ(found[0].pieces[1].begin, 0u);
  EXPECT_EQ(found[0].pieces[1].end, 11u);
}

// ---- end to end: a real gateway in front of a logging upstream ----

// The upstream's answer to every request: a fixed one (the tests look at what it received).
void AnswerOk(const httplib::Request&, httplib::Response& res) {
  json answer = {{"id", "up-1"},
                 {"object", "chat.completion"},
                 {"created", 0},
                 {"model", "echo"},
                 {"choices", json::array({{{"index", 0},
                                           {"message", {{"role", "assistant"}, {"content", "ok"}}},
                                           {"finish_reason", "stop"}}})},
                 {"usage", {{"prompt_tokens", 1}, {"completion_tokens", 1}, {"total_tokens", 2}}}};
  res.set_content(answer.dump(), "application/json");
}

class GatewayEncodedSplitTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new airlock::testing::TempDir("leak");
    upstream_ = new RecordingUpstream(AnswerOk);
    std::string config = (dir_->path() / "policy.toml").string();
    std::ofstream(config) << "[[upstreams]]\nname='us'\nbase_url='http://127.0.0.1:"
                          << upstream_->port()
                          << "/v1'\njurisdiction='US'\nmodels=['echo']\n"
                             "[[rules]]\ndata_classes=['email','phone','payment_card','iban',"
                             "'us_ssn','cn_resident_id','ip_address','secret']\naction='redact'\n"
                             "[audit]\npath='"
                          << (dir_->path() / "audit.db").string() << "'\n";
    serve_ = new ServeProcess(ServeArgs(config), ServeProcessOptions{.stop_signal = SIGTERM});
    port_ = serve_->port();
  }
  static void TearDownTestSuite() {
    delete serve_;
    delete upstream_;
    delete dir_;
  }
  void SetUp() override { ASSERT_GT(port_, 0) << "airlock serve did not start"; }
  static const DetectorSet& set() {
    static const std::unique_ptr<DetectorSet> detectors = std::move(*DetectorSet::Create());
    return *detectors;
  }

  // Sends `messages`; expects 200 and returns every string of the forwarded messages in order.
  static std::vector<std::string> Forwarded(const json& messages, const std::string& what) {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(20, 0);
    json body = {{"model", "echo"}, {"messages", messages}};
    std::size_t before = upstream_->count();
    auto r = client.Post("/v1/chat/completions", {{"Authorization", "Bearer any"}}, body.dump(),
                         "application/json");
    std::vector<std::string> texts;
    EXPECT_TRUE(r) << what;
    if (!r) return texts;
    EXPECT_EQ(r->status, 200) << what << ": " << r->body;
    EXPECT_EQ(upstream_->count(), before + 1) << what;
    json sent = json::parse(upstream_->last(), nullptr, false);
    if (!sent.is_object() || !sent.contains("messages")) return texts;
    std::function<void(const json&)> collect = [&](const json& j) {
      if (j.is_string()) texts.push_back(j.get<std::string>());
      if (j.is_array() || j.is_object())
        for (const auto& e : j) collect(e);
    };
    for (const auto& m : sent["messages"]) {
      json copy = m;
      copy.erase("role");
      collect(copy);
    }
    return texts;
  }
  // The value's letters and digits appear nowhere in the forwarded text read in order or in
  // reverse (what a logging upstream could put back together).
  static void ExpectNotLeaked(const std::vector<std::string>& texts, const std::string& value,
                              const std::string& what) {
    std::string forward, backward;
    for (const auto& t : texts) forward += t;
    for (auto it = texts.rbegin(); it != texts.rend(); ++it) backward += *it;
    const std::string needle = Compact(value);
    EXPECT_EQ(Compact(forward).find(needle), std::string::npos) << what << ": " << forward;
    EXPECT_EQ(Compact(backward).find(needle), std::string::npos) << what << ": " << backward;
  }

  static inline airlock::testing::TempDir* dir_ = nullptr;
  static inline RecordingUpstream* upstream_ = nullptr;
  static inline ServeProcess* serve_ = nullptr;
  static inline int port_ = 0;
};

TEST_F(GatewayEncodedSplitTest, CardAndSsnSplitAtAGroupBoundaryNeverReachTheUpstream) {
  auto msg = [](json content) { return json{{"role", "user"}, {"content", content}}; };
  ExpectNotLeaked(Forwarded(json::array({msg("card 4111 1111"), msg("1111 1111")}), "card"),
                  "4111111111111111", "card in two messages");
  ExpectNotLeaked(Forwarded(json::array({msg("ssn 536-22"), msg("4581")}), "ssn"), "536224581",
                  "ssn in two messages");
  ExpectNotLeaked(
      Forwarded(json::array({msg("mail alice@example.co"), msg("m")}), "email last label"),
      "alice@example.com", "email completed by the next message");
  ExpectNotLeaked(Forwarded(json::array({msg("card\n4111\n1111\n1111\n1111")}), "lines"),
                  "4111111111111111", "card on four lines");
  ExpectNotLeaked(Forwarded(json::array({msg("card\r\n4111\r\n1111\r\n1111\r\n1111")}), "crlf"),
                  "4111111111111111", "card on four CRLF lines");
}

// R4 end to end: the red team's strings (the separators encoded, none at the cut) between two
// messages: no digit group of the value reaches the upstream.
TEST_F(GatewayEncodedSplitTest, EncodedGroupSeparatorSplitAtAGroupBoundaryNeverReachesTheUpstream) {
  auto msg = [](const std::string& content) {
    return json{{"role", "user"}, {"content", content}};
  };
  for (const char* sep : {"%20", "&#32;", "\\u0020", "=20"}) {
    std::string s = sep;
    auto texts =
        Forwarded(json::array({msg("card 4111" + s + "1111"), msg("1111" + s + "1111")}), s);
    std::string all;
    for (const auto& t : texts) all += t + "|";
    EXPECT_EQ(all.find("4111"), std::string::npos) << s << " -> " << all;
    EXPECT_EQ(all.find("1111"), std::string::npos) << s << " -> " << all;
  }
  auto texts = Forwarded(json::array({msg("ssn 536%2D22"), msg("4581")}), "ssn");
  std::string all;
  for (const auto& t : texts) all += t + "|";
  EXPECT_EQ(all.find("536"), std::string::npos) << all;
  EXPECT_EQ(all.find("4581"), std::string::npos) << all;
}

// Each sample split at every byte across two messages, two content parts, and a message's name
// and content: the upstream never receives it.
TEST_F(GatewayEncodedSplitTest, GroupedDataSplitAtEveryByteNeverReachesTheUpstream) {
  auto part = [](const std::string& t) { return json{{"type", "text"}, {"text", t}}; };
  for (const auto& [value, cls] : GroupedSamples()) {
    for (const auto& [first, second] : EveryCut(value)) {
      std::string left = "see " + first, right = second + " ok";
      std::string where = value + " as '" + first + "' + '" + second + "'";
      ExpectNotLeaked(Forwarded(json::array({{{"role", "user"}, {"content", left}},
                                             {{"role", "user"}, {"content", right}}}),
                                where),
                      value, "messages: " + where);
      ExpectNotLeaked(
          Forwarded(json::array(
                        {{{"role", "user"}, {"content", json::array({part(left), part(right)})}}}),
                    where),
          value, "parts: " + where);
      // The first piece as the message's name, the rest as its content.
      ExpectNotLeaked(
          Forwarded(json::array({{{"role", "user"}, {"name", first}, {"content", right}}}), where),
          value, "name and content: " + where);
    }
  }
}

// Encoded data in message text and in tool-call arguments (JSON text inside a JSON string): the
// upstream gets the encoded bytes cut, never a decodable copy.
TEST_F(GatewayEncodedSplitTest, EncodedDataNeverReachesTheUpstream) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"mail alice%40example.com", "alice@example.com"},
      {"card 4111%201111%201111%201111", "4111111111111111"},
      {"mail alice&#64;example.com", "alice@example.com"},
      {"mail alice&commat;example.com", "alice@example.com"},
      {"mail alice&#x40;example.com", "alice@example.com"},
      {"mail alice=40example.com", "alice@example.com"},
      {"mail alice%2540example.com", "alice@example.com"},
      {"see data:text/plain;base64,bWFpbCBhbGljZUBleGFtcGxlLmNvbQ==", "alice@example.com"},
  };
  for (const auto& [text, value] : cases) {
    auto texts = Forwarded(json::array({{{"role", "user"}, {"content", text}}}), text);
    std::string all;
    for (const auto& t : texts) all += t;
    // Whatever is left, decoded again, holds no finding.
    EXPECT_TRUE(set().Scan(all).empty()) << text << " -> " << all;
    EXPECT_EQ(all.find("example"), std::string::npos) << text << " -> " << all;
  }
  // Tool-call arguments: JSON text with \u0040 escapes (and a card on escaped line breaks).
  json messages = json::array(
      {{{"role", "user"}, {"content", "send it"}},
       {{"role", "assistant"},
        {"content", nullptr},
        {"tool_calls",
         json::array(
             {{{"id", "c1"},
               {"type", "function"},
               {"function",
                {{"name", "send"},
                 {"arguments",
                  R"({"to":"alice\u0040example.com","card":"4111\n1111\n1111\n1111"})"}}}}})}},
       {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "sent"}}});
  auto texts = Forwarded(messages, "tool call arguments");
  std::string all;
  for (const auto& t : texts) all += t;
  EXPECT_EQ(all.find("example"), std::string::npos) << all;
  EXPECT_EQ(Compact(all).find("4111n1111n1111n1111"), std::string::npos) << all;
  EXPECT_TRUE(set().Scan(all).empty()) << all;
}

// R4 with a block rule: the encoded split is refused (403) and nothing is forwarded.
class GatewayEncodedSplitBlockTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new airlock::testing::TempDir("leak-block");
    upstream_ = new RecordingUpstream(AnswerOk);
    std::string config = (dir_->path() / "policy.toml").string();
    std::ofstream(config) << "[[upstreams]]\nname='us'\nbase_url='http://127.0.0.1:"
                          << upstream_->port()
                          << "/v1'\njurisdiction='US'\nmodels=['echo']\n"
                             "[[rules]]\ndata_classes=['us_ssn','payment_card']\naction='block'\n"
                             "[audit]\npath='"
                          << (dir_->path() / "audit.db").string() << "'\n";
    serve_ = new ServeProcess(ServeArgs(config), ServeProcessOptions{.stop_signal = SIGTERM});
    port_ = serve_->port();
  }
  static void TearDownTestSuite() {
    delete serve_;
    delete upstream_;
    delete dir_;
  }
  void SetUp() override { ASSERT_GT(port_, 0) << "airlock serve did not start"; }

  static void ExpectRefused(const std::vector<std::string>& contents, const std::string& what) {
    json messages = json::array();
    for (const auto& c : contents) messages.push_back({{"role", "user"}, {"content", c}});
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(20, 0);
    std::size_t before = upstream_->count();
    auto r =
        client.Post("/v1/chat/completions", {{"Authorization", "Bearer any"}},
                    json{{"model", "echo"}, {"messages", messages}}.dump(), "application/json");
    ASSERT_TRUE(r) << what;
    EXPECT_EQ(r->status, 403) << what << ": " << r->body;
    EXPECT_EQ(upstream_->count(), before) << what;
  }

  static inline airlock::testing::TempDir* dir_ = nullptr;
  static inline RecordingUpstream* upstream_ = nullptr;
  static inline ServeProcess* serve_ = nullptr;
  static inline int port_ = 0;
};

TEST_F(GatewayEncodedSplitBlockTest, EncodedSsnSplitAtAGroupBoundaryIsRefusedByABlockRule) {
  ExpectRefused({"ssn 536%2D22", "4581"}, "ssn %2D");
  ExpectRefused({"ssn 536&#45;22", "4581"}, "ssn &#45;");
  ExpectRefused({"card 4111%201111", "1111%201111"}, "card %20");
  ExpectRefused({"card 4111=201111", "1111=201111"}, "card =20");
  ExpectRefused({"card 4111\\u00201111", "1111\\u00201111"}, "card \\u0020");
  ExpectRefused({"card 4111&#32;1111", "1111&#32;1111"}, "card &#32;");
}

}  // namespace
