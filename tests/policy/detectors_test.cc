// Detector unit tests (each class, check digits, secret rules) and the labelled-corpus evaluation
// whose precision/recall figures are reported in docs/detectors.md.
#include "policy/detectors.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "policy/internal/normalize.h"

namespace airlock::policy {
namespace {

class DetectorsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto d = DetectorSet::Create();
    ASSERT_TRUE(d.ok()) << d.error().message();
    set_ = std::move(*d).release();
  }
  static void TearDownTestSuite() { delete set_; }
  // The (class, text) pairs found in `text`.
  static std::vector<std::pair<DataClass, std::string>> Found(std::string_view text) {
    std::vector<std::pair<DataClass, std::string>> out;
    for (const Match& m : set_->Scan(text))
      out.emplace_back(m.data_class, std::string(text.substr(m.begin, m.end - m.begin)));
    return out;
  }
  static bool Has(std::string_view text, DataClass c, std::string_view value) {
    for (const auto& [fc, fv] : Found(text))
      if (fc == c && fv == value) return true;
    return false;
  }
  static bool HasClass(std::string_view text, DataClass c) {
    for (const auto& [fc, fv] : Found(text))
      if (fc == c) return true;
    return false;
  }
  static inline DetectorSet* set_ = nullptr;
};

TEST(Validators, Luhn) {
  EXPECT_TRUE(LuhnValid("4111 1111 1111 1111"));
  EXPECT_TRUE(LuhnValid("378282246310005"));
  EXPECT_FALSE(LuhnValid("4111 1111 1111 1112"));
  EXPECT_FALSE(LuhnValid("1"));
}

TEST(Validators, IbanMod97) {
  EXPECT_TRUE(IbanValid("DE89 3704 0044 0532 0130 00"));
  EXPECT_TRUE(IbanValid("GB82WEST12345698765432"));
  EXPECT_FALSE(IbanValid("DE89 3704 0044 0532 0130 01"));  // check digits wrong
  EXPECT_FALSE(IbanValid("DE89 3704 0044 0532 0130"));     // wrong length for DE
  EXPECT_FALSE(IbanValid("XX"));
}

TEST(Validators, ChineseResidentIdChecksum) {
  EXPECT_TRUE(CnResidentIdValid("11010519491231002X"));
  EXPECT_TRUE(CnResidentIdValid("11010519491231002x"));
  EXPECT_FALSE(CnResidentIdValid("110105194912310021"));
  EXPECT_FALSE(CnResidentIdValid("1101051949123100"));
}

TEST(Validators, UsSsn) {
  EXPECT_TRUE(UsSsnPlausible("536-22-1234"));
  EXPECT_FALSE(UsSsnPlausible("000-22-1234"));
  EXPECT_FALSE(UsSsnPlausible("666-22-1234"));
  EXPECT_FALSE(UsSsnPlausible("936-22-1234"));
  EXPECT_FALSE(UsSsnPlausible("536-00-1234"));
  EXPECT_FALSE(UsSsnPlausible("536-22-0000"));
  EXPECT_FALSE(UsSsnPlausible("536-22 1234"));  // mixed separators
  EXPECT_FALSE(UsSsnPlausible("078-05-1120"));  // the famous wallet sample
}

TEST(Validators, Entropy) {
  EXPECT_DOUBLE_EQ(ShannonEntropy(""), 0.0);
  EXPECT_DOUBLE_EQ(ShannonEntropy("aaaa"), 0.0);
  EXPECT_DOUBLE_EQ(ShannonEntropy("abcd"), 2.0);
}

TEST(DataClasses, NamesRoundTrip) {
  for (int i = 0; i < kDataClassCount; ++i) {
    auto c = static_cast<DataClass>(i);
    auto back = ParseDataClass(DataClassName(c));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, c);
  }
  EXPECT_FALSE(ParseDataClass("mail").has_value());
}

// Evasion by Unicode (issue #13): full-width forms and invisible format characters are read
// normalized, and the match covers the original bytes, so redaction cuts exactly those.
TEST_F(DetectorsTest, FullWidthDigitsAndAtSignAreFound) {
  EXPECT_TRUE(Has("call \uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18 now",
                  DataClass::kPhone,
                  "\uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"));
  EXPECT_TRUE(
      Has("mail alice\uff20example.com today", DataClass::kEmail, "alice\uff20example.com"));
  EXPECT_TRUE(HasClass("card \uff14\uff11\uff11\uff11 1111 1111 1111", DataClass::kPaymentCard));
}

