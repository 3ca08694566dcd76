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
};

std::span<const Rule> BuiltinRules();

}  // namespace airlock::policy::internal
