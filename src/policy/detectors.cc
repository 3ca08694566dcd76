#include "policy/detectors.h"

#include <arpa/inet.h>
#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "policy/internal/confirm.h"
#include "policy/internal/decode.h"
#include "policy/internal/normalize.h"
#include "policy/internal/prefilter.h"
#include "policy/internal/rules.h"

namespace airlock::policy {
namespace {

using internal::Rule;
using internal::Validator;

#ifdef AIRLOCK_DETECTOR_DEFAULT_hyperscan
constexpr DetectorEngine kBuildDefaultEngine = DetectorEngine::kHyperscan;
#else
constexpr DetectorEngine kBuildDefaultEngine = DetectorEngine::kRe2Set;
#endif

constexpr std::array<std::string_view, kDataClassCount> kClassNames = {
    "email",          "phone",      "payment_card", "iban",     "us_ssn",
    "cn_resident_id", "ip_address", "secret",       "reasoning"};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool IsAlnum(char c) { return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string DigitsOf(std::string_view s) {
  std::string d;
  for (char c : s)
    if (IsDigit(c)) d.push_back(c);
  return d;
}

// Overlap ranking: checksummed and secret classes win over looser ones.
int Rank(DataClass c) {
  switch (c) {
    case DataClass::kSecret:
      return 6;
    case DataClass::kCnResidentId:
    case DataClass::kPaymentCard:
    case DataClass::kIban:
      return 5;
    case DataClass::kUsSsn:
    case DataClass::kEmail:
      return 4;
    case DataClass::kPhone:
      return 3;
    case DataClass::kIpAddress:
      return 2;
    default:
      return 1;
  }
}

// Of two findings of equal rank on the same span, the one whose rule prefers more wins, then the
// earlier rule in the table. These keep the choices the detectors made before the one-pass engine
// (when the RE2::Set order decided): an 18-digit number valid both ways is a resident ID, not a
// card; "+86 ..." is reported as E.164; an assignment's value keeps the generic rule.
int TiePreference(std::string_view rule) {
  if (rule == "generic-api-key" || rule == "cn-resident-id" || rule == "phone-e164") return 1;
  return 0;
}

// Known IBAN lengths for common countries (ISO 13616 registry); others accept 15..34.
int IbanLength(std::string_view cc) {
  static constexpr std::pair<std::string_view, int> kLengths[] = {
      {"AD", 24}, {"AT", 20}, {"BE", 16}, {"BG", 22}, {"CH", 21}, {"CY", 28}, {"CZ", 24},
      {"DE", 22}, {"DK", 18}, {"EE", 20}, {"ES", 24}, {"FI", 18}, {"FR", 27}, {"GB", 22},
      {"GR", 27}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IS", 26}, {"IT", 27}, {"LI", 21},
      {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MT", 31}, {"NL", 18}, {"NO", 15},
      {"PL", 28}, {"PT", 25}, {"RO", 24}, {"SA", 24}, {"SE", 24}, {"SI", 19}, {"SK", 24},
      {"SM", 27}, {"TR", 26}, {"AE", 23}, {"IL", 23}, {"QA", 29}, {"UA", 29}, {"BR", 29}};
  for (const auto& [code, len] : kLengths)
    if (code == cc) return len;
  return 0;
}

bool Mod97IsOne(std::string_view compact) {
  // Move the first four characters to the end, map letters to 10..35, reduce mod 97 as we go.
  if (compact.size() < 5) return false;
  int rem = 0;
  auto feed = [&rem](char c) {
    if (IsDigit(c)) {
      rem = (rem * 10 + (c - '0')) % 97;
    } else {
      int v = (c >= 'a' ? c - 'a' : c - 'A') + 10;
      rem = (rem * 100 + v) % 97;
    }
  };
  for (char c : compact.substr(4)) feed(c);
  for (char c : compact.substr(0, 4)) feed(c);
  return rem == 1;
}

// A payment card as printed: 13..19 digits with a known issuer prefix and a valid Luhn digit.
// Separators, if any, must all be the same (" ", "-", "  ", " / ", a tab...)
// and group the digits the way cards are printed (4-4-4-4, 4-4-4-4-3, 4-4-4-3, 4-6-5, 4-6-4);
// this keeps runs of unrelated numbers out.
bool PaymentCardValid(std::string_view span) {
  std::string d = DigitsOf(span);
  if (d.size() < 13 || d.size() > 19) return false;
  if (std::all_of(d.begin(), d.end(), [&](char c) { return c == d[0]; })) return false;
  std::string_view sep;
  std::vector<int> groups{0};
  for (std::size_t i = 0; i < span.size();) {
    if (IsDigit(span[i])) {
      groups.back()++;
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < span.size() && !IsDigit(span[j])) ++j;
    std::string_view run = span.substr(i, j - i);
    if (!sep.empty() && run != sep) return false;
    sep = run;
    groups.push_back(0);
    i = j;
  }
  if (groups.size() > 1) {
    static const std::vector<std::vector<int>> kLayouts = {
        {4, 4, 4, 4}, {4, 4, 4, 4, 3}, {4, 4, 4, 3}, {4, 6, 5}, {4, 6, 4}};
    if (std::find(kLayouts.begin(), kLayouts.end(), groups) == kLayouts.end()) return false;
  }
  int p2 = (d[0] - '0') * 10 + (d[1] - '0');
  int p4 = std::stoi(d.substr(0, 4));
  bool known_iin = d[0] == '4' || (p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720) ||
                   p2 == 34 || p2 == 37 || p2 == 35 || p2 == 62 || p2 == 36 || p2 == 38 ||
                   p2 == 30 || p2 == 65 || p4 == 6011 || p2 == 64;
  return known_iin && LuhnValid(d);
}

// Returns the accepted length of the span (possibly shorter than `span`), or 0 to reject.
std::size_t Validate(const Rule& rule, std::string_view text, std::size_t begin, std::size_t end) {
  std::string_view span = text.substr(begin, end - begin);
  char before = begin > 0 ? text[begin - 1] : '\0';
  char after = end < text.size() ? text[end] : '\0';
  switch (rule.validator) {
    case Validator::kNone:
      return span.size();
    case Validator::kEmail: {
      std::size_t at = span.find('@');
      if (at == std::string_view::npos || at == 0) return 0;
      std::string_view local = span.substr(0, at);
      if (local.back() == '.' || local.find("..") != std::string_view::npos) return 0;
      return span.size();
    }
    case Validator::kPhoneE164: {
      if (IsAlnum(before)) return 0;
      // The pattern is greedy and may run into a following number; accept the longest prefix
      // that ends after a digit group, holds 8..15 digits, and is not continued by a digit or by
      // '.'/'-' plus a digit (an IP address or another number glued on).
      // With the dialled "00" prefix those two digits are not part of the number, and the
      // number must be written in groups: a bare run of digits after "00" is too often an
      // account or order number.
      const bool dialled = span.size() > 2 && span[0] == '0';
      if (dialled && std::all_of(span.begin(), span.end(), IsDigit)) return 0;
      // Nor is a "00" group in the middle of a longer grouped number (an IBAN or account number
      // written "3704 0044 0532 ..."): no digit may come right before it.
      if (dialled) {
        std::size_t k = begin;
        while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '.' || text[k - 1] == '-' ||
                         text[k - 1] == '/'))
          --k;
        if (k > 0 && IsDigit(text[k - 1])) return 0;
      }
      std::size_t best = 0, digits = 0;
      for (std::size_t i = dialled ? 2 : 0; i < span.size(); ++i) {
        if (!IsDigit(span[i]) && span[i] != ')') continue;
        if (IsDigit(span[i])) ++digits;
        std::size_t cut = i + 1;
        char next = cut < span.size() ? span[cut] : after;
        char next2 = cut + 1 < span.size()    ? span[cut + 1]
                     : cut + 1 == span.size() ? after
                                              : (end + 1 < text.size() ? text[end + 1] : '\0');
        if (IsDigit(next)) continue;
        if ((next == '.' || next == '-' || next == '/') && IsDigit(next2)) continue;
        if (digits >= 8 && digits <= 15) best = cut;
      }
      return best;
    }
    case Validator::kPaymentCard: {
      if (before == '+') return 0;  // an international phone number
      // The pattern is greedy and may run on into a following number ("4111 1111 1111 1111, 12"):
      // accept the longest prefix that ends with a digit group and is a valid card.
      for (std::size_t cut = span.size(); cut > 0; --cut) {
        if (!IsDigit(span[cut - 1]) || (cut < span.size() && IsDigit(span[cut]))) continue;
        if (PaymentCardValid(span.substr(0, cut))) return cut;
      }
      return 0;
    }
    case Validator::kIban: {
      // Collect alphanumerics with their end offsets so a shorter valid prefix can be accepted.
      std::string compact;
      std::vector<std::size_t> ends;
      for (std::size_t i = 0; i < span.size(); ++i) {
        if (span[i] == ' ') continue;
        compact.push_back(span[i]);
        ends.push_back(i + 1);
      }
      int want = IbanLength(compact.substr(0, 2));
      auto accept = [&](std::size_t len) -> std::size_t {
        if (len > compact.size()) return 0;
        // The accepted span must end at a token boundary.
        std::size_t span_end = ends[len - 1];
        if (span_end < span.size() && IsAlnum(span[span_end])) return 0;
        return Mod97IsOne(std::string_view(compact).substr(0, len)) ? span_end : 0;
      };
      if (want) return accept(static_cast<std::size_t>(want));
      for (std::size_t len = std::min<std::size_t>(compact.size(), 34); len >= 15; --len)
        if (std::size_t n = accept(len)) return n;
      return 0;
    }
    case Validator::kUsSsn:
      return UsSsnPlausible(span) ? span.size() : 0;
    case Validator::kCnResidentId:
      return CnResidentIdValid(span) ? span.size() : 0;
    case Validator::kIpv4: {
      // Reject parts of longer dotted sequences such as version numbers 1.2.3.4.5.
      if (before == '.' || (after == '.' && end + 1 < text.size() && IsDigit(text[end + 1])))
        return 0;
      return span.size();
    }
    case Validator::kIpv6: {
      if (IsHex(before) || before == ':' || IsHex(after) || after == ':' || after == '.') return 0;
      if (span.size() < 3 || std::count(span.begin(), span.end(), ':') < 2) return 0;
      if (!std::any_of(span.begin(), span.end(), IsHex)) return 0;
      // inet_pton wants a NUL-terminated string: a stack copy (no valid address is longer).
      char copy[INET6_ADDRSTRLEN];
      if (span.size() >= sizeof copy) return 0;
      std::memcpy(copy, span.data(), span.size());
      copy[span.size()] = '\0';
      in6_addr addr;
      return inet_pton(AF_INET6, copy, &addr) == 1 ? span.size() : 0;
    }
    case Validator::kEntropy: {
      if (!ShannonEntropyExceeds(span, rule.min_entropy)) return 0;
      // Generic assignments: a value needs both letters and digits (rejects words and numbers).
      if (rule.id == "generic-api-key") {
        bool alpha =
            std::any_of(span.begin(), span.end(), [](char c) { return IsAlnum(c) && !IsDigit(c); });
        bool digit = std::any_of(span.begin(), span.end(), IsDigit);
        if (!alpha || !digit) return 0;
      }
      return span.size();
    }
  }
  return 0;
}

}  // namespace

std::string_view DataClassName(DataClass c) {
  int i = static_cast<int>(c);
  return i >= 0 && i < kDataClassCount ? kClassNames[i] : "unknown";
}

std::optional<DataClass> ParseDataClass(std::string_view name) {
  for (int i = 0; i < kDataClassCount; ++i)
    if (kClassNames[i] == name) return static_cast<DataClass>(i);
  return std::nullopt;
}

bool IsPersonalData(DataClass c) { return c != DataClass::kSecret && c != DataClass::kReasoning; }

namespace {

// A separator the grouped-number rules accept between digit groups (see rules.cc).
bool IsGroupSeparator(std::string_view run) {
  if (run.empty() || run.size() > 3) return false;
  if (run == "  " || run == " - " || run == " / " || run == "\r\n") return true;
  return run.size() == 1 &&
         std::string_view(" \t-/_.:|\\~\n").find(run[0]) != std::string_view::npos;
}

}  // namespace

std::string GroupSeparatorAtCut(std::string_view before, std::string_view after) {
  if (before.empty() || after.empty() || !IsDigit(before.back()) || !IsDigit(after.front()))
    return {};
  // "... 4111 1111|": the digits at the end, then a separator with a digit before it.
  std::size_t i = before.size();
  while (i > 0 && IsDigit(before[i - 1])) --i;
  std::size_t j = i;
  while (j > 0 && i - j < 3 && !IsAlnum(before[j - 1])) --j;
  if (j > 0 && j < i && IsDigit(before[j - 1])) {
    std::string_view run = before.substr(j, i - j);
    if (IsGroupSeparator(run)) return std::string(run);
  }
  // "|1111-1111 ...": the digits at the start, then a separator with a digit after it.
  i = 0;
  while (i < after.size() && IsDigit(after[i])) ++i;
  j = i;
  while (j < after.size() && j - i < 3 && !IsAlnum(after[j])) ++j;
  if (j < after.size() && j > i && IsDigit(after[j])) {
    std::string_view run = after.substr(i, j - i);
    if (IsGroupSeparator(run)) return std::string(run);
  }
  return {};
}

struct DecodedView::Impl {
  internal::DecodedText decoded;
};
DecodedView::DecodedView() = default;  // nothing allocated until a text decodes
DecodedView::~DecodedView() = default;
DecodedView::DecodedView(DecodedView&&) noexcept = default;
DecodedView& DecodedView::operator=(DecodedView&&) noexcept = default;

bool DecodedView::Assign(std::string_view in, Family family) {
  if (!impl_) {
    if (!internal::MayHoldEncoding(in)) return false;
    impl_ = std::make_unique<Impl>();
  }
  return impl_->decoded.Assign(in, family == Family::kWeb
                                       ? internal::DecodeFamily::kWeb
                                       : internal::DecodeFamily::kQuotedPrintable);
}
const std::string& DecodedView::text() const {
  static const std::string kEmpty;
  return impl_ ? impl_->decoded.text() : kEmpty;
}
std::size_t DecodedView::OriginalBegin(std::size_t begin) const {
  return impl_ ? impl_->decoded.OriginalBegin(begin) : begin;
}
std::size_t DecodedView::OriginalEnd(std::size_t end) const {
  return impl_ ? impl_->decoded.OriginalEnd(end) : end;
}

bool IsKnownTopLevelDomain(std::string_view label) {
  static constexpr std::string_view kGeneric[] = {
      "com",    "org",   "net",   "edu",     "gov",     "mil",    "int",   "info",    "biz",
      "name",   "pro",   "mobi",  "asia",    "tel",     "travel", "jobs",  "coop",    "aero",
      "museum", "app",   "dev",   "xyz",     "online",  "site",   "shop",  "store",   "tech",
      "cloud",  "blog",  "club",  "live",    "news",    "email",  "page",  "link",    "top",
      "work",   "world", "space", "website", "company", "global", "group", "digital", "agency"};
  std::string lower;
  for (char c : label) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return false;
    lower.push_back(static_cast<char>(c | 0x20));
  }
  if (lower.size() == 2) return true;
  return std::find(std::begin(kGeneric), std::end(kGeneric), lower) != std::end(kGeneric);
}