TEST_F(DetectorsTest, ZeroWidthAndFormatCharactersInsideDataAreFound) {
  const std::string zwsp = "\u200b", zwj = "\u200d", shy = "\u00ad", wj = "\u2060";
  std::string email = "ali" + zwsp + "ce@exam" + zwj + "ple.com";
  EXPECT_TRUE(Has("write to " + email + " please", DataClass::kEmail, email));
  std::string phone = "138" + shy + "1234" + wj + "5678";
  EXPECT_TRUE(Has("phone " + phone, DataClass::kPhone, phone));
  std::string token = "ghp_aB3dE5fG7hJ9kL1mN3pQ5r" + zwsp + "S7tU9vW1xY3zA5";
  EXPECT_TRUE(HasClass("token " + token, DataClass::kSecret));
}

// Hostile input to the normalizer: nothing but invisible characters, truncated UTF-8 between
// full-width digits, and a zero-width character between every byte of an address. Offsets must
// stay inside the text and cover the original bytes (ASan checks the reads).
TEST_F(DetectorsTest, HostileTextForTheNormalizerStaysInBounds) {
  std::string invisible;
  for (int i = 0; i < 10000; ++i) invisible += "\u200b";
  EXPECT_TRUE(set_->Scan(invisible).empty());
  std::string broken = "\xef\xbc\x91\xe2\x80\xef\xbc\x93\xc3\xef\xbc\x98\xf0\x9f";
  for (const Match& m : set_->Scan(broken)) EXPECT_LE(m.end, broken.size());
  std::string spread;
  for (char c : std::string("eve@example.com")) spread += std::string(1, c) + "\u200b";
  auto m = set_->Scan("to " + spread + " now");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].begin, 3u);
  EXPECT_EQ(m[0].end, 3u + spread.size() - 3);  // the last zero-width space is not part of it
}

TEST_F(DetectorsTest, NormalizationKeepsOffsetsOfUntouchedText) {
  // Chinese text around an ASCII e-mail: offsets are those of the original bytes.
  std::string text = "\u8bf7\u8054\u7cfb alice@example.com \u8c22\u8c22";
  auto m = set_->Scan(text);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(text.substr(m[0].begin, m[0].end - m[0].begin), "alice@example.com");
  // Invalid UTF-8 is read as it is, never dropped or crashed on.
  std::string bad = "\xff\xfe bob@example.org \xc3";
  auto b = set_->Scan(bad);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(bad.substr(b[0].begin, b[0].end - b[0].begin), "bob@example.org");
}

// Evasion by confusable letters (issue #13, Unicode TS #39 skeletons): Cyrillic and Greek letters
// that look like Latin ones inside an address or a token prefix. The match covers the original
// (Cyrillic) bytes.
TEST_F(DetectorsTest, CyrillicLookalikeLettersInEmailAreFound) {
  const std::string cyr_a = "\u0430";  // Cyrillic small a
  std::string email = cyr_a + "lice@ex" + cyr_a + "mple.com";
  EXPECT_TRUE(Has("write to " + email + " today", DataClass::kEmail, email));
  // Cyrillic о and е in the domain only, Greek omicron in the local part.
  std::string domain_only = "bob@g\u043e\u043egl\u0435.com";
  EXPECT_TRUE(Has("cc " + domain_only, DataClass::kEmail, domain_only));
  std::string greek = "j\u03bfhn@example.org";
  EXPECT_TRUE(Has(greek + " wrote", DataClass::kEmail, greek));
}

TEST_F(DetectorsTest, LookalikeLettersInSecretTokenPrefixesAreFound) {
  // Cyrillic dze "ѕ" in "sk-", Cyrillic capital А in "AKIA", Greek capital Iota and Alpha,
  // Cyrillic er "р" in "ghp_".
  std::string deepseek = "\u0455k-3f9a0c1b7d2e4f6a8b0c1d2e3f4a5b6c";
  EXPECT_TRUE(Has("key " + deepseek + " end", DataClass::kSecret, deepseek));
  std::string aws = "\u0410KIAQ3EGRLVZ2XKJ7N4M";
  EXPECT_TRUE(Has("id " + aws + " end", DataClass::kSecret, aws));
  std::string aws_greek = "AK\u0399\u0391Q3EGRLVZ2XKJ7N4M";
  EXPECT_TRUE(Has("id " + aws_greek + " end", DataClass::kSecret, aws_greek));
  std::string github = "gh\u0440_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
  EXPECT_TRUE(Has("token " + github, DataClass::kSecret, github));
}

