// Candidate finding for the detectors (private to the policy module): one pass over the text,
// for all rules at once, that says for each rule where its matches can be. The exact RE2 rule
// then runs only inside those regions, so the findings do not depend on which engine found the
// candidates:
//   * Hyperscan (x86-64, Debian libhyperscan-dev) reports every end offset of every match of
//     every rule's pattern (or of its anchor, see Rule::anchor); a rule's match ending at `e`
//     starts at or after e - max_width (from the start of the text for the few secret formats of
//     unbounded length). Overlapping regions are merged. Rules marked own_database are scanned
//     in a database of their own, after the shared one.
//   * RE2::Set (portable) says only which rules match somewhere; their region is the whole text.
// Contract: every match of rule r (as RE2 finds it anywhere in the text, with the text around it
// as context; for an anchor under the weaker contract of rules.h, every match r's validator
// accepts) lies inside one region of r: begin >= region.begin and end <= region.end. Regions
// of one rule are sorted by begin; group_end is the end of the run of overlapping regions a
// region belongs to (the next run starts after it), which bounds every match starting inside it.
// A rule with a hand-written finder (internal/anchor_scan.h) gets its regions from it instead of
// from Hyperscan, under the same contract.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "policy/internal/rules.h"

namespace airlock::policy::internal {

struct Region {
  std::size_t begin, end, group_end;
  // No match of the rule that lies inside this region starts after `starts_by` (the last end
  // offset reported into it: a match contains the report's pattern or anchor match, so it starts
  // at or before that end). A walk past it can go on to the next region.
  std::size_t starts_by;
};

struct Candidates {
  struct RuleRegions {
    int rule;                 // index into the rules the prefilter was built from
    std::size_t first, last;  // regions[first, last)
  };
  std::vector<RuleRegions> rules;  // increasing rule index; rules that cannot match are absent
  std::vector<Region> regions;
  void Clear() {
    rules.clear();
    regions.clear();
  }
};

class Prefilter {
 public:
  virtual ~Prefilter() = default;
  virtual std::string_view name() const = 0;
  // Fills `out` for `text`. Never fails: on an engine error every rule gets the whole text.
  virtual void Find(std::string_view text, Candidates* out) const = 0;
};

// Hyperscan, when built with it (AIRLOCK_HAVE_HYPERSCAN) and the CPU supports it; kUnavailable
// otherwise, kInternal if a built-in pattern does not compile (a bug).
Result<std::unique_ptr<Prefilter>> MakeHyperscanPrefilter(std::span<const Rule* const> rules);
Result<std::unique_ptr<Prefilter>> MakeRe2SetPrefilter(std::span<const Rule* const> rules);
bool HyperscanBuilt();

// The rule's pattern rewritten for a byte-wise engine so that it matches a superset of what RE2
// (UTF-8 mode) matches, with the same or earlier starts: \s and \w spelt out as RE2 reads them,
// and a negated class counted as up to four bytes per character. Exposed for tests.
std::string BytewisePattern(std::string_view re2_pattern);

}  // namespace airlock::policy::internal
