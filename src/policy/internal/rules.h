// The built-in detector rule table (private to the policy module). Each rule is an RE2 pattern
// with exactly one capturing group: the span that is reported (and redacted). Secret rules cover
// the gitleaks rule families by token format, written from the providers' documented prefixes;
// they are not copied from gitleaks.
#pragma once

#include <span>
#include <string_view>

#include "policy/detectors.h"

namespace airlock::policy::internal {

enum class Validator {
  kNone,
  kEmail,
  kPhoneE164,
  kPaymentCard,
  kIban,
  kUsSsn,
  kCnResidentId,
  kIpv4,
  kIpv6,
  kEntropy,  // secret: Shannon entropy of the span must exceed min_entropy
};

struct Rule {
  std::string_view id;
  DataClass data_class;
  std::string_view pattern;
  Validator validator = Validator::kNone;
  double min_entropy = 0;  // bits per character, for kEntropy
  // Optional anchor for the multi-pattern prefilter, for rules whose pattern is slow to run in
  // one pass (a long bounded repeat before a literal) or reports at too many offsets. Contract:
  // every match of `pattern` contains a match of `anchor`, and for an anchor match ending at
  // offset a the rule's whole match lies inside [a - anchor_before, a + anchor_after].
  // Without an anchor the pattern itself is the prefilter (see internal/prefilter.h).
  // A weaker contract is enough and is what payment-card uses: every match *that the validator
  // accepts* (from its start, as the left-to-right walk finds it over the whole text) holds an
  // anchor match within those bounds. Matches the validator rejects yield nothing, and a match
  // found cut short at a region's end is rejected too: were it accepted, its start would carry
  // an anchor whose region holds the whole match, and the region would not have cut it.
  std::string_view anchor = {};
  unsigned anchor_before = 0;
  unsigned anchor_after = 0;
  // Hyperscan: scan this rule's pattern (or anchor) in a database of its own. Rules that only
  // match digits are cheap alone and slow down the shared database for every text, prose
  // included (measured: docs/performance.md).
  bool own_database = false;
};

std::span<const Rule> BuiltinRules();

}  // namespace airlock::policy::internal