// Genuine Cyrillic, Greek and Chinese text must not turn into findings once confusable letters
// are read as Latin ones; real data inside such text is still found with its own bytes.
TEST_F(DetectorsTest, GenuineCyrillicGreekAndChineseTextGivesNoFalsePositives) {
  const std::vector<std::string> texts = {
      "Привет! Сегодня мы обсудим отчёт за третий квартал: выручка выросла на 12 процентов, "
      "расходы сократились. Секрет успеха — команда. Пароль от Wi-Fi спросите у администратора.",
      "Москва, ул. Тверская, д. 7, кв. 15. Телефон отдела кадров указан на сайте. АВС-123 ХЕР",
      "Καλημέρα σας! Η ΑΚΡΟΠΟΛΗ ΑΘΗΝΩΝ είναι ανοιχτή από τις 8 έως τις 20. Ο κωδικός ΑΙΚΑ "
      "δεν είναι μυστικός. ΕΠΙΚΟΙΝΩΝΙΑ: ΤΗΛΕΦΩΝΟ ΚΑΙ ΤΑΧΥΔΡΟΜΕΙΟ.",
      "请把发票发给财务部门，并抄送项目经理。会议定于下午三点，地点在三楼会议室。二〇二四年。",
      "Токен АКІА: смотри раздел ЕКО-5. секрет=пароль token: ТОКЕН_ОТ_СЕРВИСА",
  };
  for (const auto& text : texts) {
    auto found = Found(text);
    EXPECT_TRUE(found.empty()) << text << " -> " << (found.empty() ? "" : found[0].second);
  }
  std::string mixed = "Пишите: ivan.petrov@example.ru, тел. +7 495 123 45 67. Ευχαριστώ!";
  EXPECT_TRUE(Has(mixed, DataClass::kEmail, "ivan.petrov@example.ru"));
  EXPECT_TRUE(Has(mixed, DataClass::kPhone, "+7 495 123 45 67"));
  EXPECT_EQ(Found(mixed).size(), 2u);
}

// Phone numbers written with dots, blanks, dashes, slashes or parentheses (issue #13), for both
// phone rules (E.164 and Chinese mobile).
TEST_F(DetectorsTest, PhoneNumbersWithDotsAndOtherSeparatorsAreFound) {
  for (std::string phone :
       {"138.1234.5678", "138 1234 5678", "138-1234-5678", "(138)1234-5678", "(138) 1234 5678",
        "(138).1234.5678", "+86 138.1234.5678", "+86.138.1234.5678", "+86 (138)1234-5678"}) {
    EXPECT_TRUE(Has("call " + phone + " today", DataClass::kPhone, phone)) << phone;
    EXPECT_TRUE(Has("电话" + phone + "。", DataClass::kPhone, phone)) << phone;
  }
  for (std::string phone : {"+44.20.7946.0958", "+1 (415) 555-0132", "+1.415.555.0132",
                            "+49 30/1234567", "+33 1-23-45-67-89", "+44 (20) 7946.0958"}) {
    EXPECT_TRUE(Has("call " + phone + " today", DataClass::kPhone, phone)) << phone;
  }
  // A decimal number and a dotted version are not phones.
  EXPECT_FALSE(HasClass("price 138.12345678 today", DataClass::kPhone));
  EXPECT_FALSE(HasClass("release 13.8.1234.5678", DataClass::kPhone));
}