bool LuhnValid(std::string_view s) {
  std::string d = DigitsOf(s);
  if (d.size() < 2) return false;
  int sum = 0;
  bool dbl = false;
  for (auto it = d.rbegin(); it != d.rend(); ++it) {
    int v = *it - '0';
    if (dbl) {
      v *= 2;
      if (v > 9) v -= 9;
    }
    sum += v;
    dbl = !dbl;
  }
  return sum % 10 == 0;
}

bool IbanValid(std::string_view s) {
  std::string compact;
  for (char c : s) {
    if (c == ' ') continue;
    if (!IsAlnum(c)) return false;
    compact.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c);
  }
  if (compact.size() < 15 || compact.size() > 34) return false;
  if (!(compact[0] >= 'A' && compact[0] <= 'Z' && compact[1] >= 'A' && compact[1] <= 'Z'))
    return false;
  if (!IsDigit(compact[2]) || !IsDigit(compact[3])) return false;
  int want = IbanLength(std::string_view(compact).substr(0, 2));
  if (want && static_cast<int>(compact.size()) != want) return false;
  return Mod97IsOne(compact);
}

bool CnResidentIdValid(std::string_view id) {
  // GB 11643-1999: ISO 7064 MOD 11-2 check character over the first 17 digits.
  static constexpr int kWeights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  static constexpr char kCheck[11] = {'1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'};
  if (id.size() != 18) return false;
  int sum = 0;
  for (int i = 0; i < 17; ++i) {
    if (!IsDigit(id[i])) return false;
    sum += (id[i] - '0') * kWeights[i];
  }
  char last = id[17] == 'x' ? 'X' : id[17];
  return kCheck[sum % 11] == last;
}

