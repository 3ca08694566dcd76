// Incremental detection over a stream of text (model output arriving in chunks): a StreamScanner
// takes chunks, keeps only a bounded window of recent text, and reports each finding once, with
// absolute byte offsets into the whole stream, as soon as text after it can no longer change it.
// It also says how many bytes are safe to release: no finding that is not yet reported can start
// before that offset.
//
// Findings are the same as DetectorSet::Scan over the concatenated text, whatever the chunking,
// provided every regex match (a finding together with its key word or context, e.g. "password:"
// before a value) is shorter than Options::context and every finding shorter than
// Options::hold_back; the defaults exceed every bounded built-in rule. A finding that is still
// growing at the end of the text (a PEM private key whose END line has not arrived) holds the
// release point at its start, up to Options::max_window bytes of held text.
//
// How the gateway should use it (one scanner per streamed field of a choice, e.g. content and
// reasoning, each fed the decoded text of its deltas in order):
//   for each delta:  findings = scanner.Feed(text);  apply the policy to `findings` (block ends
//                    the stream; redact/pseudonymize rewrites those absolute ranges, which are
//                    always inside the unreleased text), then forward the held text up to
//                    scanner.safe_to_release() and keep the rest;
//   at the end:      findings = scanner.Finish(); apply; forward everything.
// This replaces re-scanning the accumulated text on every chunk: each Feed costs time linear in
// the window (context + hold_back + min_scan), not in the length of the stream so far.
//
// Ownership: borrows the DetectorSet, which must outlive the scanner. Thread-safety: one scanner
// per stream; the DetectorSet may be shared.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "policy/detectors.h"

namespace airlock::policy {

class StreamScanner {
 public:
  struct Options {
    // Bytes at the end of the text that stay undecided: a finding can still appear or grow there.
    // At least the longest finding any rule can produce (bounded rules are under 700 bytes).
    std::size_t hold_back = 1024;
    // Bytes of already-decided text kept before the undecided part, so that matches that need
    // text before them (key words, word boundaries) are found as in one pass.
    std::size_t context = 2048;
    // Text is rescanned once this many new bytes have arrived (Finish scans the rest); smaller
    // means earlier release, larger means less rescanning.
    std::size_t min_scan = 256;
    // Held text beyond this is decided even if a finding is still growing (bounds memory).
    std::size_t max_window = 1 << 20;
  };

  explicit StreamScanner(const DetectorSet& detectors);
  StreamScanner(const DetectorSet& detectors, Options options);

  // Appends `chunk` (any bytes; UTF-8 characters may be split between chunks). Returns the
  // findings decided by it, sorted, with offsets into the whole stream.
  std::vector<Match> Feed(std::string_view chunk);
  // Ends the stream: returns every finding not reported yet. Feed after Finish starts nothing new
  // and returns nothing.
  std::vector<Match> Finish();

  // Bytes [0, safe_to_release()) of the stream will not be part of any finding reported later.
  std::size_t safe_to_release() const { return decided_; }
  // Bytes fed so far.
  std::size_t total() const { return base_ + window_.size(); }

 private:
  std::vector<Match> Decide(bool at_end);

  const DetectorSet& detectors_;
  Options options_;
  std::string window_;          // stream bytes [base_, total())
  std::size_t base_ = 0;        // stream offset of window_[0]
  std::size_t decided_ = 0;     // findings starting before this have been reported
  std::size_t scanned_to_ = 0;  // total() at the last scan
  bool finished_ = false;
};

}  // namespace airlock::policy