// Found by an outside attack on the gateway (#13): a Chinese mobile number with its country code
// but no "+" (8613812345678, 0086...), international numbers dialled with "00", and cards whose
// groups are separated by "/", "_", a tab, two blanks or " - " passed.
TEST_F(DetectorsTest, CountryCodeWithoutPlusAndOtherCardSeparatorsAreFound) {
  for (std::string phone : {"8613812345678", "86 138 1234 5678", "86-138-1234-5678",
                            "0086 138 1234 5678", "008613812345678", "86(138)1234-5678"}) {
    EXPECT_TRUE(Has("call " + phone + " today", DataClass::kPhone, phone)) << phone;
    EXPECT_TRUE(Has("电话" + phone + "。", DataClass::kPhone, phone)) << phone;
  }
  for (std::string phone : {"0044 20 7946 0958", "001-415-555-0132", "0049 30/1234567"})
    EXPECT_TRUE(Has("call " + phone + " today", DataClass::kPhone, phone)) << phone;
  // A run of digits after "00" is an account or order number, not a dialled phone.
  EXPECT_FALSE(HasClass("account 004420794609581 ok", DataClass::kPhone));
  EXPECT_FALSE(HasClass("order 0012345678 ok", DataClass::kPhone));
  for (std::string sep : {"/", "_", "\t", "  ", " - ", " / ", ".", ":", "|", "\\", "~"}) {
    std::string card = "4111" + sep + "1111" + sep + "1111" + sep + "1111";
    EXPECT_TRUE(Has("card " + card + " exp", DataClass::kPaymentCard, card)) << sep;
    std::string amex = "3782" + sep + "822463" + sep + "10005";
    EXPECT_TRUE(Has("amex " + amex + " exp", DataClass::kPaymentCard, amex)) << sep;
  }
  // A card followed by another number after a different separator is still found, alone.
  EXPECT_TRUE(
      Has("cards 4111 1111 1111 1111, 12 more", DataClass::kPaymentCard, "4111 1111 1111 1111"));
  EXPECT_TRUE(
      Has("card 4111 1111 1111 1111 12 exp", DataClass::kPaymentCard, "4111 1111 1111 1111"));
  // Mixed separators and lists stay apart. A card written one group per line is a card (red
  // team, issue #13 F6; see encoded_and_split_data_test.cc).
  EXPECT_FALSE(HasClass("card 4111/1111_1111/1111 exp", DataClass::kPaymentCard));
  EXPECT_FALSE(HasClass("ids 4111,1111,1111,1111 exp", DataClass::kPaymentCard));
  EXPECT_TRUE(HasClass("4111\n1111\n1111\n1111", DataClass::kPaymentCard));
  EXPECT_FALSE(HasClass("card 4111/1111/1111/1112 exp", DataClass::kPaymentCard));  // Luhn
}

// NUL and other control characters inside data (issue #13): after JSON decoding "\u0000" or
// "\u001b" are real bytes. They are read as absent; the match covers the original bytes.
TEST_F(DetectorsTest, ControlCharactersInsideDataAreFound) {
  const std::string nul(1, '\0'), esc = "\x1b", del = "\x7f", c1 = "\u0085";
  std::string email = "ali" + nul + "ce@exam" + esc + "ple.com";
  EXPECT_TRUE(Has("write to " + email + " please", DataClass::kEmail, email));
  std::string phone = "138" + nul + "1234" + nul + "5678";
  EXPECT_TRUE(Has("phone " + phone + " now", DataClass::kPhone, phone));
  std::string card = "4111" + nul + "1111" + del + "1111" + std::string(1, '\x01') + "1111";
  EXPECT_TRUE(Has("card " + card + " exp", DataClass::kPaymentCard, card));
  std::string token = "ghp_aB3dE5fG7hJ9kL1mN3pQ5r" + nul + "S7tU9vW1xY3zA5";
  EXPECT_TRUE(Has("token " + token + " end", DataClass::kSecret, token));
  std::string aws = "AKIA" + c1 + "Q3EGRLVZ2XKJ7N4M";
  EXPECT_TRUE(Has("id " + aws + " end", DataClass::kSecret, aws));
  // Line breaks and tabs still separate: two numbers on two lines are not one card.
  EXPECT_FALSE(HasClass("4111 1111\n1111 1111", DataClass::kPaymentCard));
}

// Found by an outside attack on the gateway: marks, fillers, dashes, other scripts' digits and the
// ideographic full stop hid data from the detectors.
TEST_F(DetectorsTest, CombiningMarksFillersDashesForeignDigitsAndIdeographicStopsAreReadThrough) {
  auto join = [](const std::string& s, const std::string& sep) {
    std::string out;
    for (char c : s) out += std::string(1, c) + sep;
    return out;
  };
  std::string card_marks = join("4111111111111111", "\u0301");
  card_marks.resize(card_marks.size() - std::string("\u0301").size());
  EXPECT_TRUE(Has("card " + card_marks + " exp", DataClass::kPaymentCard, card_marks));
  std::string phone_filler = join("13812345678", "\u3164");
  phone_filler.resize(phone_filler.size() - std::string("\u3164").size());
  EXPECT_TRUE(Has("call " + phone_filler + " now", DataClass::kPhone, phone_filler));
  std::string email_marks = "al\u0301ice@example.com";
  EXPECT_TRUE(Has("mail " + email_marks + " now", DataClass::kEmail, email_marks));
  for (const char* dash : {"\u2010", "\u2011", "\u2212", "\u2013"}) {
    std::string card = std::string("4111") + dash + "1111" + dash + "1111" + dash + "1111";
    EXPECT_TRUE(Has("card " + card + " exp", DataClass::kPaymentCard, card)) << dash;
  }
  std::string arabic_indic = "\u0661\u0663\u0668\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668";
  EXPECT_TRUE(Has("call " + arabic_indic + " now", DataClass::kPhone, arabic_indic));
  for (const char* stop : {"\u3002", "\uff61"}) {
    std::string email = std::string("alice@example") + stop + "com";
    EXPECT_TRUE(Has("mail " + email + " now", DataClass::kEmail, email)) << stop;
  }
  // A precomposed letter keeps its mark: an IDN address stays out of the ASCII e-mail class.
  EXPECT_FALSE(HasClass("Mail: m\u00fcller@b\u00fccher.example (IDN).", DataClass::kEmail));
}