bool UsSsnPlausible(std::string_view ssn) {
  if (ssn.size() != 11 || ssn[3] != ssn[6]) return false;  // mixed delimiters
  std::string d = DigitsOf(ssn);
  if (d.size() != 9) return false;
  int area = std::stoi(d.substr(0, 3));
  int group = std::stoi(d.substr(3, 2));
  int serial = std::stoi(d.substr(5, 4));
  if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) return false;
  if (d == "078051120" || d == "123456789" || d == "219099999") return false;  // famous samples
  return !std::all_of(d.begin(), d.end(), [&](char c) { return c == d[0]; });
}

namespace {

// log2(c / n) for 1 <= c <= n <= kEntropyTableMax, computed exactly as ShannonEntropy would
// (the table saves the log2 calls, not a bit of precision): row n starts at n * (n - 1) / 2.
constexpr std::size_t kEntropyTableMax = 128;
const std::vector<double>& Log2Table() {
  static const std::vector<double> table = [] {
    std::vector<double> t;
    t.reserve(kEntropyTableMax * (kEntropyTableMax + 1) / 2);
    for (std::size_t n = 1; n <= kEntropyTableMax; ++n)
      for (std::size_t c = 1; c <= n; ++c) {
        double p = static_cast<int>(c) / static_cast<double>(n);
        t.push_back(std::log2(p));
      }
    return t;
  }();
  return table;
}

}  // namespace

