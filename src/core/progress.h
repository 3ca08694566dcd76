// A one-line progress bar on stderr, drawn only when stderr is a terminal (so CI logs and pipes
// stay clean). Updates are rate-limited to ~10 per second; safe to call from a hot loop.
// Thread-safety: Update/Finish may be called from any thread (internally serialized).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

namespace airlock::core {

class Progress {
 public:
  // `total` in `unit`s (e.g. bytes); 0 means unknown. Disabled when stderr is not a TTY or when
  // `enabled` is false.
  Progress(std::string label, std::uint64_t total, bool enabled = true);
  ~Progress();

  void Update(std::uint64_t done);
  void Add(std::uint64_t delta);
  void SetLabel(std::string label);
  void Finish();
  bool active() const { return active_; }

 private:
  void Draw(bool force);

  std::mutex mu_;
  std::string label_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  std::int64_t start_ns_;
  std::int64_t last_draw_ns_ = 0;
  bool active_;
};

// Formats a byte count as "12.3 MiB".
std::string HumanBytes(std::uint64_t bytes);

}  // namespace airlock::core
