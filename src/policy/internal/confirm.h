// Hand-written matchers for the commonest detector rules (private to the policy module): e-mail,
// IPv4, the generic key assignment and the fixed-prefix token formats (ghp_..., npm_...). Each
// gives exactly what RE2::Match(text, from, limit, UNANCHORED, groups, 2) gives for the rule's
// pattern (rules.cc): the leftmost match starting at or after `from` and ending at or before
// `limit`, with Perl (leftmost-first) preferences, the bytes outside [from, limit) read only as
// context for \b and the token boundary. The detectors call them instead of RE2 on the candidate
// regions; findings do not change (tests/policy/confirm_test.cc compares every matcher with RE2
// on the labelled corpus and on random text, and fuzz/detector_engines_fuzz.cc on fuzz input).
// Where a matcher cannot be sure without Unicode case folding or UTF-8 decoding (a non-ASCII
// byte where it matters), it answers kUnsure and the caller runs RE2.
#pragma once

#include <cstddef>
#include <string_view>

namespace airlock::policy::internal {

struct ConfirmedMatch {
  std::size_t whole_begin, whole_end;  // the pattern's whole match
  std::size_t begin, end;              // its capturing group
};

enum class ConfirmResult { kNoMatch, kMatch, kUnsure };

// `from` <= `limit` <= text.size(). Never reads outside `text`.
using Confirmer = ConfirmResult (*)(std::string_view text, std::size_t from, std::size_t limit,
                                    ConfirmedMatch* out);

// The hand-written matcher for the built-in rule `rule_id`, or nullptr where RE2 confirms.
Confirmer ConfirmerFor(std::string_view rule_id);

}  // namespace airlock::policy::internal
