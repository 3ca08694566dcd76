// Hand-written candidate finders for the Hyperscan prefilter (private to the policy module), for
// rules whose pattern or anchor is slow for Hyperscan on ordinary text although a few lines of
// code find where it can match: `zhipu-api-key` (its 32-hex-digit run cost the shared database
// ~20% of its time on mixed text) and `payment-card`'s anchor (a database of its own that cost
// ~0.5 ms per MiB). The Hyperscan prefilter leaves these rules out of its databases and asks the
// finder instead; the RE2::Set prefilter does not use them.
// Contract (the one of prefilter.h for the rule): every match of the rule's pattern - for
// payment-card, every match its validator accepts, as rules.h's weaker anchor contract says -
// lies inside one of the returned regions. Regions are returned sorted by begin, within the text.
// The finders read only `text`, are linear in its size and never allocate per byte.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace airlock::policy::internal {

struct AnchorRegion {
  std::size_t begin, end;
  std::size_t starts_by;  // no match inside the region starts after it (see Region)
};

// Appends the rule's candidate regions in `text` to `out` (sorted by begin).
using AnchorFinder = void (*)(std::string_view text, std::vector<AnchorRegion>* out);

// The finder for the built-in rule `rule_id`, or nullptr where Hyperscan runs its pattern.
AnchorFinder AnchorFinderFor(std::string_view rule_id);

}  // namespace airlock::policy::internal
