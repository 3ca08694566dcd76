// Readiness of the gateway's shared key store: a thread that asks the store every 2 s whether
// it answers (KeyStore::Ping, its own connection, never one a request waits for), so that /ready
// reflects an outage, and its end, without any database round trip on the probe's request.
// Thread-safety: available()/reason() from any thread; the destructor stops the thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "server/keys.h"

namespace airlock::server::internal {

class StoreProbe {
 public:
  // `store` must outlive the probe.
  explicit StoreProbe(KeyStore* store) : store_(store) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~StoreProbe() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  StoreProbe(const StoreProbe&) = delete;
  StoreProbe& operator=(const StoreProbe&) = delete;

  // False since a probe failed, until one succeeds. True before the first probe: the store was
  // reached when the gateway opened it.
  bool available() const { return available_.load(); }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::seconds(2), [this] { return stop_; });
      if (stop_) return;
      lock.unlock();
      Status s = store_->Ping();
      lock.lock();
      bool was = available_.exchange(s.ok());
      if (was && !s.ok())
        std::fprintf(stderr, "airlock serve: not ready: %s\n", s.message().c_str());
      else if (!was && s.ok())
        std::fprintf(stderr, "airlock serve: the key store %s answers again\n",
                     store_->Describe().c_str());
    }
  }

  KeyStore* store_;
  std::atomic<bool> available_{true};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace airlock::server::internal