double ShannonEntropy(std::string_view s) {
  if (s.empty()) return 0;
  // Counts of the bytes present only (no 256-entry clear), then the sum over them in increasing
  // byte order, as a plain loop over all 256 counts would add them.
  std::array<int, 256> counts;
  std::array<std::uint64_t, 4> present{};
  for (unsigned char c : s) counts[c] = 0;
  for (unsigned char c : s) {
    counts[c]++;
    present[c >> 6] |= std::uint64_t{1} << (c & 63);
  }
  double h = 0;
  double n = static_cast<double>(s.size());
  const double* log2_row =
      s.size() <= kEntropyTableMax ? Log2Table().data() + s.size() * (s.size() - 1) / 2 : nullptr;
  for (int word = 0; word < 4; ++word) {
    for (std::uint64_t bits = present[word]; bits; bits &= bits - 1) {
      int c = counts[word * 64 + std::countr_zero(bits)];
      double p = c / n;
      h -= p * (log2_row ? log2_row[c - 1] : std::log2(p));
    }
  }
  return h;
}

// The Shannon entropy is at least the min-entropy log2(n / most), `most` the count of the commonest
// byte: where that is above the threshold by a margin far wider than any rounding of the sum, the
// sum is not computed (most values of secret rules are decided so: the logarithms were ~8% of the
// detectors' time on mixed text).
bool ShannonEntropyExceeds(std::string_view s, double threshold) {
  if (s.empty()) return ShannonEntropy(s) > threshold;
  std::array<std::uint32_t, 256> counts;
  for (unsigned char c : s) counts[c] = 0;
  std::uint32_t most = 0;
  for (unsigned char c : s) most = std::max(most, ++counts[c]);
  if (static_cast<double>(s.size()) > static_cast<double>(most) * std::exp2(threshold) * (1 + 1e-6))
    return true;
  return ShannonEntropy(s) > threshold;
}