// Redaction offsets after normalization cut exactly the original bytes, whatever mix of
// replacements (full-width, confusable, dropped) precedes and fills the match.
TEST_F(DetectorsTest, NormalizedMatchesCoverExactlyTheOriginalBytes) {
  std::string prefix =
      "\uff21\u200b\u0430\x01 \u00e9\u00e9 ";  // full-width A, ZWSP, Cyrillic a, SOH
  std::string email = "\u0430li\u200bce\uff20ex" + std::string(1, '\0') + "ample.com";
  std::string text = prefix + email + " \u00e9";
  auto m = set_->Scan(text);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].begin, prefix.size());
  EXPECT_EQ(m[0].end, prefix.size() + email.size());
}

// The normalizer's fast path: text it cannot change is recognized without a copy; text it
// changes is copied with every replacement, and offsets map back to whole original characters.
TEST(Normalizer, FastPathOnlyForTextItCannotChange) {
  using internal::NeedsNormalization;
  EXPECT_FALSE(NeedsNormalization("plain ASCII text,\twith tabs\r\nand line breaks."));
  EXPECT_FALSE(NeedsNormalization("请把发票发给财务部门中文文本"));  // no compatibility forms
  // The ideographic full stop is read as a dot (the dot of an e-mail domain written
  // "example。com").
  EXPECT_TRUE(NeedsNormalization("请把发票发给财务部门。"));
  EXPECT_FALSE(NeedsNormalization("caf\xff broken \xe4\xb8 UTF-8"));
  EXPECT_TRUE(NeedsNormalization(std::string("nul\0inside", 10)));
  EXPECT_TRUE(NeedsNormalization("esc \x1b"));
  EXPECT_TRUE(NeedsNormalization("full-width \uff11"));
  EXPECT_TRUE(NeedsNormalization("cyrillic \u0430"));
  EXPECT_TRUE(NeedsNormalization("zero\u200bwidth"));
  internal::NormalizedText n;
  EXPECT_FALSE(n.Assign("nothing to do here"));
  std::string in = "x\uff21\u0430\x01y";  // full-width A, Cyrillic a, SOH
  ASSERT_TRUE(n.Assign(in));
  EXPECT_EQ(n.text(), "xAay");
  EXPECT_EQ(n.OriginalBegin(1), 1u);             // "A" starts at the full-width character
  EXPECT_EQ(n.OriginalEnd(2), 4u);               // and ends after its three bytes
  EXPECT_EQ(n.OriginalEnd(3), 6u);               // Cyrillic a: two bytes; SOH left outside
  EXPECT_EQ(n.OriginalBegin(3), in.size() - 1);  // "y" after the dropped SOH
  EXPECT_EQ(n.OriginalEnd(4), in.size());
}

TEST_F(DetectorsTest, Email) {
  EXPECT_TRUE(Has("write to bob.smith+x@mail.example.org now", DataClass::kEmail,
                  "bob.smith+x@mail.example.org"));
  EXPECT_TRUE(Has("邮箱：li.wei@example.cn。", DataClass::kEmail, "li.wei@example.cn"));
  EXPECT_FALSE(HasClass("not an address: bob@localhost or @handle", DataClass::kEmail));
}

TEST_F(DetectorsTest, Phones) {
  EXPECT_TRUE(Has("call +44 20 7946 0958 today", DataClass::kPhone, "+44 20 7946 0958"));
  EXPECT_TRUE(Has("手机 13812345678 联系", DataClass::kPhone, "13812345678"));
  EXPECT_TRUE(Has("mobile +86 138 1234 5678.", DataClass::kPhone, "+86 138 1234 5678"));
  EXPECT_FALSE(HasClass("order 12812345678 and +1 23", DataClass::kPhone));
}

