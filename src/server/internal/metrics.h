// Request, token, latency and policy-action counters of the gateway, rendered in the Prometheus
// text format for GET /metrics. Thread-safety: all methods are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "server/model_backend.h"

namespace airlock::server::internal {

// The gauge airlock_engine_kv_cache_bytes{model, kv_type}: the KV cache each local model
// allocated (all its slots), as its backend reports it (ModelBackend::KvCache); models that
// report none are left out.
std::string RenderKvCacheGauge(const std::map<std::string, std::shared_ptr<ModelBackend>>& local);

class Metrics {
 public:
  static constexpr double kBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,   0.5,   1,      2.5,   5,    10,    30};
  void Observe(const std::string& endpoint, int status, double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    requests_[{endpoint, status}]++;
    auto& h = latency_[endpoint];
    if (h.counts.empty()) h.counts.assign(std::size(kBuckets), 0);
    for (std::size_t i = 0; i < std::size(kBuckets); ++i)
      if (seconds <= kBuckets[i]) h.counts[i]++;
    h.count++;
    h.sum += seconds;
  }
  void Tokens(std::int64_t prompt, std::int64_t completion) {
    prompt_tokens_ += prompt;
    completion_tokens_ += completion;
  }
  void PolicyAction(const std::string& action, const std::string& data_class) {
    std::lock_guard<std::mutex> lock(mu_);
    actions_[{action, data_class}]++;
  }
  // An https upstream refused for its identity during the TLS handshake; `check` names which
  // ("chain", "host", "spki_sha256", "subject", "organization").
  void UpstreamIdentityFailure(const std::string& upstream, const std::string& check) {
    std::lock_guard<std::mutex> lock(mu_);
    identity_failures_[{upstream, check}]++;
  }
  std::atomic<int> in_flight{0};

  // Prometheus text exposition of everything above plus the local engines' counters.
  std::string Render();

 private:
  struct Histogram {
    std::vector<std::uint64_t> counts;
    std::uint64_t count = 0;
    double sum = 0;
  };
  std::mutex mu_;
  std::map<std::pair<std::string, int>, std::uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> actions_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> identity_failures_;
  std::atomic<std::int64_t> prompt_tokens_{0}, completion_tokens_{0};
};

}  // namespace airlock::server::internal
