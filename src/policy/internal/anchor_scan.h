// Hand-written candidate finders for the Hyperscan prefilter (private to the policy module), for
// rules that are slow for Hyperscan on ordinary text although a few bit operations find where
// they can match: payment-card's anchor (a database of its own that cost ~0.5 ms per MiB of mixed
// text), iban (~0.4 ms: a bounded repeat), ipv6 (~0.2 ms) and zhipu-api-key (its 32-hex-digit
// run cost the shared database ~20%). One pass over the text, 64 bytes at a time, computes bit
// masks of byte classes (digits, word characters, upper-case letters, hex digits, '.', ':') and
// finds the few places where each rule can start; a short check by hand at each decides. The
// Hyperscan prefilter leaves these rules out of its databases and takes their regions from here;
// the RE2::Set prefilter does not use them.
// Contract (the one of prefilter.h for the rule): every match of the rule's pattern - for
// payment-card, every match its validator accepts, as rules.h's weaker anchor contract says -
// lies inside one of its regions, and starts at or before that region's starts_by. Regions come
// sorted by begin, within the text. Linear in the text size; reads nothing outside it.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

namespace airlock::policy::internal {

struct AnchorRegion {
  std::size_t begin, end;
  std::size_t starts_by;  // no match inside the region starts after it (see Region)
};

enum class HandRule {
  kPaymentCard = 0,
  kIban,
  kIpv6,
  kZhipu,
  kEmail,
  kIpv4,
  kUsSsn,
  kCnResidentId,
  kPhoneDialled00,
  kPhoneCnMobile,
  kPhoneCnMobileCc,
};
inline constexpr int kHandRuleCount = 11;

// The hand finder of the built-in rule `rule_id`, or nullopt where Hyperscan runs its pattern.
std::optional<HandRule> HandRuleFor(std::string_view rule_id);

using HandRegions = std::array<std::vector<AnchorRegion>, kHandRuleCount>;

// Which code computes the byte-class masks: the fastest this CPU runs (AVX2 where it has it),
// or the portable one (SSE2 on x86-64, plain C++ elsewhere). Both give the same regions; tests
// run both.
enum class HandScanKernel { kBest, kPortable };

// Clears and fills (*out)[r] for each rule r whose bit (1 << r) is set in `rules`.
void FindHandAnchors(std::string_view text, unsigned rules, HandRegions* out,
                     HandScanKernel kernel = HandScanKernel::kBest);

}  // namespace airlock::policy::internal