TEST_F(DetectorsTest, PaymentCards) {
  EXPECT_TRUE(Has("card 4111 1111 1111 1111 exp", DataClass::kPaymentCard, "4111 1111 1111 1111"));
  EXPECT_TRUE(Has("amex 378282246310005.", DataClass::kPaymentCard, "378282246310005"));
  EXPECT_FALSE(HasClass("card 4111 1111 1111 1112 exp", DataClass::kPaymentCard));  // Luhn
  EXPECT_FALSE(HasClass("id 9111111111111111", DataClass::kPaymentCard));           // unknown IIN
  EXPECT_FALSE(HasClass("mixed 4111-1111 1111-1111", DataClass::kPaymentCard));
}

TEST_F(DetectorsTest, Iban) {
  EXPECT_TRUE(Has("pay to DE89 3704 0044 0532 0130 00 please", DataClass::kIban,
                  "DE89 3704 0044 0532 0130 00"));
  EXPECT_TRUE(Has("GB82WEST12345698765432", DataClass::kIban, "GB82WEST12345698765432"));
  EXPECT_FALSE(HasClass("pay to DE89 3704 0044 0532 0130 01 please", DataClass::kIban));
}

TEST_F(DetectorsTest, UsSsnAndChineseId) {
  EXPECT_TRUE(Has("SSN 536-22-1234.", DataClass::kUsSsn, "536-22-1234"));
  EXPECT_FALSE(HasClass("SSN 000-22-1234.", DataClass::kUsSsn));
  EXPECT_TRUE(Has("身份证号 11010519491231002X。", DataClass::kCnResidentId, "11010519491231002X"));
  EXPECT_FALSE(HasClass("身份证号 110105194912310021。", DataClass::kCnResidentId));
}

TEST_F(DetectorsTest, IpAddresses) {
  EXPECT_TRUE(Has("host 192.168.1.20 down", DataClass::kIpAddress, "192.168.1.20"));
  EXPECT_TRUE(Has("v6 2001:db8::ff00:42:8329 up", DataClass::kIpAddress, "2001:db8::ff00:42:8329"));
  EXPECT_FALSE(HasClass("version 1.2.3.4.5", DataClass::kIpAddress));
  EXPECT_FALSE(HasClass("at 10:30:45 and 256.1.1.1", DataClass::kIpAddress));
}

// One realistic-format sample per secret rule family (values are random, not real credentials).
TEST_F(DetectorsTest, SecretRules) {
  const std::vector<std::pair<std::string, std::string>> samples = {
      {"aws-access-key-id", "AKIAQ3EGRLVZ2XKJ7N4M"},
      {"gcp-api-key", "AIzaSyD3kq9XzP1vB7mW2nR5tY8uJ0cL4hG6fE2"},
      {"github-pat", "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"},
      {"github-fine-grained-pat",
       "github_pat_11ABCDEFG0123456789_"
       "abcdefghijABCDEFGHIJklmnopqrstKLMNOPQRSTuvwxyz0123456789ABCDEF"},
      {"gitlab-pat", "glpat-x9Yz8Wv7Ut6Sr5Qp4On3"},
      {"slack-token", "xoxb-12345678901-123456789012-aBcDeFgHiJkLmNoPqRsTuVwX"},
      {"stripe-key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"},
      {"openai-api-key",
       "sk-proj-Ab3De5Fg7Hj9Kl1Mn3Pq5Rs7Tu9Vw1XyT3BlbkFJAb3De5Fg7Hj9Kl1Mn3Pq5Rs7Tu9Vw1Xy"},
      {"anthropic-api-key", "sk-ant-api03-" + std::string(40, 'a') +
                                "Zb3De5Fg7Hj9Kl1Mn3Pq5Rs7Tu9Vw1Xy-_Ab3De5Fg7Hj9Kl1Mn3P" + "AA"},
      {"huggingface-token", "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH"},
      {"deepseek-dashscope-api-key", "sk-3f9a0c1b7d2e4f6a8b0c1d2e3f4a5b6c"},
      {"moonshot-api-key", "sk-Ab3De5Fg7Hj9Kl1Mn3Pq5Rs7Tu9Vw1XyZa2Bc4De6Fg8Hj0K"},
      {"zhipu-api-key", "3f9a0c1b7d2e4f6a8b0c1d2e3f4a5b6c.Ab3De5Fg7Hj9Kl1M"},
      {"alibaba-access-key-id", "LTAI5tQ8zX3vB7mW2nR5tY8u"},
      {"sendgrid-api-key", "SG.aBcDeFgHiJkLmNoPqRsTuV.aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789aBcDeFg"},
      {"jwt",
       "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_"
       "XgL0n3I9PlFUP0THsR8U"},
      {"age-secret-key",
       "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQY"},
  };
  for (const auto& [rule, token] : samples) {
    std::string text = "config: " + token + " end";
    auto matches = set_->Scan(text);
    bool ok = false;
    for (const auto& m : matches)
      if (m.data_class == DataClass::kSecret && text.substr(m.begin, m.end - m.begin) == token) {
        ok = true;
        EXPECT_EQ(m.rule, rule) << token;
      }
    EXPECT_TRUE(ok) << "rule " << rule << " missed " << token;
  }
}