struct DetectorSet::Impl {
  std::vector<const Rule*> rules;
  std::vector<std::unique_ptr<RE2>> regexes;
  // Per rule: the hand-written matcher that replaces RE2 on candidates (internal/confirm.h), or
  // nullptr.
  std::vector<internal::Confirmer> confirmers;
  std::unique_ptr<internal::Prefilter> prefilter;
};

DetectorSet::DetectorSet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DetectorSet::~DetectorSet() = default;
std::size_t DetectorSet::rule_count() const { return impl_->rules.size(); }
std::string_view DetectorSet::engine_name() const { return impl_->prefilter->name(); }

bool DetectorEngineAvailable(DetectorEngine engine) {
  switch (engine) {
    case DetectorEngine::kDefault:
    case DetectorEngine::kRe2Set:
      return true;
    case DetectorEngine::kHyperscan: {
      static const bool usable = [] {
        std::vector<const Rule*> one{&internal::BuiltinRules()[0]};
        return internal::MakeHyperscanPrefilter(one).ok();
      }();
      return usable;
    }
  }
  return false;
}

Result<std::unique_ptr<DetectorSet>> DetectorSet::Create(const DetectorOptions& options) {
  auto impl = std::make_unique<Impl>();
  RE2::Options re_options;
  re_options.set_log_errors(false);
  re_options.set_max_mem(64 << 20);
  for (const Rule& rule : internal::BuiltinRules()) {
    if (!options.enabled.empty() && std::find(options.enabled.begin(), options.enabled.end(),
                                              rule.data_class) == options.enabled.end())
      continue;
    auto re = std::make_unique<RE2>(re2::StringPiece(rule.pattern.data(), rule.pattern.size()),
                                    re_options);
    if (!re->ok() || re->NumberOfCapturingGroups() != 1)
      return Internal("policy: detector rule at " + std::string(rule.id) + ": " + re->error());
    impl->rules.push_back(&rule);
    impl->regexes.push_back(std::move(re));
    impl->confirmers.push_back(internal::ConfirmerFor(rule.id));
  }
  DetectorEngine engine = options.engine;
  if (engine == DetectorEngine::kDefault) {
    // The build's choice (AIRLOCK_DETECTOR_ENGINE); Hyperscan falls back to RE2::Set on a CPU
    // without SSSE3 and for an empty rule set.
    engine = kBuildDefaultEngine == DetectorEngine::kHyperscan && !impl->rules.empty() &&
                     DetectorEngineAvailable(DetectorEngine::kHyperscan)
                 ? DetectorEngine::kHyperscan
                 : DetectorEngine::kRe2Set;
  }
  auto prefilter = engine == DetectorEngine::kHyperscan
                       ? internal::MakeHyperscanPrefilter(impl->rules)
                       : internal::MakeRe2SetPrefilter(impl->rules);
  if (!prefilter.ok()) return prefilter.error();
  impl->prefilter = std::move(*prefilter);
  return std::unique_ptr<DetectorSet>(new DetectorSet(std::move(impl)));
}

