// Text transformations the policy applies: redaction and reversible pseudonymization of detector
// matches, restoration of placeholders in (possibly streamed) responses, and separation of model
// reasoning (<think> blocks and the other families' markers) from the visible answer, also across
// stream chunks.
// Ownership: plain values. Thread-safety: one object per request; not shared between threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/detectors.h"
#include "policy/policy.h"

namespace airlock::policy {

// Holds the placeholder <-> original mapping of one request. Placeholders look like "[EMAIL_1]";
// the same original value always maps to the same placeholder within a request.
class Pseudonymizer {
 public:
  // Rewrites `text`: matches whose class maps to kRedact become "[REDACTED_<CLASS>]", kPseudonymize
  // become placeholders remembered for Restore(); other matches are left alone. `matches` must be
  // sorted and non-overlapping (as DetectorSet::Scan returns them).
  std::string Apply(std::string_view text, const std::vector<Match>& matches,
                    const std::map<DataClass, Action>& actions);
  // Replaces every known placeholder in `text` with its original value.
  std::string Restore(std::string_view text) const;
  bool empty() const { return originals_.empty(); }
  std::size_t size() const { return originals_.size(); }
  const std::map<std::string, std::string>& placeholders() const { return originals_; }

 private:
  std::map<std::string, std::string> originals_;    // placeholder -> original
  std::map<std::string, std::string> by_original_;  // original -> placeholder
  std::map<DataClass, int> counters_;
  std::size_t max_placeholder_len_ = 0;
  friend class StreamRestorer;
};

// Restores placeholders in a stream of text chunks. A placeholder split across chunks is held back
// until it is complete (or proven not to be one), so the concatenated output equals
// Restore(concatenated input).
class StreamRestorer {
 public:
  explicit StreamRestorer(const Pseudonymizer& p) : p_(p) {}
  // Returns the text that can be emitted now.
  std::string Feed(std::string_view chunk);
  // Returns whatever is still held back (call at end of stream).
  std::string Flush();

 private:
  const Pseudonymizer& p_;
  std::string pending_;
};

// The markers that open and close a model's reasoning, as its chat template or vocabulary
// defines them (Qwen3 and DeepSeek R1: "<think>" / "</think>"; others "<|begin_of_thought|>" /
// "<|end_of_thought|>"). Empty: not known (an upstream's model).
struct ThinkMarkers {
  std::string open;
  std::string close;
  bool empty() const { return open.empty() || close.empty(); }
  friend bool operator==(const ThinkMarkers&, const ThinkMarkers&) = default;
};

// Splits streamed model output into visible text and reasoning text, tolerating markers split
// across chunks. With a model's own markers, reasoning is delimited by exactly those. Without
// (an upstream), by every spelling the known model families use (docs/policy.md, "Reasoning"):
//   <think> / <thinking> (one family), <reasoning>, <seed:think> - each as a tag in any letter
//   case, with blanks or attributes before the '>' ("<THINK>", "<think >", "<think x=1>");
//   [THINK] / [/THINK] in any case; <|begin_of_thought|> / <|end_of_thought|>; and gpt-oss's
//   harmony analysis channel, "<|channel|>analysis<|message|>" up to "<|end|>".
// What counts as reasoning:
//   * the text between an opening and its closing marker; blocks nest (an opening marker inside
//     reasoning needs its own closing one, of its own family: "[THINK]a</think>b" is all
//     reasoning), markers themselves are dropped;
//   * an answer whose first marker is a closing one (the chat template wrote the opening one, as
//     DeepSeek R1's and QwQ's do): everything before it. Until the first marker the text is
//     therefore held (not returned) - up to kMaxUndecided bytes, then released as visible; a
//     closing marker after such a release sets Piece::reasoning_released (the caller already
//     passed reasoning on as answer: fail closed). Harmony's "<|end|>" ends any message, so it
//     does not count here;
//   * a closing marker later, with no block open, is answer text like any other.
// An unclosed block is reasoning to the end.
class ThinkSplitter {
 public:
  static constexpr std::size_t kMaxUndecided = 64u << 10;
  ThinkSplitter() = default;
  explicit ThinkSplitter(ThinkMarkers markers) : markers_(std::move(markers)) {}
  struct Piece {
    std::string visible;
    std::string reasoning;
    bool reasoning_released = false;
  };
  Piece Feed(std::string_view chunk);
  Piece Flush();

 private:
  static constexpr std::size_t kMaxDepth = 1 << 20;
  // A marker at a position of the pending text.
  struct Hit {
    enum Kind { kNone, kOpen, kClose, kPartial } kind = kNone;  // kPartial: the text ends in one
    std::size_t length = 0;
    int family = 0;  // blocks close only with a marker of the family that opened them
    bool closes_unopened = true;
  };
  Hit MatchAt(std::string_view s, std::size_t at) const;
  ThinkMarkers markers_;
  std::vector<std::uint8_t> open_;  // the families of the open reasoning blocks, innermost last
  bool decided_ = false;            // a marker was seen, or the held text released
  bool released_early_ = false;     // released at kMaxUndecided with no marker seen yet
  std::string undecided_;           // text before the first marker, held
  std::string pending_;             // text that may still start a marker
};

}  // namespace airlock::policy