TEST_F(DetectorsTest, GenericAssignmentNeedsEntropy) {
  EXPECT_TRUE(
      Has("api_key = \"Zx8Qw3Er5Ty7Ui9Op1As\"", DataClass::kSecret, "Zx8Qw3Er5Ty7Ui9Op1As"));
  EXPECT_FALSE(HasClass("password = \"passwordpassword\"", DataClass::kSecret));
  EXPECT_FALSE(HasClass("api_key = YOUR_API_KEY_HERE", DataClass::kSecret));
}

TEST_F(DetectorsTest, PrivateKeyBlock) {
  std::string pem =
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB\n"
      "-----END OPENSSH PRIVATE KEY-----";
  EXPECT_TRUE(Has("key:\n" + pem + "\n", DataClass::kSecret, pem));
}

TEST_F(DetectorsTest, OnlyEnabledClasses) {
  auto d = DetectorSet::Create({.enabled = {DataClass::kEmail}});
  ASSERT_TRUE(d.ok());
  auto m =
      (*d)->Scan("bob@example.com 4111 1111 1111 1111 ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].data_class, DataClass::kEmail);
}

TEST_F(DetectorsTest, MatchesAreSortedAndDisjoint) {
  std::string text =
      "a@b.example.com 4111111111111111 +44 20 7946 0958 192.168.0.1 DE89370400440532013000 "
      "11010519491231002X 536-22-1234 sk-3f9a0c1b7d2e4f6a8b0c1d2e3f4a5b6c";
  auto m = set_->Scan(text);
  EXPECT_GE(m.size(), 8u);
  for (std::size_t i = 1; i < m.size(); ++i) EXPECT_LE(m[i - 1].end, m[i].begin);
}

TEST_F(DetectorsTest, HostileInputsTerminate) {
  // Long runs that stress candidate retries; RE2 keeps these linear (no timing asserted).
  std::vector<std::string> inputs = {std::string(200000, '4'), std::string(200000, 'a'),
                                     std::string(100000, '@') + std::string(100000, '.'),
                                     "api_key=" + std::string(200000, ' '),
                                     std::string(50000, ':') + "1"};
  std::string mixed;
  for (int i = 0; i < 20000; ++i) mixed += "4111 1111 1111 111" + std::to_string(i % 10) + " ";
  inputs.push_back(mixed);
  for (const auto& in : inputs) {
    auto m = set_->Scan(in);
    for (const auto& x : m) EXPECT_LE(x.end, in.size());
  }
  EXPECT_TRUE(set_->Scan("").empty());
  std::string binary;
  for (int i = 0; i < 65536; ++i) binary.push_back(static_cast<char>(i * 131 % 256));
  set_->Scan(binary);
}

// Precision/recall on the labelled corpus (tests/data/detectors/corpus.jsonl). A prediction is a
// true positive when it overlaps a label of the same class.
TEST_F(DetectorsTest, LabelledCorpus) {
  std::ifstream in(std::string(AIRLOCK_SOURCE_DIR) + "/tests/data/detectors/corpus.jsonl");
  ASSERT_TRUE(in) << "corpus missing";
  std::map<DataClass, int> tp, fp, fn;
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    std::string text = j["text"];
    struct Label {
      DataClass c;
      std::size_t b, e;
      bool hit = false;
    };
    std::vector<Label> labels;
    for (const auto& l : j["labels"]) {
      auto c = ParseDataClass(l["class"].get<std::string>());
      ASSERT_TRUE(c.has_value());
      std::string v = l["value"];
      std::size_t b = text.find(v);
      ASSERT_NE(b, std::string::npos) << line;
      labels.push_back({*c, b, b + v.size()});
    }
    for (const Match& m : set_->Scan(text)) {
      bool matched = false;
      for (Label& l : labels)
        if (l.c == m.data_class && m.begin < l.e && l.b < m.end) {
          matched = true;
          l.hit = true;
        }
      (matched ? tp : fp)[m.data_class]++;
      if (!matched)
        std::printf("  FP %s: %s\n", std::string(DataClassName(m.data_class)).c_str(),
                    text.substr(m.begin, m.end - m.begin).c_str());
    }
    for (const Label& l : labels) {
      if (!l.hit) {
        fn[l.c]++;
        std::printf("  FN %s: %s\n", std::string(DataClassName(l.c)).c_str(),
                    text.substr(l.b, l.e - l.b).c_str());
      }
    }
    ++lines;
  }
  ASSERT_GT(lines, 300);
  std::printf("| class | TP | FP | FN | precision | recall |\n|---|---|---|---|---|---|\n");
  for (int i = 0; i < kDataClassCount - 1; ++i) {
    auto c = static_cast<DataClass>(i);
    int t = tp[c], f = fp[c], n = fn[c];
    double p = t + f ? static_cast<double>(t) / (t + f) : 1.0;
    double r = t + n ? static_cast<double>(t) / (t + n) : 1.0;
    std::printf("| %s | %d | %d | %d | %.3f | %.3f |\n", std::string(DataClassName(c)).c_str(), t,
                f, n, p, r);
    EXPECT_GT(t, 0) << DataClassName(c);
    // Floors well below the measured values (docs/detectors.md): a regression trips them.
    EXPECT_GE(p, 0.9) << DataClassName(c);
    EXPECT_GE(r, 0.9) << DataClassName(c);
  }
}

