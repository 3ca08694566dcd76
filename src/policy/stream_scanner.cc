#include "policy/stream_scanner.h"

#include <algorithm>

namespace airlock::policy {

StreamScanner::StreamScanner(const DetectorSet& detectors) : StreamScanner(detectors, Options{}) {}

StreamScanner::StreamScanner(const DetectorSet& detectors, Options options)
    : detectors_(detectors), options_(options) {
  options_.min_scan = std::max<std::size_t>(options_.min_scan, 1);
}

std::vector<Match> StreamScanner::Feed(std::string_view chunk) {
  if (finished_) return {};
  window_.append(chunk);
  if (total() - scanned_to_ < options_.min_scan) return {};
  return Decide(false);
}

std::vector<Match> StreamScanner::Finish() {
  if (finished_) return {};
  finished_ = true;
  return Decide(true);
}

std::vector<Match> StreamScanner::Decide(bool at_end) {
  scanned_to_ = total();
  std::vector<Match> found = detectors_.Scan(window_);
  std::size_t end = total();
  // Findings that start before `horizon` and end by it cannot change with more text.
  std::size_t horizon = at_end ? end : (end > options_.hold_back ? end - options_.hold_back : 0);
  bool forced = !at_end && window_.size() > options_.max_window;
  if (forced) horizon = std::max(horizon, end - options_.max_window / 2);
  std::size_t new_decided = std::max(horizon, decided_);
  for (Match& m : found) {
    m.begin += base_;
    m.end += base_;
    // A finding still growing across the horizon holds everything from its start.
    if (!forced && m.begin < horizon && m.end > horizon)
      new_decided = std::min(new_decided, m.begin);
  }
  new_decided = std::max(new_decided, decided_);
  std::vector<Match> decided;
  for (Match& m : found)
    if (m.begin >= decided_ && m.begin < new_decided) decided.push_back(std::move(m));
  if (!decided.empty()) new_decided = std::max(new_decided, decided.back().end);
  decided_ = std::min(new_decided, end);
  // Keep `context` bytes before the undecided text, starting on a UTF-8 character boundary.
  std::size_t keep_from = decided_ > options_.context ? decided_ - options_.context : 0;
  keep_from = std::max(keep_from, base_);
  while (keep_from > base_ &&
         (static_cast<unsigned char>(window_[keep_from - base_]) & 0xC0) == 0x80)
    --keep_from;
  window_.erase(0, keep_from - base_);
  base_ = keep_from;
  return decided;
}

}  // namespace airlock::policy
