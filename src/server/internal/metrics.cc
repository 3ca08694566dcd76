#include "server/internal/metrics.h"

#include <cstdio>

#include "server/engine_backend.h"

namespace airlock::server::internal {
namespace {

// A Prometheus label value: backslash, double quote and newline escaped (upstream names come from
// the policy file).
std::string LabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string RenderKvCacheGauge(const std::map<std::string, std::shared_ptr<ModelBackend>>& local) {
  std::string out =
      "# HELP airlock_engine_kv_cache_bytes Bytes of KV cache a local model allocated for all its "
      "slots, by model and cache element type.\n"
      "# TYPE airlock_engine_kv_cache_bytes gauge\n";
  for (const auto& [name, backend] : local) {
    if (backend == nullptr) continue;
    const KvCacheInfo kv = backend->KvCache();
    if (kv.bytes == 0) continue;
    out += "airlock_engine_kv_cache_bytes{model=\"" + LabelValue(name) + "\",kv_type=\"" +
           LabelValue(kv.type) + "\"} " + std::to_string(kv.bytes) + "\n";
  }
  return out;
}

std::string Metrics::Render() {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  out += "# HELP airlock_requests_total Requests served, by endpoint and HTTP status.\n";
  out += "# TYPE airlock_requests_total counter\n";
  for (const auto& [k, v] : requests_)
    out += "airlock_requests_total{endpoint=\"" + k.first + "\",status=\"" +
           std::to_string(k.second) + "\"} " + std::to_string(v) + "\n";
  out += "# HELP airlock_tokens_total Tokens processed.\n# TYPE airlock_tokens_total counter\n";
  out += "airlock_tokens_total{kind=\"prompt\"} " + std::to_string(prompt_tokens_.load()) + "\n";
  out += "airlock_tokens_total{kind=\"completion\"} " + std::to_string(completion_tokens_.load()) +
         "\n";
  out += "# HELP airlock_request_duration_seconds Request latency.\n";
  out += "# TYPE airlock_request_duration_seconds histogram\n";
  for (const auto& [endpoint, h] : latency_) {
    for (std::size_t i = 0; i < std::size(kBuckets); ++i) {
      char le[32];
      std::snprintf(le, sizeof le, "%g", kBuckets[i]);
      out += "airlock_request_duration_seconds_bucket{endpoint=\"" + endpoint + "\",le=\"" + le +
             "\"} " + std::to_string(h.counts[i]) + "\n";
    }
    out += "airlock_request_duration_seconds_bucket{endpoint=\"" + endpoint + "\",le=\"+Inf\"} " +
           std::to_string(h.count) + "\n";
    char sum[64];
    std::snprintf(sum, sizeof sum, "%.6f", h.sum);
    out += "airlock_request_duration_seconds_sum{endpoint=\"" + endpoint + "\"} " + sum + "\n";
    out += "airlock_request_duration_seconds_count{endpoint=\"" + endpoint + "\"} " +
           std::to_string(h.count) + "\n";
  }
  out += "# HELP airlock_policy_actions_total Policy actions applied, by data class.\n";
  out += "# TYPE airlock_policy_actions_total counter\n";
  for (const auto& [k, v] : actions_)
    out += "airlock_policy_actions_total{action=\"" + k.first + "\",data_class=\"" + k.second +
           "\"} " + std::to_string(v) + "\n";
  out +=
      "# HELP airlock_upstream_identity_failures_total Connections to an https upstream refused "
      "during the TLS handshake for their identity (CA chain, host name, SPKI pins, subject, "
      "organization), by upstream and check; nothing was sent on them.\n";
  out += "# TYPE airlock_upstream_identity_failures_total counter\n";
  for (const auto& [k, v] : identity_failures_)
    out += "airlock_upstream_identity_failures_total{upstream=\"" + LabelValue(k.first) +
           "\",check=\"" + k.second + "\"} " + std::to_string(v) + "\n";
  out += "# HELP airlock_in_flight_requests Requests being processed (queue depth).\n";
  out += "# TYPE airlock_in_flight_requests gauge\n";
  out += "airlock_in_flight_requests " + std::to_string(in_flight.load()) + "\n";
  // Local models (server/engine_backend.h): the slot queue and the batched decode steps.
  const EngineStepCounts steps = EngineSteps();
  out += "# HELP airlock_engine_queue_depth Requests waiting for a local-model slot.\n";
  out += "# TYPE airlock_engine_queue_depth gauge\n";
  out += "airlock_engine_queue_depth " + std::to_string(EngineQueueDepth()) + "\n";
  out += "# HELP airlock_engine_steps_total Forward passes run by local-model schedulers.\n";
  out += "# TYPE airlock_engine_steps_total counter\n";
  out += "airlock_engine_steps_total " + std::to_string(steps.steps) + "\n";
  out +=
      "# HELP airlock_engine_step_sequences_total Sequences those steps advanced (divided by "
      "the steps: the mean batch).\n";
  out += "# TYPE airlock_engine_step_sequences_total counter\n";
  out += "airlock_engine_step_sequences_total " + std::to_string(steps.sequences) + "\n";
  return out;
}

}  // namespace airlock::server::internal