std::vector<Match> DetectorSet::ScanNormalized(std::string_view text) const {
  internal::NormalizedText n;
  if (!n.Assign(text)) return ScanExact(text);
  std::vector<Match> found = ScanExact(n.text());
  // Findings are sorted and disjoint: begins and ends both grow.
  std::size_t begin_cursor = 0, end_cursor = 0;
  for (Match& m : found) {
    if (m.end <= m.begin) continue;
    std::size_t begin = n.OriginalBegin(m.begin, &begin_cursor);
    m.end = n.OriginalEnd(m.end, &end_cursor);
    m.begin = begin;
  }
  return found;
}

namespace {

// Bytes that may space out data one character at a time ("4 1 1 1 ...", "4-1-1-1-...",
// "a l i c e @ e x a m p l e . c o m"), alone or as a short repeated gap (" - ").
constexpr std::uint8_t kSpacingByte = 1, kWordByte = 2;
constexpr std::array<std::uint8_t, 256> kByteClass = [] {
  std::array<std::uint8_t, 256> a{};
  for (unsigned char c : std::string_view(" \t-._/|,*")) a[c] = kSpacingByte;
  for (int c = 0; c < 256; ++c)
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80)
      a[c] = kWordByte;
  return a;
}();
bool IsSpacingByte(char c) { return kByteClass[static_cast<unsigned char>(c)] == kSpacingByte; }
bool IsWordByte(char c) { return kByteClass[static_cast<unsigned char>(c)] == kWordByte; }
// Bytes of the UTF-8 character at `i` (1 for a stray continuation byte).
std::size_t CharBytes(std::string_view s, std::size_t i) {
  unsigned char u = static_cast<unsigned char>(s[i]);
  std::size_t n = u >= 0xF0 ? 4 : u >= 0xE0 ? 3 : u >= 0xC0 ? 2 : 1;
  return std::min(n, s.size() - i);
}

// A run needs this many single characters: short runs are prose ("a b c").
constexpr std::size_t kMinSpacedRun = 6;

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiLetter(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

// `text` with the gaps inside every run of kMinSpacedRun or more single characters separated by
// one repeated gap removed ("4 1 1 1 1 1" -> "411111"); origin[i] is the byte of `text` that
// output byte i came from. With `break_classes`, a blank stays where a run's letters and digits
// meet: a single-character word spaced out next to the data ("5 3 6 - 2 2 - 4 5 8 1 x") would
// otherwise glue to it ("536-22-4581x") and hide it behind a missing word boundary, while the
// reading without breaks keeps tokens that mix letters and digits whole. Returns false (nothing
// to read) when there is no such run. Linear.
bool CollapseSpacedRuns(std::string_view text, bool break_classes, std::string* out,
                        std::vector<std::size_t>* origin) {
  out->clear();
  origin->clear();
  bool any = false;
  std::size_t copied = 0;  // text[0, copied) is in `out`
  auto copy = [&](std::size_t from, std::size_t to) {
    for (std::size_t k = from; k < to; ++k) {
      out->push_back(text[k]);
      origin->push_back(k);
    }
  };
  // A single character at `i`: visible, not a gap byte, and not inside a word on its left.
  auto single_at = [&](std::size_t i, std::string_view gap) -> std::size_t {
    if (i >= text.size()) return 0;
    unsigned char u = static_cast<unsigned char>(text[i]);
    if (u <= 0x20 || u == 0x7F || gap.find(text[i]) != std::string_view::npos) return 0;
    return CharBytes(text, i);
  };
  std::size_t i = 0;
  while (i < text.size()) {
    // Fast path (most bytes): an ASCII character not followed by a gap byte starts no run.
    if (static_cast<unsigned char>(text[i]) < 0x80 &&
        (i + 1 >= text.size() || !IsSpacingByte(text[i + 1]))) {
      ++i;
      continue;
    }
    std::size_t first = CharBytes(text, i);
    bool starts = (i == 0 || !IsWordByte(text[i - 1])) && !IsSpacingByte(text[i]) &&
                  static_cast<unsigned char>(text[i]) > 0x20;
    std::size_t gap_at = i + first;
    std::size_t gap_len = 0;
    while (starts && gap_len < 3 && gap_at + gap_len < text.size() &&
           IsSpacingByte(text[gap_at + gap_len]))
      ++gap_len;
    if (!starts || gap_len == 0) {
      i += first;
      continue;
    }
    std::string_view gap = text.substr(gap_at, gap_len);
    // Characters of the run: [begin, end) each; a character ends the run unless the gap and
    // another single character follow it.
    std::vector<std::pair<std::size_t, std::size_t>> chars = {{i, i + first}};
    std::size_t at = i + first;
    while (text.substr(at, gap.size()) == gap) {
      std::size_t next = at + gap.size();
      std::size_t n = single_at(next, gap);
      if (n == 0) break;
      // The character must stand alone: the gap, a non-word byte or the end after it.
      std::size_t after = next + n;
      if (after < text.size() && text.substr(after, gap.size()) != gap && IsWordByte(text[after]))
        break;
      chars.push_back({next, after});
      at = after;
    }
    // The first character must stand alone too (not "ab c d e f g").
    if (chars.size() >= kMinSpacedRun) {
      copy(copied, chars.front().second);
      for (std::size_t k = 1; k < chars.size(); ++k) {
        char before = text[chars[k - 1].first], here = text[chars[k].first];
        if (break_classes && ((IsAsciiDigit(before) && IsAsciiLetter(here)) ||
                              (IsAsciiLetter(before) && IsAsciiDigit(here)))) {
          out->push_back(' ');
          origin->push_back(chars[k].first);
        }
        copy(chars[k].first, chars[k].second);
      }
      copied = chars.back().second;
      any = true;
      i = copied;
    } else {
      i += first;
    }
  }
  if (!any) return false;
  copy(copied, text.size());
  return true;
}

}  // namespace

