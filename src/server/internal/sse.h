// Streaming between a producer (an upstream's SSE response read on its own thread, or a local
// model generating) and the thread that writes to the client: a bounded byte channel whose
// producer waits when the client is slow (backpressure up to the upstream's TCP window), and whose
// cancel flag stops the producer when the client goes away or the stream is cut off.
// Thread-safety: every method is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

namespace airlock::server::internal {

struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::string data;       // bytes not yet consumed
  int status = 0;         // HTTP status from the producer, once known
  bool finished = false;  // producer done
  int error = 0;  // 0: the producer succeeded; else its UpstreamFailure value (upstream) or -1
  std::atomic<bool> cancel{false};

  void SetStatus(int s) {
    std::lock_guard<std::mutex> lock(mu);
    status = s;
    cv.notify_all();
  }
  // Bytes a producer may have buffered ahead of the client. Past it the producer waits (the
  // upstream is not read, so TCP backpressure reaches it) until the client takes data or the
  // stream is cancelled (a client that stopped reading is cut off by the write timeout).
  static constexpr std::size_t kMaxBuffered = 8u << 20;
  bool Push(const char* p, std::size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    // Bounded waits: `cancel` is also set without the lock.
    while (data.size() >= kMaxBuffered && !cancel.load())
      cv.wait_for(lock, std::chrono::milliseconds(200));
    if (cancel.load()) return false;
    data.append(p, n);
    cv.notify_all();
    return true;
  }
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu);
    cancel = true;
    cv.notify_all();
  }
  void Finish(int e) {
    std::lock_guard<std::mutex> lock(mu);
    finished = true;
    error = e;
    cv.notify_all();
  }
  // Waits until the status is known or the producer is done.
  void WaitHeaders() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return status != 0 || finished; });
  }
  // Takes available bytes, waiting until there are some or the producer finished. Returns false
  // when finished and drained.
  bool Take(std::string* out) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return !data.empty() || finished; });
    if (data.empty()) return false;
    out->swap(data);
    data.clear();
    cv.notify_all();  // a producer may wait for room
    return true;
  }
  enum class Got { kData, kIdle, kDone };
  // Like Take, but gives up after `wait` (kIdle) so the caller can check on its client.
  Got TakeFor(std::string* out, std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, wait, [&] { return !data.empty() || finished; })) return Got::kIdle;
    if (data.empty()) return Got::kDone;
    out->swap(data);
    data.clear();
    cv.notify_all();
    return Got::kData;
  }
};

}  // namespace airlock::server::internal
