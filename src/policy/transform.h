// Text transformations the policy applies: redaction and reversible pseudonymization of detector
// matches, restoration of placeholders in (possibly streamed) responses, and separation of model
// reasoning (<think> blocks) from the visible answer, also across stream chunks.
// Ownership: plain values. Thread-safety: one object per request; not shared between threads.
#pragma once

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
// across chunks. Without markers (an upstream) reasoning is delimited by <think> / </think> or
// <thinking> / </thinking> in any letter case, with blanks or attributes before the '>'
// ("<THINK>", "<think >", "<think\n>", "<think x=1>"); with a model's own markers, by exactly
// those. What counts as reasoning:
//   * the text between an opening and its closing marker; blocks nest (an opening marker inside
//     reasoning needs its own closing one), markers themselves are dropped;
//   * an answer whose first marker is a closing one (the chat template wrote the opening one, as
//     DeepSeek R1's and QwQ's do): everything before it. Until the first marker the text is
//     therefore held (not returned) - up to kMaxUndecided bytes, then released as visible; a
//     closing marker after such a release sets Piece::reasoning_released (the caller already
//     passed reasoning on as answer: fail closed);
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
  static constexpr int kMaxDepth = 1 << 20;
  ThinkMarkers markers_;
  int depth_ = 0;                // open reasoning blocks
  bool decided_ = false;         // a marker was seen, or the held text released
  bool released_early_ = false;  // released at kMaxUndecided with no marker seen yet
  std::string undecided_;        // text before the first marker, held
  std::string pending_;          // text that may still start a marker
};

}  // namespace airlock::policy
