#include "core/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace airlock::core {
namespace {
std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::string HumanBytes(std::uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, kUnits[u]);
  return buf;
}

Progress::Progress(std::string label, std::uint64_t total, bool enabled)
    : label_(std::move(label)), total_(total), start_ns_(NowNs()),
      active_(enabled && ::isatty(STDERR_FILENO)) {}

Progress::~Progress() { Finish(); }

void Progress::Update(std::uint64_t done) {
  if (!active_) return;
  std::lock_guard lock(mu_);
  done_ = done;
  Draw(false);
}

void Progress::Add(std::uint64_t delta) {
  if (!active_) return;
  std::lock_guard lock(mu_);
  done_ += delta;
  Draw(false);
}

void Progress::SetLabel(std::string label) {
  if (!active_) return;
  std::lock_guard lock(mu_);
  label_ = std::move(label);
  Draw(false);
}

void Progress::Finish() {
  if (!active_) return;
  std::lock_guard lock(mu_);
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  active_ = false;
}

void Progress::Draw(bool force) {
  std::int64_t now = NowNs();
  if (!force && now - last_draw_ns_ < 100'000'000) return;
  last_draw_ns_ = now;
  double secs = static_cast<double>(now - start_ns_) / 1e9;
  if (total_ > 0) {
    double frac = static_cast<double>(done_) / static_cast<double>(total_);
    if (frac > 1) frac = 1;
    int width = 30;
    int filled = static_cast<int>(frac * width);
    std::string bar(filled, '#');
    bar.append(width - filled, '.');
    double eta = frac > 0 ? secs / frac - secs : 0;
    std::fprintf(stderr, "\r\033[K%s [%s] %3.0f%% %s/%s ETA %.0fs", label_.c_str(), bar.c_str(),
                 frac * 100, HumanBytes(done_).c_str(), HumanBytes(total_).c_str(), eta);
  } else {
    std::fprintf(stderr, "\r\033[K%s %s %.1fs", label_.c_str(), HumanBytes(done_).c_str(), secs);
  }
  std::fflush(stderr);
}

}  // namespace airlock::core