// The entropy floors compare against ShannonEntropy's exact double: the table-driven version must
// give the plain formula's value bit for bit (same terms, same order), short and long strings.
TEST(ShannonEntropyTest, EqualsThePlainFormulaBitForBit) {
  auto plain = [](std::string_view s) {
    std::array<int, 256> counts{};
    for (unsigned char c : s) counts[c]++;
    double h = 0, n = static_cast<double>(s.size());
    for (int c : counts) {
      if (!c) continue;
      double p = c / n;
      h -= p * std::log2(p);
    }
    return h;
  };
  std::mt19937 rng(3);
  for (std::size_t len = 1; len <= 300; ++len)
    for (int alphabet : {2, 16, 64, 256}) {
      std::string s(len, '\0');
      for (char& c : s) c = static_cast<char>(rng() % alphabet);
      ASSERT_EQ(ShannonEntropy(s), plain(s)) << len << " " << alphabet;
    }
  EXPECT_EQ(ShannonEntropy(""), 0);
  EXPECT_EQ(ShannonEntropy("aaaa"), 0);
  EXPECT_EQ(ShannonEntropy("ab"), 1);
}

// The secret rules' entropy floors decide through ShannonEntropyExceeds: it must answer exactly
// ShannonEntropy(s) > bits, also where the entropy is at or next to the floor (alphabets of 8,
// 11.3 and 16 equally common bytes sit at 3.0, 3.5 and 4.0 bits exactly).
TEST(ShannonEntropyTest, ExceedsDecidesAsTheFullSum) {
  std::mt19937 rng(35);
  int decided_true = 0, decided_false = 0;
  for (std::size_t len = 1; len <= 160; ++len)
    for (int alphabet : {2, 7, 8, 9, 11, 12, 16, 17, 40, 64}) {
      for (int skew = 0; skew < 3; ++skew) {
        std::string s(len, '\0');
        for (std::size_t i = 0; i < len; ++i)
          s[i] = static_cast<char>(skew == 0   ? 'a' + i % alphabet
                                   : skew == 1 ? 'a' + rng() % alphabet
                                               : (rng() % 4 == 0 ? 'a' : 'a' + rng() % alphabet));
        for (double bits : {0.0, 1.0, 3.0, 3.5, 4.0, std::log2(static_cast<double>(alphabet))}) {
          bool want = ShannonEntropy(s) > bits;
          ASSERT_EQ(ShannonEntropyExceeds(s, bits), want) << s << " " << bits;
          (want ? decided_true : decided_false)++;
        }
      }
    }
  EXPECT_FALSE(ShannonEntropyExceeds("", 0));
  EXPECT_FALSE(ShannonEntropyExceeds("abcdefgh", 3.0));  // exactly 3 bits: not above
  EXPECT_TRUE(ShannonEntropyExceeds("abcdefghi", 3.0));
  EXPECT_GT(decided_true, 1000);
  EXPECT_GT(decided_false, 1000);
}

}  // namespace
}  // namespace airlock::policy