std::vector<Match> DetectorSet::Scan(std::string_view text) const {
  // The text as the detectors read it, normalized once for the plain reading and the collapsed
  // one: gaps disguised as Unicode (no-break or ideographic spaces, full-width hyphens, a
  // zero-width character beside a blank) are plain gaps by the time runs are looked for.
  internal::NormalizedText normalized;
  const bool changed = normalized.Assign(text);
  const std::string_view read = changed ? std::string_view(normalized.text()) : text;
  std::vector<Match> found = ScanExact(read);
  if (changed) {
    std::size_t begin_cursor = 0, end_cursor = 0;  // findings are sorted and disjoint
    for (Match& m : found) {
      if (m.end <= m.begin) continue;
      std::size_t begin = normalized.OriginalBegin(m.begin, &begin_cursor);
      m.end = normalized.OriginalEnd(m.end, &end_cursor);
      m.begin = begin;
    }
  }
  std::size_t plain = found.size();
  // Data spaced out one character at a time is read collapsed too, in addition to the text.
  {
    std::string collapsed;
    std::vector<std::size_t> origin;
    for (bool break_classes : {false, true}) {
      if (!CollapseSpacedRuns(read, break_classes, &collapsed, &origin)) break;  // no run at all
      for (Match& m : ScanNormalized(collapsed)) {
        if (m.end <= m.begin) continue;
        std::size_t begin = origin[m.begin];
        std::size_t end = origin[m.end - 1] + CharBytes(read, origin[m.end - 1]);
        if (changed) {
          begin = normalized.OriginalBegin(begin);
          end = normalized.OriginalEnd(end);
        }
        m.begin = begin;
        m.end = end;
        found.push_back(std::move(m));
      }
    }
  }
  // The decoded shadow is scanned in addition to the text: decoding never hides what the text
  // itself shows ("phone=13812345678" must not read as "phone" + U+0013 + "812345678").
  if (internal::MayHoldEncoding(text)) {
    for (auto family : {internal::DecodeFamily::kWeb, internal::DecodeFamily::kQuotedPrintable}) {
      internal::DecodedText decoded;
      if (!decoded.Assign(text, family)) continue;
      for (Match& m : ScanNormalized(decoded.text())) {
        if (m.end <= m.begin) continue;
        std::size_t begin = decoded.OriginalBegin(m.begin);
        m.end = decoded.OriginalEnd(m.end);
        m.begin = begin;
        found.push_back(std::move(m));
      }
    }
  }
  if (found.size() == plain) return found;
  // Findings of all readings, non-overlapping: overlapping ones merge into one covering both
  // (so that redaction cuts every byte any reading found), of the higher-ranked class.
  // (Positions are sorted, not the matches themselves: cheaper to move.)
  std::vector<std::size_t> order(found.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&found](std::size_t i, std::size_t j) {
    const Match &a = found[i], &b = found[j];
    return a.begin != b.begin ? a.begin < b.begin : a.end > b.end;
  });
  std::vector<Match> kept;
  kept.reserve(found.size());
  for (std::size_t i : order) {
    Match& m = found[i];
    if (!kept.empty() && m.begin < kept.back().end) {
      Match& last = kept.back();
      if (Rank(m.data_class) > Rank(last.data_class)) {
        last.data_class = m.data_class;
        last.rule = std::move(m.rule);
      }
      last.end = std::max(last.end, m.end);
      continue;
    }
    kept.push_back(std::move(m));
  }
  return kept;
}

std::vector<Match> DetectorSet::ScanExact(std::string_view text) const {
  std::vector<Match> found;
  if (impl_->rules.empty() || text.empty()) return found;
  re2::StringPiece piece(text.data(), text.size());
  internal::Candidates candidates;
  impl_->prefilter->Find(text, &candidates);
  for (const auto& [index, first, last] : candidates.rules) {
    const Rule& rule = *impl_->rules[index];
    const RE2& re = *impl_->regexes[index];
    const internal::Confirmer confirmer = impl_->confirmers[index];
    re2::StringPiece groups[2];
    // The same left-to-right walk as over the whole text, but each search starts at the first
    // candidate region that can hold the next match and ends with its group of overlapping
    // regions (see prefilter.h: no match starts before that region, and every match starting
    // inside the group ends inside it), so the leftmost match from `pos` is found identically.
    std::size_t pos = 0, region = first;
    while (pos <= text.size()) {
      // A region no match can start in from `pos` on is done with (see Region::starts_by).
      while (region < last &&
             (candidates.regions[region].end <= pos || candidates.regions[region].starts_by < pos))
        ++region;
      if (region == last) break;
      const internal::Region& r = candidates.regions[region];
      std::size_t from = std::max(pos, r.begin);
      std::size_t whole_begin, whole_end, begin, end;
      internal::ConfirmedMatch confirmed;
      auto quick = confirmer ? confirmer(text, from, r.group_end, &confirmed)
                             : internal::ConfirmResult::kUnsure;
      if (quick == internal::ConfirmResult::kMatch) {
        whole_begin = confirmed.whole_begin;
        whole_end = confirmed.whole_end;
        begin = confirmed.begin;
        end = confirmed.end;
      } else {
        if (quick == internal::ConfirmResult::kNoMatch ||
            !re.Match(piece, from, r.group_end, RE2::UNANCHORED, groups, 2)) {
          pos = r.group_end;  // no match starts before it; the next can only be in a later group
          continue;
        }
        whole_begin = static_cast<std::size_t>(groups[0].data() - text.data());
        whole_end = whole_begin + groups[0].size();
        if (groups[1].data() == nullptr) {
          pos = std::max(whole_end, whole_begin + 1);
          continue;
        }
        begin = static_cast<std::size_t>(groups[1].data() - text.data());
        end = begin + groups[1].size();
      }
      std::size_t accepted = end > begin ? Validate(rule, text, begin, end) : 0;
      if (accepted) {
        found.push_back(Match{rule.data_class, std::string(rule.id), begin, begin + accepted});
        pos = std::max(begin + accepted, whole_begin + 1);
      } else {
        // Retry just after the candidate's start: a valid item may overlap a rejected one.
        // Candidates are bounded in length by their patterns, so this stays linear.
        pos = std::max(begin, whole_begin) + 1;
      }
    }
  }
  // Resolve overlaps: sort by start (longest first), keep the higher-ranked or longer match.
  // Stable, over matches appended in rule order: ties resolve the same whatever the engine and
  // however many matches there are. Each rule's matches are already in order (strictly growing
  // starts), so the sort is a stable merge of one sorted run per rule.
  // (Positions are sorted, not the matches themselves: cheaper to move.)
  std::vector<std::size_t> order(found.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::vector<std::size_t> runs{0};  // run boundaries: one run per rule with matches
  for (std::size_t i = 1; i < found.size(); ++i)
    if (found[i].begin <= found[i - 1].begin) runs.push_back(i);
  runs.push_back(found.size());
  auto before = [&found](std::size_t i, std::size_t j) {
    const Match &a = found[i], &b = found[j];
    return a.begin != b.begin ? a.begin < b.begin : a.end > b.end;
  };
  std::vector<std::size_t> merged(order.size());
  while (runs.size() > 2) {  // merge neighbouring runs pairwise, left before right on ties
    std::vector<std::size_t> next_runs{0};
    for (std::size_t r = 0; r + 1 < runs.size(); r += 2) {
      auto first = order.begin() + static_cast<std::ptrdiff_t>(runs[r]);
      auto middle = order.begin() + static_cast<std::ptrdiff_t>(runs[r + 1]);
      auto last =
          r + 2 < runs.size() ? order.begin() + static_cast<std::ptrdiff_t>(runs[r + 2]) : middle;
      std::merge(first, middle, middle, last, merged.begin() + static_cast<std::ptrdiff_t>(runs[r]),
                 before);
      next_runs.push_back(static_cast<std::size_t>(last - order.begin()));
    }
    order.swap(merged);
    runs.swap(next_runs);
  }
  std::vector<Match> kept;
  kept.reserve(found.size());
  for (std::size_t i : order) {
    Match& m = found[i];
    if (!kept.empty() && m.begin < kept.back().end) {
      Match& last = kept.back();
      int rm = Rank(m.data_class), rl = Rank(last.data_class);
      bool same_span = m.begin == last.begin && m.end == last.end;
      if (rm > rl || (rm == rl && m.end - m.begin > last.end - last.begin) ||
          (rm == rl && same_span && TiePreference(m.rule) > TiePreference(last.rule)))
        last = std::move(m);
      continue;
    }
    kept.push_back(std::move(m));
  }
  return kept;
}

}  // namespace airlock::policy
