#include "server/gateway.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "audit/audit_log.h"
#include "core/hash.h"
#include "policy/detectors.h"
#include "policy/transform.h"
#include "server/engine_backend.h"
#include "server/internal/auth_failures.h"
#include "server/internal/json_limits.h"
#include "server/internal/request.h"
#include "server/keys.h"

namespace airlock::server {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using internal::DumpJson;
using internal::IntegerField;
using internal::ParseBoundedJson;

std::string RandomId() {
  unsigned char b[8];
  if (RAND_bytes(b, sizeof b) != 1) return "0";
  return core::ToHex(std::span<const std::uint8_t>(b, sizeof b));
}

std::int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view DefaultErrorType(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "invalid_request_error";
    case 429:
      return "rate_limit_error";
    case 500:
      return "server_error";
    case 502:
    case 503:
    case 504:
      return "upstream_error";
    default:
      return "invalid_request_error";
  }
}

std::string ErrorBody(int status, const std::string& message, const std::string& code,
                      const std::string& param = "") {
  json j = {{"error",
             {{"message", message},
              {"type", DefaultErrorType(status)},
              {"param", param.empty() ? json(nullptr) : json(param)},
              {"code", code.empty() ? json(nullptr) : json(code)}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void SetError(httplib::Response& res, int status, const std::string& message,
              const std::string& code, const std::string& param = "") {
  res.status = status;
  res.set_content(ErrorBody(status, message, code, param), "application/json");
}

// ---- metrics (Prometheus text format) ----
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
  std::atomic<int> in_flight{0};

  std::string Render() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    out += "# HELP airlock_requests_total Requests served, by endpoint and HTTP status.\n";
    out += "# TYPE airlock_requests_total counter\n";
    for (const auto& [k, v] : requests_)
      out += "airlock_requests_total{endpoint=\"" + k.first + "\",status=\"" +
             std::to_string(k.second) + "\"} " + std::to_string(v) + "\n";
    out += "# HELP airlock_tokens_total Tokens processed.\n# TYPE airlock_tokens_total counter\n";
    out += "airlock_tokens_total{kind=\"prompt\"} " + std::to_string(prompt_tokens_.load()) + "\n";
    out += "airlock_tokens_total{kind=\"completion\"} " +
           std::to_string(completion_tokens_.load()) + "\n";
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
  std::atomic<std::int64_t> prompt_tokens_{0}, completion_tokens_{0};
};

// ---- upstream connection pools ----
struct UpstreamEndpoint {
  std::string scheme_host_port;  // "http://127.0.0.1:9000"
  std::string host;              // "127.0.0.1"
  int port = 0;
  std::string path_prefix;  // "/v1"
  std::string api_key;      // from the environment; never logged
  int timeout_s = 60;
  std::string ca_file;
};

class ClientPool {
 public:
  explicit ClientPool(UpstreamEndpoint e) : endpoint_(std::move(e)) {}
  std::unique_ptr<httplib::Client> Acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<httplib::Client>(endpoint_.scheme_host_port);
    c->set_connection_timeout(5, 0);
    c->set_read_timeout(endpoint_.timeout_s, 0);
    c->set_write_timeout(endpoint_.timeout_s, 0);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(
        true);  // headers and body are separate writes: avoid Nagle/delayed-ACK stalls
    if (!endpoint_.ca_file.empty()) c->set_ca_cert_path(endpoint_.ca_file.c_str());
    return c;
  }
  void Release(std::unique_ptr<httplib::Client> c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < 64) idle_.push_back(std::move(c));
  }
  const UpstreamEndpoint& endpoint() const { return endpoint_; }

 private:
  UpstreamEndpoint endpoint_;
  std::mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_;
};

Result<UpstreamEndpoint> EndpointFor(const policy::Upstream& u) {
  UpstreamEndpoint e;
  auto url = policy::ParseBaseUrl(u.base_url);
  if (!url.ok())
    return InvalidArgument("server: upstream '" + u.name + "' base_url " + url.error().message());
  bool v6 = url->host.find(':') != std::string::npos;
  e.scheme_host_port = url->scheme + "://" + (v6 ? "[" + url->host + "]" : url->host) + ":" +
                       std::to_string(url->port);
  e.host = url->host;
  e.port = url->port;
  e.path_prefix = url->path;
  if (!u.api_key_env.empty())
    if (const char* k = std::getenv(u.api_key_env.c_str())) e.api_key = k;
  e.timeout_s = u.timeout_s;
  e.ca_file = u.ca_file;
  return e;
}

// ---- streaming channel between an upstream/backend producer thread and the client writer ----
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::string data;       // bytes not yet consumed
  int status = 0;         // HTTP status from the producer, once known
  bool finished = false;  // producer done
  httplib::Error error = httplib::Error::Success;
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
  void Finish(httplib::Error e) {
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

// Per-request state shared by the handler, the streaming provider and the producer thread.
// Settling is structural: every path ends in Gateway::Impl::Finish (one audit record, the
// reservation reconciled), and a state destroyed unsettled (an exception, a provider httplib never
// ran) settles itself in its destructor through `settle_unsettled`.
struct RequestState {
  RequestState() = default;
  RequestState(const RequestState&) = delete;
  RequestState& operator=(const RequestState&) = delete;
  ~RequestState() {
    if (!settled && settle_unsettled) settle_unsettled(*this);
    if (on_release) on_release();
  }
  std::function<void(RequestState&)> settle_unsettled;
  std::function<void()> on_release;  // the gateway waits for every state before it goes away
  bool forwarded = false;     // handed to an upstream or a local model (it may have done work)
  std::string incoming_hops;  // the hop header the request arrived with
  std::string request_id;
  std::string endpoint;
  bool chat = true;
  Clock::time_point start;
  KeyInfo key;
  bool anonymous = true;
  std::string model;
  std::string upstream_name;
  std::string jurisdiction;
  std::vector<std::string> data_classes;
  std::vector<std::string> actions;
  std::string prompt_sha256;
  std::string forwarded_prompt;  // what left the gateway (for store_text)
  std::optional<Reservation> reservation;
  std::int64_t prompt_estimate = 0;
  std::int64_t completion_cap = 0;       // per choice
  std::int64_t completion_reserved = 0;  // cap times max(n, best_of): the whole completion bound
  bool settled = false;

  policy::Pseudonymizer pseudonymizer;
  policy::ReasoningAction reasoning = policy::ReasoningAction::kPass;
  // Response-side policy: model output is scanned before reasoning is split off and placeholders
  // are restored, holding back the last kResponseHoldback bytes of a stream so that a match split
  // across chunks is seen whole.
  static constexpr std::size_t kResponseHoldback = 256;
  // A match still growing (a private key header followed by base64 without an end) is held back
  // whole; past this size the answer ends (fail closed) instead of being buffered without bound.
  static constexpr std::size_t kMaxResponseHoldback = 64u << 10;
  const policy::Policy* policy = nullptr;
  const policy::DetectorSet* detectors = nullptr;
  bool response_blocked = false;
  std::string response_block_reason;
  bool produced_reasoning = false;  // the answer had reasoning: data class "reasoning" in the audit
  std::set<std::string> response_actions;

  struct ChoiceState {
    std::string unscanned;  // output not yet released by the response scan
    // While a growing match holds output back, the next scan waits until the held text doubled,
    // so a long hold-back is rescanned a logarithmic number of times (linear work in all).
    std::size_t rescan_at = 0;
    std::unique_ptr<policy::StreamRestorer> restorer;
    policy::ThinkSplitter splitter;
    std::string visible;
    bool finished = false;
  };
  std::map<int, ChoiceState> choices;
  std::string reasoning_text;
  std::int64_t prompt_tokens = -1;
  std::int64_t completion_tokens = -1;
  std::int64_t streamed_pieces = 0;
  bool stream_broken = false;  // an upstream SSE event exceeded the size or nesting limits

  // Token counts from an upstream's `usage`. A count that is missing or not an integer is left
  // unknown (-1: estimated from the output at settlement); one past 2^40 is not believed and the
  // whole reservation is charged instead (a hostile upstream must not be charged 0).
  void TakeUsage(const json& usage) {
    auto count = [&](const char* key, std::int64_t implausible) -> std::int64_t {
      auto it = usage.find(key);
      if (it == usage.end() || !it->is_number()) return -1;
      if (it->is_number_float()) {
        double d = it->get<double>();
        return d > static_cast<double>(std::int64_t{1} << 40) ? implausible : -1;
      }
      std::int64_t v = IntegerField(usage, key, -2);
      return v == -2 ? (it->is_number_unsigned() ? implausible : -1) : v;
    };
    prompt_tokens = count("prompt_tokens", prompt_estimate);
    completion_tokens = count("completion_tokens", completion_reserved);
  }
  // Fills in unknown counts: the prompt estimate, and for the completion the larger of the
  // output-based estimate and what was streamed (never less than what reached the client).
  void SettleCounts(std::int64_t output_estimate) {
    if (prompt_tokens < 0) prompt_tokens = prompt_estimate;
    if (completion_tokens < 0) completion_tokens = output_estimate;
    completion_tokens = std::max(completion_tokens, streamed_pieces);
  }

  // Held-back streams of the other fields of a delta: {choice index, "reasoning" or "tool:N"}.
  std::map<std::pair<int, std::string>, ChoiceState> held;
  bool ChoiceFinished(int index) const {
    auto it = choices.find(index);
    return it != choices.end() && it->second.finished;
  }
  std::string HoldBack(int index, const std::string& field, std::string_view text) {
    // Each held field may hold up to 64 KiB; a hostile upstream spreading text over many choices
    // and tool-call indices must not multiply that without bound.
    constexpr std::size_t kMaxHeldFields = 64;
    if (held.size() >= kMaxHeldFields && !held.count({index, field})) {
      response_blocked = true;
      response_block_reason = "more than 64 tool-call/reasoning fields held back at once";
      return "";
    }
    ChoiceState& f = held[{index, field}];
    f.unscanned += text;
    return ReleaseScanned(f, /*final=*/false);
  }
  // Releases what is still held for choice `index` into `delta` (reasoning_content appended,
  // tool call arguments appended to the tool call of that index, or a new entry).
  void FlushHeld(int index, json& delta) {
    for (auto& [key, f] : held) {
      if (key.first != index || response_blocked) continue;
      std::string rest = ReleaseScanned(f, /*final=*/true);
      if (rest.empty() || response_blocked) continue;
      if (key.second == "reasoning") {
        auto keep = ProcessReasoningField(rest);
        if (!keep) continue;
        auto r = delta.find("reasoning_content");
        delta["reasoning_content"] =
            (r != delta.end() && r->is_string() ? r->get<std::string>() : std::string()) + *keep;
        continue;
      }
      if (key.second == "fcall" || key.second.rfind("field:", 0) == 0) {
        PutHeldText(delta, key.second, rest);
        continue;
      }
      std::int64_t tindex = std::stoll(key.second.substr(5));
      json& tcs = delta["tool_calls"];
      if (!tcs.is_array()) tcs = json::array();
      json* target = nullptr;
      for (json& tc : tcs)
        if (tc.is_object() && IntegerField(tc, "index", -1, internal::kMaxChoices) == tindex &&
            tc.contains("function") && tc["function"].is_object())
          target = &tc;
      if (!target) {
        tcs.push_back({{"index", tindex}, {"function", {{"arguments", ""}}}});
        target = &tcs.back();
      }
      json& a = (*target)["function"]["arguments"];
      a = (a.is_string() ? a.get<std::string>() : std::string()) + rest;
    }
  }
  // Appends released text of a held plain field ("field:refusal", "field:reasoning", "fcall")
  // to `delta`. `reasoning` follows the reasoning policy like reasoning_content.
  void PutHeldText(json& delta, const std::string& key, const std::string& text) {
    if (key == "fcall") {
      json& fc = delta["function_call"];
      if (!fc.is_object()) fc = json::object();
      json& a = fc["arguments"];
      a = (a.is_string() ? a.get<std::string>() : std::string()) + text;
      return;
    }
    if (text.empty()) return;  // nothing released yet: the field is left out of this chunk
    std::string name = key.substr(6);
    std::string value = text;
    if (name == "reasoning") {
      auto keep = ProcessReasoningField(text);
      if (!keep) return;
      value = *keep;
    }
    json& f = delta[name];
    f = (f.is_string() ? f.get<std::string>() : std::string()) + value;
  }
  std::set<int> HeldIndices() const {
    std::set<int> out;
    for (const auto& [key, f] : held)
      if (!f.unscanned.empty()) out.insert(key.first);
    return out;
  }

  ChoiceState& Choice(int index) {
    ChoiceState& c = choices[index];
    if (!c.restorer) c.restorer = std::make_unique<policy::StreamRestorer>(pseudonymizer);
    return c;
  }
  // Scans held-back output of a choice and releases what is settled (everything when `final`):
  // redacted where the response rules say so; "" and response_blocked set for a blocked class.
  std::string ReleaseScanned(ChoiceState& c, bool final) {
    if (!detectors || response_blocked) {
      std::string all;
      if (!response_blocked) all.swap(c.unscanned);
      c.unscanned.clear();
      return all;
    }
    if (!final && c.unscanned.size() < c.rescan_at) return "";
    std::vector<policy::Match> matches = detectors->Scan(c.unscanned);
    std::size_t size = c.unscanned.size();
    std::size_t emit = final ? size : (size > kResponseHoldback ? size - kResponseHoldback : 0);
    for (const policy::Match& m : matches)
      if (m.begin < emit && m.end > emit) emit = m.begin;  // never cut a match
    while (emit > 0 && emit < size &&
           (static_cast<unsigned char>(c.unscanned[emit]) & 0xC0) == 0x80)
      --emit;  // nor a UTF-8 sequence
    const std::size_t held = size - emit;
    if (!final && held > kMaxResponseHoldback) {
      BlockUnredactable("a possible match longer than 64 KiB (held back, never sent)");
      c.unscanned.clear();
      return "";
    }
    c.rescan_at = held > kResponseHoldback ? 2 * held : 0;
    std::vector<policy::Match> ready;
    std::set<policy::DataClass> found;
    for (const policy::Match& m : matches)
      if (m.end <= emit) {
        ready.push_back(m);
        found.insert(m.data_class);
      }
    std::string out = c.unscanned.substr(0, emit);
    c.unscanned.erase(0, emit);
    if (ready.empty()) return out;
    policy::Verdict v =
        policy::DecideResponse(*policy, std::vector<policy::DataClass>(found.begin(), found.end()));
    if (v.blocked) {
      response_blocked = true;
      response_block_reason = v.reason;
      c.unscanned.clear();
      return "";
    }
    for (const auto& [cls, a] : v.actions)
      response_actions.insert("response:" + std::string(policy::DataClassName(cls)) + ":" +
                              std::string(policy::ActionName(a)));
    policy::Pseudonymizer redactor;  // only kRedact actions: nothing to remember
    return redactor.Apply(out, ready, v.actions);
  }

  // Ends the answer because part of it can be neither forwarded nor redacted (a key or number
  // with a finding the response rules act on, content that is not a string): 502 / error event.
  bool response_unredactable = false;
  void BlockUnredactable(const std::string& what) {
    if (response_blocked) return;
    response_blocked = true;
    response_unredactable = true;
    response_block_reason = what;
  }
  // A text that is forwarded as it is (an object key, a number's digits): one whose finding the
  // response rules would redact or block ends the answer.
  void CheckFixedText(const std::string& text, const char* what) {
    if (!detectors || response_blocked) return;
    std::vector<policy::Match> matches = detectors->Scan(text);
    if (matches.empty()) return;
    std::set<policy::DataClass> found;
    for (const auto& m : matches) found.insert(m.data_class);
    policy::Verdict v =
        policy::DecideResponse(*policy, std::vector<policy::DataClass>(found.begin(), found.end()));
    bool acted = v.blocked;
    for (const auto& [cls, a] : v.actions)
      if (a != policy::Action::kAllow) acted = true;
    if (acted)
      BlockUnredactable(std::string(policy::DataClassName(*found.begin())) + " in " + what +
                        " of the upstream's answer, which cannot be redacted");
  }

  // Scans the strings of a message or delta other than content (reasoning_content, tool call
  // arguments, refusal, role, ...) with the response rules, each string as it arrives: redacts in
  // place, or sets response_blocked. Object keys and numbers of 7 or more digits cannot be
  // redacted: a finding ends the answer; so does content that is neither a string nor null.
  // Unlike content, a match split across two stream chunks of such a field is not seen.
  void ScanOutputFields(json& node, bool top = true) {
    if (!detectors || response_blocked) return;
    if (node.is_number()) {
      std::string text = internal::NumberScanText(node);
      if (std::count_if(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) >= 7)
        CheckFixedText(text, "a number");
      return;
    }
    if (node.is_string()) {
      const std::string& text = node.get_ref<const std::string&>();
      std::vector<policy::Match> matches = detectors->Scan(text);
      if (matches.empty()) return;
      std::set<policy::DataClass> found;
      for (const auto& m : matches) found.insert(m.data_class);
      policy::Verdict v = policy::DecideResponse(
          *policy, std::vector<policy::DataClass>(found.begin(), found.end()));
      if (v.blocked) {
        response_blocked = true;
        response_block_reason = v.reason;
        node = "";
        return;
      }
      for (const auto& [cls, a] : v.actions)
        response_actions.insert("response:" + std::string(policy::DataClassName(cls)) + ":" +
                                std::string(policy::ActionName(a)));
      policy::Pseudonymizer redactor;
      node = redactor.Apply(text, matches, v.actions);
    } else if (node.is_array()) {
      for (json& e : node) ScanOutputFields(e, false);
    } else if (node.is_object()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        CheckFixedText(it.key(), "an object key");
        if (top && it.key() == "content") {
          if (!it->is_string() && !it->is_null()) BlockUnredactable("non-string content");
          continue;  // scanned, split and restored by ProcessText
        }
        ScanOutputFields(*it, false);
      }
    }
  }

  // Everything of a response or stream chunk outside the message / delta / text handled above
  // (choice-level logprobs, finish_reason, unknown fields, top-level fields such as
  // system_fingerprint, usage numbers), with the same rules as ScanOutputFields.
  void ScanEnvelope(json& doc, bool chat_shape) {
    if (!doc.is_object()) return ScanOutputFields(doc, false);
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      CheckFixedText(it.key(), "an object key");
      if (it.key() != "choices" || !it->is_array()) {
        ScanOutputFields(*it, false);
        continue;
      }
      for (json& c : *it) {
        if (!c.is_object()) {
          ScanOutputFields(c, false);
          continue;
        }
        for (auto f = c.begin(); f != c.end(); ++f) {
          CheckFixedText(f.key(), "an object key");
          const std::string& k = f.key();
          if (chat_shape && (k == "message" || k == "delta") && f->is_object())
            continue;  // ScanOutputFields and ProcessText
          if (!chat_shape && k == "text") {
            if (!f->is_string() && !f->is_null()) BlockUnredactable("non-string text");
            continue;  // ProcessText
          }
          ScanOutputFields(*f, false);
        }
      }
    }
  }

  // Processes a piece of model output text of choice `index`; returns what the client sees.
  // `whole`: the choice's complete text (not streamed), scanned at once with no hold-back bound.
  std::string ProcessText(int index, std::string_view raw, bool whole = false) {
    ChoiceState& c = Choice(index);
    c.unscanned += raw;
    std::string scanned = ReleaseScanned(c, /*final=*/whole);
    std::string_view text = scanned;
    std::string visible(text);
    // The splitter runs in every mode so that reasoning is recorded as a data class; only
    // strip/log take it out of what the client sees.
    auto piece = c.splitter.Feed(text);
    if (!piece.reasoning.empty()) produced_reasoning = true;
    if (reasoning != policy::ReasoningAction::kPass) {
      reasoning_text += piece.reasoning;
      visible = std::move(piece.visible);
    }
    std::string out = c.restorer->Feed(visible);
    c.visible += out;
    return out;
  }
  std::string FinishChoice(int index) {
    ChoiceState& c = Choice(index);
    if (c.finished) return "";
    c.finished = true;
    std::string out;
    std::string rest = ReleaseScanned(c, /*final=*/true);
    auto piece = c.splitter.Feed(rest);
    auto last = c.splitter.Flush();
    if (!piece.reasoning.empty() || !last.reasoning.empty()) produced_reasoning = true;
    if (reasoning != policy::ReasoningAction::kPass) {
      reasoning_text += piece.reasoning + last.reasoning;
      out = c.restorer->Feed(piece.visible);
      out += c.restorer->Feed(last.visible);
    } else {
      out = c.restorer->Feed(rest);
    }
    out += c.restorer->Flush();
    c.visible += out;
    return out;
  }
  // reasoning_content field: restored; returned to the client only for "pass".
  std::optional<std::string> ProcessReasoningField(std::string_view text) {
    if (!text.empty()) produced_reasoning = true;
    std::string restored = pseudonymizer.Restore(text);
    if (reasoning == policy::ReasoningAction::kPass) return restored;
    reasoning_text += restored;
    return std::nullopt;
  }
  std::string ResponseText() const {
    std::string all;
    for (const auto& [i, c] : choices) all += c.visible;
    return all;
  }
};

// ": <message>" from an upstream's OpenAI-shaped error body, or "" (bounded parse, 300 bytes).
// The text comes from the upstream, so it is scanned like an answer: with any finding the detail
// is withheld (it cannot be told apart from an echo of the request).
std::string UpstreamErrorDetail(std::string_view body, const policy::DetectorSet& detectors) {
  auto e = ParseBoundedJson(body, internal::kMaxUpstreamBodyBytes);
  if (!e.ok() || !e->is_object()) return "";
  auto err = e->find("error");
  if (err == e->end() || !err->is_object()) return "";
  auto m = err->find("message");
  if (m == err->end() || !m->is_string()) return "";
  std::string detail = m->get<std::string>().substr(0, 300);
  while (!detail.empty() && (static_cast<unsigned char>(detail.back()) & 0xC0) == 0x80)
    detail.pop_back();  // no cut UTF-8 sequence
  if (!detail.empty() && static_cast<unsigned char>(detail.back()) >= 0xC0) detail.pop_back();
  if (!detectors.Scan(detail).empty()) return " (its error message was withheld: sensitive data)";
  return ": " + detail;
}

// Addresses of `host` (numeric or a name from the policy), for the self-reference check.
std::vector<std::string> ResolveAddresses(const std::string& host) {
  std::vector<std::string> out;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return out;
  for (addrinfo* a = res; a; a = a->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* src =
        a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if (inet_ntop(a->ai_family, src, buf, sizeof buf)) out.emplace_back(buf);
  }
  freeaddrinfo(res);
  return out;
}

bool IsLoopbackAddress(const std::string& a) { return a == "::1" || a.rfind("127.", 0) == 0; }

// Whether a connection to `address` on the listening port reaches this gateway.
bool ReachesListener(const std::string& address, const std::string& listen_host) {
  if (listen_host == "0.0.0.0" || listen_host == "::" || listen_host.empty()) {
    if (IsLoopbackAddress(address)) return true;
    ifaddrs* ifs = nullptr;
    if (getifaddrs(&ifs) != 0) return true;  // cannot tell: fail closed
    bool local = false;
    for (ifaddrs* i = ifs; i && !local; i = i->ifa_next) {
      if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
        continue;
      char buf[INET6_ADDRSTRLEN] = {};
      const void* src =
          i->ifa_addr->sa_family == AF_INET
              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr)
              : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr);
      if (inet_ntop(i->ifa_addr->sa_family, src, buf, sizeof buf) && address == buf) local = true;
    }
    freeifaddrs(ifs);
    return local;
  }
  for (const std::string& l : ResolveAddresses(listen_host))
    if (l == address) return true;
  return false;
}

// Hop header: each gateway appends its instance id when it forwards, and refuses a request that
// already carries its own id (a loop through other gateways) or too many hops.
constexpr const char* kHopHeader = "X-Airlock-Hops";
constexpr std::size_t kMaxHops = 8;

// Applies the policy's rewrites to one scan unit in place and returns its rewritten text. A match
// that crosses a part boundary (data split across content parts) rewrites the unit as one text
// placed in its first part, the other parts left empty; otherwise each part is rewritten alone.
std::string RewriteUnit(policy::Pseudonymizer& pseudonymizer, internal::ScanUnit& unit,
                        const std::string& joined, const std::vector<policy::Match>& matches,
                        const std::map<policy::DataClass, policy::Action>& actions) {
  std::vector<std::size_t> starts;  // offset of each part in `joined`
  std::size_t offset = 0;
  for (const json* part : unit.parts) {
    starts.push_back(offset);
    offset += part->get_ref<const std::string&>().size();
  }
  bool crossing = false;
  for (const policy::Match& m : matches)
    for (std::size_t k = 1; k < starts.size(); ++k)
      if (m.begin < starts[k] && starts[k] < m.end) crossing = true;
  if (crossing) {
    std::string all = pseudonymizer.Apply(joined, matches, actions);
    *unit.parts[0] = all;
    for (std::size_t k = 1; k < unit.parts.size(); ++k) *unit.parts[k] = "";
    return all;
  }
  std::string all;
  std::size_t next = 0;  // first match not yet assigned to a part
  for (std::size_t k = 0; k < unit.parts.size(); ++k) {
    const std::string& text = unit.parts[k]->get_ref<const std::string&>();
    std::vector<policy::Match> local;
    while (next < matches.size() && matches[next].end <= starts[k] + text.size()) {
      policy::Match m = matches[next++];
      m.begin -= starts[k];
      m.end -= starts[k];
      local.push_back(m);
    }
    std::string rewritten = local.empty() ? text : pseudonymizer.Apply(text, local, actions);
    all += rewritten;
    *unit.parts[k] = std::move(rewritten);
  }
  return all;
}

bool ParseBearer(const httplib::Request& req, std::string* token) {
  std::string h = req.get_header_value("Authorization");
  if (h.size() > 7 && (h.rfind("Bearer ", 0) == 0 || h.rfind("bearer ", 0) == 0)) {
    *token = h.substr(7);
    return true;
  }
  return false;
}

}  // namespace

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr a4;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  return false;
}

struct Gateway::Impl {
  GatewayOptions options;
  std::unique_ptr<policy::DetectorSet> detectors;
  std::unique_ptr<KeyStore> keys;
  std::unique_ptr<audit::AuditLog> audit;
  std::map<std::string, std::shared_ptr<ClientPool>> pools;
  Metrics metrics;
  httplib::Server http;
  std::thread listener;
  int port = 0;
  std::atomic<bool> stopped{false};

  const policy::Policy& policy() const { return options.policy; }

  // Tokens reserved by requests in flight (exported as a metric; 0 when the gateway is idle).
  std::atomic<std::int64_t> reserved_tokens{0};
  // RequestStates alive (a streaming producer thread may hold one after the handler returned);
  // the destructor waits for them, since an unsettled state settles through this Impl.
  std::mutex live_mu;
  std::condition_variable live_cv;
  int live_requests = 0;

  void Finish(RequestState& st, int status, std::int64_t actual_tokens,
              const std::string& response_text) {
    if (st.settled) return;
    st.settled = true;
    if (st.reservation) {
      keys->Reconcile(*st.reservation, actual_tokens);
      reserved_tokens -= st.reservation->tokens;
    }
    audit::AuditRecord r;
    r.request_id = st.request_id;
    r.endpoint = st.endpoint;
    r.key_id = st.anonymous ? "anonymous" : st.key.id;
    r.model = st.model;
    r.upstream = st.upstream_name;
    r.jurisdiction = st.jurisdiction;
    r.status = status;
    r.data_classes = st.data_classes;
    if (st.produced_reasoning) r.data_classes.push_back("reasoning");
    r.actions = st.actions;
    r.actions.insert(r.actions.end(), st.response_actions.begin(), st.response_actions.end());
    if (st.response_blocked) r.actions.push_back("response block: " + st.response_block_reason);
    r.prompt_tokens = std::max<std::int64_t>(st.prompt_tokens, 0);
    r.completion_tokens = std::max<std::int64_t>(st.completion_tokens, 0);
    r.prompt_sha256 = st.prompt_sha256;
    r.response_sha256 = core::ToHex(core::Sha256Of(response_text));
    if (policy().audit.store_text) {
      r.prompt_text = st.forwarded_prompt;
      r.response_text = response_text;
    }
    if (policy().reasoning == policy::ReasoningAction::kLog && !st.reasoning_text.empty())
      r.reasoning_text = st.reasoning_text;
    if (auto s = audit->Append(r); !s.ok())
      std::fprintf(stderr, "airlock serve: audit append failed: %s\n", s.error().message().c_str());
    metrics.Tokens(r.prompt_tokens, r.completion_tokens);
    metrics.Observe(st.endpoint, status,
                    std::chrono::duration<double>(Clock::now() - st.start).count());
  }

  void Fail(RequestState& st, httplib::Response& res, int status, const std::string& message,
            const std::string& code, const std::string& param = "") {
    SetError(res, status, message, code, param);
    if (status == 403 || status == 429) st.actions.push_back(code + ": " + message);
    Finish(st, status, 0, "");
  }

  internal::AuthFailureLog auth_failures;
  const std::string instance_id = RandomId();

  // 508 for a request that went through this gateway already (or through too many gateways).
  bool RefuseLoop(const httplib::Request& req, httplib::Response& res) {
    std::string hops = req.get_header_value(kHopHeader);
    if (hops.empty()) return false;
    std::size_t count = 1 + static_cast<std::size_t>(std::count(hops.begin(), hops.end(), ','));
    bool own = false;
    std::size_t pos = 0;
    while (pos <= hops.size()) {
      std::size_t comma = hops.find(',', pos);
      std::string id =
          hops.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      while (!id.empty() && id.front() == ' ') id.erase(0, 1);
      if (id == instance_id) own = true;
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    if (!own && count < kMaxHops) return false;
    SetError(res, 508,
             own ? "Forwarding loop: this request already passed through this gateway."
                 : "Forwarding loop: the request passed through too many gateways.",
             "forwarding_loop");
    AuditAuthFailure(req, 508, "forwarding_loop");
    return true;
  }

  // Records a request refused before authentication (401, 413); never the presented key.
  void AuditAuthFailure(const httplib::Request& req, int status, const std::string& reason) {
    for (const auto& e :
         auth_failures.Record(req.remote_addr, req.path, status, reason, NowSeconds() / 60))
      AppendAuthFailure(e);
  }
  void AppendAuthFailure(const internal::AuthFailureLog::Entry& e) {
    audit::AuditRecord r;
    r.request_id = "auth-" + RandomId();
    r.endpoint = e.endpoint;
    r.key_id = "unauthenticated";
    r.status = e.status;
    r.response_sha256 = core::ToHex(core::Sha256Of(std::string_view()));
    r.actions.push_back(e.summary ? "auth_failed: " + std::to_string(e.count) + " more in minute " +
                                        std::to_string(e.minute) + " (Unix minutes)"
                                  : "auth_failed: " + e.reason);
    r.actions.push_back("client: " + e.address);
    if (auto s = audit->Append(r); !s.ok())
      std::fprintf(stderr, "airlock serve: audit append failed: %s\n", s.error().message().c_str());
  }

  // Authenticates; returns false after writing a 401 (audited, aggregated per client and minute).
  bool Authenticate(const httplib::Request& req, httplib::Response& res, RequestState& st) {
    std::string token;
    bool has_token = ParseBearer(req, &token);
    auto active = keys->HasActiveKeys();
    bool required = !active.ok() || *active;
    if (!required && !has_token) return true;
    if (!has_token) {
      SetError(res, 401, "You didn't provide an API key (Authorization: Bearer ...).",
               "invalid_api_key");
      AuditAuthFailure(req, 401, "missing_api_key");
      return false;
    }
    auto k = keys->Authenticate(token);
    if (!k) {
      SetError(res, 401, "Incorrect API key provided.", "invalid_api_key");
      AuditAuthFailure(req, 401, "invalid_api_key");
      return false;
    }
    st.key = std::move(*k);
    st.anonymous = false;
    return true;
  }

  void HandleModels(const httplib::Request& req, httplib::Response& res) {
    RequestState st;
    if (!Authenticate(req, res, st)) return;
    json data = json::array();
    auto allowed = [&](const std::string& m) {
      return st.key.models.empty() ||
             std::find(st.key.models.begin(), st.key.models.end(), m) != st.key.models.end();
    };
    for (const auto& m : policy().local_models)
      if (allowed(m.name))
        data.push_back(
            {{"id", m.name}, {"object", "model"}, {"created", 0}, {"owned_by", "local"}});
    for (const auto& u : policy().upstreams)
      for (const auto& m : u.models)
        if (allowed(m))
          data.push_back({{"id", m}, {"object", "model"}, {"created", 0}, {"owned_by", u.name}});
    res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
  }

  void HandleCompletion(const httplib::Request& req, httplib::Response& res, bool chat);
  void ProcessCompletion(const std::shared_ptr<RequestState>& st, const httplib::Request& req,
                         httplib::Response& res);
  void ForwardUpstream(std::shared_ptr<RequestState> st, json body, bool stream,
                       const policy::Upstream& upstream, httplib::Response& res);
  void ServeLocal(std::shared_ptr<RequestState> st, json body, bool stream,
                  std::shared_ptr<ModelBackend> backend, httplib::Response& res);
  // Post-processes a complete (non-streamed) response body in place.
  void TransformResponse(RequestState& st, json& body);
  // Re-writes one SSE data payload; returns the payload to send or "" to drop it.
  std::string TransformChunk(RequestState& st, const std::string& payload);
  void StreamToClient(std::shared_ptr<RequestState> st, std::shared_ptr<Channel> ch,
                      httplib::Response& res);
};

void Gateway::Impl::HandleCompletion(const httplib::Request& req, httplib::Response& res,
                                     bool chat) {
  metrics.in_flight++;
  struct Dec {
    std::atomic<int>& v;
    ~Dec() { v--; }
  } dec{metrics.in_flight};
  auto st = std::make_shared<RequestState>();
  st->request_id = "req-" + RandomId();
  st->endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
  st->chat = chat;
  st->start = Clock::now();
  st->reasoning = policy().reasoning;
  st->policy = &policy();
  st->detectors = detectors.get();
  res.set_header("X-Request-Id", st->request_id);
  if (RefuseLoop(req, res)) {
    metrics.Observe(st->endpoint, 508, 0);
    return;
  }
  st->incoming_hops = req.get_header_value(kHopHeader);
  if (!Authenticate(req, res, *st)) {
    metrics.Observe(st->endpoint, 401, 0);
    return;
  }
  // From here on the request is settled exactly once, whatever happens: a request that was
  // handed on is charged its whole reservation (the work it caused is unknown), others nothing.
  {
    std::lock_guard<std::mutex> lock(live_mu);
    ++live_requests;
  }
  st->on_release = [this] {
    std::lock_guard<std::mutex> lock(live_mu);
    --live_requests;
    live_cv.notify_all();
  };
  st->settle_unsettled = [this](RequestState& s) {
    Finish(s, 500, s.forwarded && s.reservation ? s.reservation->tokens : 0, s.ResponseText());
  };
  try {
    ProcessCompletion(st, req, res);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "airlock serve: %s: internal error: %s\n", st->request_id.c_str(),
                 e.what());
    if (!st->settled) Fail(*st, res, 500, "Internal error.", "internal_error");
  }
}

void Gateway::Impl::ProcessCompletion(const std::shared_ptr<RequestState>& st,
                                      const httplib::Request& req, httplib::Response& res) {
  const bool chat = st->chat;
  auto parsed = ParseBoundedJson(req.body, policy().server.max_body_bytes);
  if (!parsed.ok() && parsed.error().code() == StatusCode::kLimitExceeded)
    return Fail(*st, res, 400,
                "The JSON body of your request is nested too deeply or too large (" +
                    parsed.error().message() + ").",
                "json_too_deep");
  if (!parsed.ok() || !parsed->is_object())
    return Fail(*st, res, 400,
                "We could not parse the JSON body of your request. The body must be a JSON object.",
                "invalid_json");
  json body = std::move(*parsed);
  internal::CompletionRequest request;
  if (auto model = body.find("model"); model != body.end() && model->is_string())
    st->model = model->get<std::string>();  // recorded even when another field is invalid
  if (auto invalid = internal::ParseCompletionRequest(body, chat, &request))
    return Fail(*st, res, 400, invalid->message, invalid->code, invalid->param);
  if (!st->key.models.empty() &&
      std::find(st->key.models.begin(), st->key.models.end(), st->model) == st->key.models.end())
    return Fail(*st, res, 403, "This API key may not use model '" + st->model + "'.",
                "model_not_allowed");
  const policy::LocalModel* local = policy().FindLocalModel(st->model);
  const policy::Upstream* upstream = local ? nullptr : policy().FindUpstreamForModel(st->model);
  if (!local && !upstream)
    return Fail(*st, res, 404, "The model '" + st->model + "' does not exist.", "model_not_found");
  st->upstream_name = local ? "local" : upstream->name;
  st->jurisdiction = local ? "local" : upstream->jurisdiction;
  const bool stream = request.stream;

  // Every forwarded string of the request (rewritten in place after the policy decision).
  internal::ScanTargets targets;
  if (auto unscannable = internal::CollectScanUnits(body, chat, &targets))
    return Fail(*st, res, 400, unscannable->message, unscannable->code);
  std::vector<internal::ScanUnit>& units = targets.units;
  // An object key cannot be rewritten safely (renaming it may collide with another key or change
  // what the field means): one with any finding is refused, never forwarded. The data class goes
  // into the audit record, the key itself does not.
  std::size_t key_bytes = 0;
  for (const std::string& key : targets.keys) {
    key_bytes += key.size();
    std::vector<policy::Match> key_matches = detectors->Scan(key);
    if (key_matches.empty()) continue;
    std::set<std::string> classes;
    for (const auto& m : key_matches) classes.emplace(policy::DataClassName(m.data_class));
    for (const auto& c : classes) st->data_classes.push_back(c);
    st->actions.push_back("refused: sensitive data in a JSON object key");
    return Fail(*st, res, 400,
                "The request has sensitive data (" + *classes.begin() +
                    ") in a JSON object key, which the gateway cannot rewrite; move it into a "
                    "value.",
                "sensitive_data_in_key");
  }
  // Typed numbers are forwarded as numbers: one whose digits hold a finding is refused.
  for (const auto& [field, text] : targets.numbers) {
    std::vector<policy::Match> number_matches = detectors->Scan(text);
    if (number_matches.empty()) continue;
    std::string cls(policy::DataClassName(number_matches.front().data_class));
    st->data_classes.push_back(cls);
    st->actions.push_back("refused: sensitive data in numeric field " + field);
    return Fail(*st, res, 400,
                "The value of '" + field + "' looks like sensitive data (" + cls +
                    "); the gateway cannot rewrite a number.",
                "sensitive_data_in_number", field);
  }
  const std::size_t message_count = request.message_count;

  // Detect, decide, transform.
  core::Sha256 prompt_hash;
  std::vector<std::string> joined(units.size());
  std::vector<std::vector<policy::Match>> matches(units.size());
  std::set<policy::DataClass> found;
  std::size_t prompt_bytes = 0;
  for (std::size_t i = 0; i < units.size(); ++i) {
    joined[i] = units[i].Joined();
    prompt_hash.Update(joined[i]);
    prompt_hash.Update(std::string_view("\n", 1));
    matches[i] = detectors->Scan(joined[i]);
    for (const auto& m : matches[i]) found.insert(m.data_class);
  }
  st->prompt_sha256 = core::ToHex(prompt_hash.Finish());
  for (auto c : found) st->data_classes.emplace_back(policy::DataClassName(c));
  policy::Target target;
  target.local = local != nullptr;
  target.upstream = upstream;
  policy::Verdict verdict =
      policy::Decide(policy(), std::vector<policy::DataClass>(found.begin(), found.end()), target);
  if (verdict.blocked) {
    for (auto c : found) metrics.PolicyAction("block", std::string(policy::DataClassName(c)));
    st->actions.push_back("block: " + verdict.reason);
    SetError(res, 403, "Request blocked by policy: " + verdict.reason, "policy_violation");
    return Finish(*st, 403, 0, "");
  }
  for (const auto& [c, a] : verdict.actions) {
    std::string name(policy::DataClassName(c));
    st->actions.push_back(name + ":" + std::string(policy::ActionName(a)));
    metrics.PolicyAction(std::string(policy::ActionName(a)), name);
  }
  for (std::size_t i = 0; i < units.size(); ++i) {
    std::string rewritten =
        RewriteUnit(st->pseudonymizer, units[i], joined[i], matches[i], verdict.actions);
    prompt_bytes += rewritten.size();
    if (policy().audit.store_text) st->forwarded_prompt += rewritten + "\n";
  }

  // Admission: reserve the worst case. Prompt bytes bound BPE tokens; the completion is bounded by
  // the larger of max_tokens / max_completion_tokens for each of the n choices, and that bound is
  // written back into the request so the upstream or local model cannot produce more.
  const std::int64_t cap = request.CompletionCap(policy().server.default_max_tokens);
  st->completion_cap = cap;
  // best_of candidates are generated (and billed) server-side like n choices; both are 1..128.
  const std::int64_t choices = std::max(request.n, request.best_of);
  st->completion_reserved = cap * choices;
  if (request.max_completion_tokens) body["max_completion_tokens"] = cap;
  if (request.max_tokens || !request.max_completion_tokens) body["max_tokens"] = cap;
  // Keys are forwarded (and billed) too.
  st->prompt_estimate =
      static_cast<std::int64_t>(prompt_bytes + key_bytes + 8 * message_count + 16);
  if (!st->anonymous) {
    auto r = keys->Reserve(st->key, st->prompt_estimate + st->completion_reserved);
    if (!r) {
      bool budget = r.error().message().find("budget") != std::string::npos;
      return Fail(*st, res, 429, r.error().message(),
                  budget ? "insufficient_quota" : "rate_limit_exceeded");
    }
    st->reservation = *r;
    reserved_tokens += r->tokens;
  }
  if (local) {
    auto it = options.local_backends.find(local->name);
    if (it == options.local_backends.end())
      return Fail(*st, res, 503,
                  "Local model '" + local->name +
                      "' is not loaded: local serving needs the inference engine.",
                  "model_not_loaded");
    return ServeLocal(st, std::move(body), stream, it->second, res);
  }
  ForwardUpstream(st, std::move(body), stream, *upstream, res);
}

// Log probabilities repeat the answer token by token (strings and raw bytes): a redaction of the
// content cannot follow them there, so while response rules apply they are withheld.
void WithholdLogprobs(RequestState& st, json& choice) {
  if (!st.detectors) return;
  auto lp = choice.find("logprobs");
  if (lp == choice.end() || lp->is_null()) return;
  *lp = nullptr;
  st.response_actions.insert("response: logprobs withheld");
}

void Gateway::Impl::TransformResponse(RequestState& st, json& body) {
  auto choices = body.find("choices");
  if (choices != body.end() && choices->is_array()) {
    for (json& c : *choices) {
      if (!c.is_object()) continue;
      WithholdLogprobs(st, c);
      int index = static_cast<int>(IntegerField(c, "index", 0, internal::kMaxChoices));
      json* text = nullptr;
      if (st.chat) {
        auto m = c.find("message");
        if (m != c.end() && m->is_object()) {
          st.ScanOutputFields(*m);
          if (auto t = m->find("content"); t != m->end() && t->is_string()) text = &*t;
          if (auto r = m->find("reasoning_content"); r != m->end() && r->is_string()) {
            auto keep = st.ProcessReasoningField(r->get<std::string>());
            if (keep)
              *r = *keep;
            else
              m->erase("reasoning_content");
          }
        }
      } else if (auto t = c.find("text"); t != c.end() && t->is_string()) {
        text = &*t;
      }
      std::string out = text ? st.ProcessText(index, text->get<std::string>(), true) : "";
      out += st.FinishChoice(index);
      if (text) *text = out;
    }
  }
  st.ScanEnvelope(body, st.chat);
  auto usage = body.find("usage");
  if (usage != body.end() && usage->is_object()) {
    st.TakeUsage(*usage);
    st.SettleCounts(static_cast<std::int64_t>(st.ResponseText().size() / 4 + 1));
  } else {
    st.prompt_tokens = st.prompt_estimate;
    st.completion_tokens = static_cast<std::int64_t>(st.ResponseText().size() / 4 + 1);
    body["usage"] = {{"prompt_tokens", st.prompt_tokens},
                     {"completion_tokens", st.completion_tokens},
                     {"total_tokens", st.prompt_tokens + st.completion_tokens}};
  }
}

std::string Gateway::Impl::TransformChunk(RequestState& st, const std::string& payload) {
  auto parsed = ParseBoundedJson(payload, internal::kMaxSseEventBytes);
  if (!parsed.ok() && parsed.error().code() == StatusCode::kLimitExceeded) {
    st.stream_broken = true;  // hostile upstream: end the stream with an error
    return "";
  }
  if (!parsed.ok() || !parsed->is_object()) return "";  // drop what we cannot vet
  json& chunk = *parsed;
  if (auto usage = chunk.find("usage"); usage != chunk.end() && usage->is_object())
    st.TakeUsage(*usage);
  auto choices = chunk.find("choices");
  if (choices != chunk.end() && choices->is_array()) {
    for (json& c : *choices) {
      if (!c.is_object()) continue;
      WithholdLogprobs(st, c);
      int index = static_cast<int>(IntegerField(c, "index", 0, internal::kMaxChoices));
      if (st.ChoiceFinished(index)) {
        // A choice that finished has said everything: later deltas (tool-call arguments,
        // reasoning, content) would start a fresh hold-back, so they are dropped like content.
        if (auto d = c.find("delta"); d != c.end()) *d = json::object();
        c.erase("finish_reason");
        continue;
      }
      bool finishing = c.contains("finish_reason") && !c["finish_reason"].is_null();
      json* text = nullptr;
      if (st.chat) {
        auto d = c.find("delta");
        if (d != c.end() && d->is_object()) {
          // reasoning_content and tool call arguments get the same hold-back as content (per
          // choice and tool call index), so a match split across chunks is seen whole; they are
          // taken out while the rest of the delta is scanned piece by piece.
          std::string reasoning_in;
          bool has_reasoning = false;
          if (auto r = d->find("reasoning_content"); r != d->end() && r->is_string()) {
            reasoning_in = r->get<std::string>();
            has_reasoning = true;
            d->erase(r);
          }
          // The same for the other free-text fields providers stream in pieces: `refusal`, the
          // `reasoning` some providers use instead of reasoning_content, and the legacy
          // `function_call.arguments`.
          std::vector<std::pair<std::string, std::string>> plain_in;  // {hold-back key, text}
          for (const char* name : {"refusal", "reasoning"})
            if (auto f = d->find(name); f != d->end() && f->is_string()) {
              plain_in.emplace_back(std::string("field:") + name, f->get<std::string>());
              d->erase(f);
            }
          if (auto fc = d->find("function_call"); fc != d->end() && fc->is_object())
            if (auto a = fc->find("arguments"); a != fc->end() && a->is_string()) {
              plain_in.emplace_back("fcall", a->get<std::string>());
              *a = "";
            }
          std::vector<std::pair<std::int64_t, std::string>> args_in;
          if (auto tcs = d->find("tool_calls"); tcs != d->end() && tcs->is_array())
            for (json& tc : *tcs) {
              if (!tc.is_object()) continue;
              auto f = tc.find("function");
              if (f == tc.end() || !f->is_object()) continue;
              auto a = f->find("arguments");
              if (a == f->end() || !a->is_string()) continue;
              args_in.emplace_back(IntegerField(tc, "index", 0, internal::kMaxChoices),
                                   a->get<std::string>());
              *a = "";
            }
          st.ScanOutputFields(*d);
          if (!args_in.empty() && !st.response_blocked) {
            std::size_t k = 0;
            for (json& tc : (*d)["tool_calls"]) {
              if (!tc.is_object() || !tc.contains("function") || !tc["function"].is_object() ||
                  !tc["function"].contains("arguments") || !tc["function"]["arguments"].is_string())
                continue;
              if (k >= args_in.size()) break;
              const auto& [tindex, raw] = args_in[k++];
              tc["function"]["arguments"] =
                  st.HoldBack(index, "tool:" + std::to_string(tindex), raw);
            }
          }
          if (has_reasoning && !st.response_blocked) {
            auto keep = st.ProcessReasoningField(st.HoldBack(index, "reasoning", reasoning_in));
            if (keep) (*d)["reasoning_content"] = *keep;
          }
          for (const auto& [key, raw] : plain_in) {
            if (st.response_blocked) break;
            std::string released = st.HoldBack(index, key, raw);
            st.PutHeldText(*d, key, released);
          }
          if (finishing && !st.response_blocked) st.FlushHeld(index, *d);
          if (auto t = d->find("content"); t != d->end() && t->is_string()) text = &*t;
          if (!text && finishing) {
            (*d)["content"] = "";
            text = &(*d)["content"];
          }
        }
      } else if (auto t = c.find("text"); t != c.end() && t->is_string()) {
        text = &*t;
      }
      if (text) {
        st.streamed_pieces++;
        std::string out = st.ProcessText(index, text->get<std::string>());
        if (finishing) out += st.FinishChoice(index);
        *text = out;
      }
    }
  }
  st.ScanEnvelope(chunk, st.chat);
  if (st.response_blocked) return "";
  return chunk.dump(-1, ' ', false, json::error_handler_t::replace);
}

void Gateway::Impl::StreamToClient(std::shared_ptr<RequestState> st, std::shared_ptr<Channel> ch,
                                   httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  auto buffer = std::make_shared<std::string>();
  auto done = std::make_shared<bool>(false);
  // A stream has an overall deadline ([server] request_timeout_s), and while nothing is sent (an
  // upstream that is silent or sends only comments) the client gets an SSE comment about once a
  // second, so that a client that went away is noticed (the write fails) without waiting for the
  // upstream: the stream is then cancelled and settled as 499.
  const Clock::time_point deadline =
      st->start + std::chrono::seconds(policy().server.request_timeout_s);
  auto last_write = std::make_shared<Clock::time_point>(Clock::now());
  auto provide = [this, st, ch, buffer, done, deadline, last_write](std::size_t,
                                                                    httplib::DataSink& sink) {
    auto keep_alive = [&]() {
      if (Clock::now() - *last_write < std::chrono::seconds(1)) return true;
      static constexpr char kComment[] = ": keep-alive\n\n";
      if (!sink.write(kComment, sizeof kComment - 1)) {
        ch->Cancel();
        return false;
      }
      *last_write = Clock::now();
      return true;
    };
    if (Clock::now() >= deadline) {
      ch->Cancel();
      std::int64_t charged = st->reservation ? st->reservation->tokens : 0;
      st->actions.push_back("stream_timeout: stream cut off after " +
                            std::to_string(policy().server.request_timeout_s) + " s");
      Finish(*st, 504, charged, st->ResponseText());
      json err = json::parse(
          ErrorBody(504, "The stream exceeded the gateway's time limit.", "stream_timeout"));
      std::string tail = "data: " + DumpJson(err) + "\n\ndata: [DONE]\n\n";
      *done = true;
      if (!sink.write(tail.data(), tail.size())) return false;
      sink.done();
      return true;
    }
    std::string incoming;
    Channel::Got got = ch->TakeFor(&incoming, std::chrono::milliseconds(500));
    if (got == Channel::Got::kIdle) return keep_alive();
    bool more = got == Channel::Got::kData;
    if (more) {
      bool wrote = false;
      for (char c : incoming)
        if (c != '\r') buffer->push_back(c);
      std::size_t end;
      while ((end = buffer->find("\n\n")) != std::string::npos) {
        std::string event = buffer->substr(0, end);
        buffer->erase(0, end + 2);
        std::string payload;
        std::size_t pos = 0;
        while (pos <= event.size()) {
          std::size_t nl = event.find('\n', pos);
          std::string line =
              event.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
          if (line.rfind("data:", 0) == 0) {
            std::string v = line.substr(5);
            if (!v.empty() && v[0] == ' ') v.erase(0, 1);
            if (!payload.empty()) payload += "\n";
            payload += v;
          }
          if (nl == std::string::npos) break;
          pos = nl + 1;
        }
        if (payload.empty() || payload == "[DONE]") continue;
        std::string out = TransformChunk(*st, payload);
        if (st->stream_broken || st->response_blocked) break;
        if (out.empty()) continue;
        std::string frame = "data: " + out + "\n\n";
        if (!sink.write(frame.data(), frame.size())) {
          ch->Cancel();
          return false;
        }
        wrote = true;
        *last_write = Clock::now();
      }
      // An event that never ends (or one past the limits) stops the upstream.
      if (st->response_blocked) {
        ch->Cancel();
        buffer->clear();
      } else if (st->stream_broken || buffer->size() > internal::kMaxSseEventBytes) {
        st->stream_broken = true;
        ch->Cancel();
        buffer->clear();
      }
      return wrote || keep_alive();
    }
    // Producer finished: flush held-back text, record, then end the stream.
    std::string tail;
    for (int index : st->HeldIndices()) {
      json delta = json::object();
      st->FlushHeld(index, delta);
      if (delta.empty()) continue;
      json chunk = {{"id", st->request_id},
                    {"object", "chat.completion.chunk"},
                    {"created", NowSeconds()},
                    {"model", st->model}};
      chunk["choices"] =
          json::array({json{{"index", index}, {"delta", delta}, {"finish_reason", nullptr}}});
      tail += "data: " + DumpJson(chunk) + "\n\n";
    }
    for (auto& [index, c] : st->choices) {
      std::string rest = st->FinishChoice(index);
      if (rest.empty()) continue;
      json chunk = {{"id", st->request_id},
                    {"object", st->chat ? "chat.completion.chunk" : "text_completion"},
                    {"created", NowSeconds()},
                    {"model", st->model}};
      chunk["choices"] = json::array(
          {st->chat
               ? json{{"index", index}, {"delta", {{"content", rest}}}, {"finish_reason", nullptr}}
               : json{{"index", index}, {"text", rest}, {"finish_reason", nullptr}}});
      tail += "data: " + chunk.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
    }
    st->SettleCounts(st->streamed_pieces);
    bool ok = ch->error == httplib::Error::Success && !st->stream_broken;
    if (st->response_unredactable) {
      Finish(*st, 502, st->prompt_tokens + st->completion_tokens, st->ResponseText());
      json err = json::parse(ErrorBody(
          502, "Upstream answered with " + st->response_block_reason + ".", "upstream_error"));
      tail += "data: " + DumpJson(err) + "\n\n";
    } else if (st->response_blocked) {
      // The answer so far was sent; it ends with an error the client can see.
      Finish(*st, 403, st->prompt_tokens + st->completion_tokens, st->ResponseText());
      json err = json::parse(ErrorBody(
          403, "Response blocked by policy: " + st->response_block_reason, "policy_violation"));
      tail += "data: " + DumpJson(err) + "\n\n";
    } else {
      Finish(*st, ok ? 200 : 502, st->prompt_tokens + st->completion_tokens, st->ResponseText());
    }
    if (!ok && !st->response_blocked) {
      json err = json::parse(ErrorBody(502, "Upstream stream ended abnormally.", "upstream_error"));
      tail += "data: " + DumpJson(err) + "\n\n";
    }
    tail += "data: [DONE]\n\n";
    *done = true;
    if (!sink.write(tail.data(), tail.size())) return false;
    sink.done();
    return true;
  };
  res.set_chunked_content_provider(
      "text/event-stream",
      [provide, ch](std::size_t offset, httplib::DataSink& sink) {
        try {
          return provide(offset, sink);
        } catch (const std::exception& e) {
          // Ends the connection; the releaser below settles the request.
          std::fprintf(stderr, "airlock serve: stream error: %s\n", e.what());
          ch->Cancel();
          return false;
        }
      },
      [this, st, ch, done](bool) {
        ch->Cancel();
        if (!*done) {
          // Client went away mid-stream: charge the whole reservation, record it.
          std::int64_t charged = st->reservation ? st->reservation->tokens : 0;
          Finish(*st, 499, charged, st->ResponseText());
        }
      });
}

void Gateway::Impl::ForwardUpstream(std::shared_ptr<RequestState> st, json body, bool stream,
                                    const policy::Upstream& upstream, httplib::Response& res) {
  std::shared_ptr<ClientPool> pool = pools.at(upstream.name);
  st->forwarded = true;
  const UpstreamEndpoint& ep = pool->endpoint();
  std::string path = ep.path_prefix + (st->chat ? "/chat/completions" : "/completions");
  httplib::Headers headers;
  if (!ep.api_key.empty()) headers.emplace("Authorization", "Bearer " + ep.api_key);
  headers.emplace(kHopHeader,
                  st->incoming_hops.empty() ? instance_id : st->incoming_hops + "," + instance_id);
  if (stream) body["stream_options"] = {{"include_usage", true}};
  std::string payload = DumpJson(body);
  auto started = Clock::now();
  auto error_for = [&](httplib::Error e) {
    double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    bool timeout = e == httplib::Error::ConnectionTimeout ||
                   (e == httplib::Error::Read && elapsed >= upstream.timeout_s - 0.5);
    int status = timeout ? 504 : 502;
    Fail(*st, res, status,
         "Upstream '" + upstream.name + "' " + (timeout ? "timed out" : "failed") + " (" +
             httplib::to_string(e) + ").",
         timeout ? "upstream_timeout" : "upstream_error");
  };

  if (!stream) {
    auto client = pool->Acquire();
    httplib::Request r;
    r.method = "POST";
    r.path = path;
    r.headers = headers;
    r.body = payload;
    r.set_header("Content-Type", "application/json");
    // The body is collected here, not by httplib, so that its size is bounded.
    std::string received;
    bool too_large = false;
    // An upstream trickling its answer (each read within the read timeout) is cut off at the
    // request's overall deadline.
    const Clock::time_point deadline =
        st->start + std::chrono::seconds(policy().server.request_timeout_s);
    bool past_deadline = false;
    r.content_receiver = [&](const char* d, std::size_t n, std::uint64_t, std::uint64_t) {
      if (Clock::now() >= deadline) {
        past_deadline = true;
        return false;
      }
      if (received.size() + n > internal::kMaxUpstreamBodyBytes) {
        too_large = true;
        return false;
      }
      received.append(d, n);
      return true;
    };
    httplib::Response resp;
    httplib::Error err = httplib::Error::Success;
    bool ok = client->send(r, resp, err);
    if (past_deadline) {
      SetError(res, 504,
               "Upstream '" + upstream.name + "' did not answer within the gateway's time limit.",
               "upstream_timeout");
      st->actions.push_back("request_timeout: cut off after " +
                            std::to_string(policy().server.request_timeout_s) + " s");
      return Finish(*st, 504, st->reservation ? st->reservation->tokens : 0, "");
    }
    if (too_large)
      return Fail(*st, res, 502, "Upstream '" + upstream.name + "' returned a response too large.",
                  "upstream_error");
    if (!ok) return error_for(err);
    pool->Release(std::move(client));
    if (received.empty()) received = std::move(resp.body);
    if (resp.status != 200)
      return Fail(*st, res, 502,
                  "Upstream '" + upstream.name + "' returned HTTP " + std::to_string(resp.status) +
                      UpstreamErrorDetail(received, *detectors),
                  "upstream_error");
    auto out = ParseBoundedJson(received, internal::kMaxUpstreamBodyBytes);
    if (!out.ok() || !out->is_object())
      return Fail(*st, res, 502,
                  "Upstream '" + upstream.name + "' returned invalid JSON" +
                      (out.ok() ? std::string(".") : " (" + out.error().message() + ")."),
                  "upstream_error");
    TransformResponse(*st, *out);
    if (st->response_unredactable)
      return Fail(
          *st, res, 502,
          "Upstream '" + upstream.name + "' answered with " + st->response_block_reason + ".",
          "upstream_error");
    if (st->response_blocked)
      return Fail(*st, res, 403, "Response blocked by policy: " + st->response_block_reason,
                  "policy_violation");
    std::string text = st->ResponseText();
    Finish(*st, 200, st->prompt_tokens + st->completion_tokens, text);
    res.status = 200;
    res.set_content(DumpJson(*out), "application/json");
    return;
  }

  auto ch = std::make_shared<Channel>();
  std::thread([pool, ch, path, headers, payload]() {
    auto client = pool->Acquire();
    httplib::Request r;
    r.method = "POST";
    r.path = path;
    r.headers = headers;
    r.headers.emplace("Accept", "text/event-stream");
    r.body = payload;
    r.set_header("Content-Type", "application/json");
    r.response_handler = [ch](const httplib::Response& resp) {
      ch->SetStatus(resp.status);
      return !ch->cancel.load();
    };
    r.content_receiver = [ch](const char* d, std::size_t n, std::uint64_t, std::uint64_t) {
      return ch->Push(d, n);
    };
    httplib::Response resp;
    httplib::Error err = httplib::Error::Success;
    bool ok = client->send(r, resp, err);
    if (ok) pool->Release(std::move(client));
    if (!resp.body.empty()) ch->Push(resp.body.data(), resp.body.size());
    ch->Finish(ok ? httplib::Error::Success : err);
  }).detach();
  ch->WaitHeaders();
  int status;
  {
    std::lock_guard<std::mutex> lock(ch->mu);
    status = ch->status;
  }
  if (status == 0) {  // no response at all
    httplib::Error e;
    {
      std::lock_guard<std::mutex> lock(ch->mu);
      e = ch->error;
    }
    return error_for(e);
  }
  if (status != 200) {
    std::string all, piece;
    while (ch->Take(&piece)) {
      if (all.size() < internal::kMaxUpstreamBodyBytes) all += piece;
      if (all.size() >= internal::kMaxUpstreamBodyBytes) ch->Cancel();
    }
    return Fail(*st, res, 502,
                "Upstream '" + upstream.name + "' returned HTTP " + std::to_string(status) +
                    UpstreamErrorDetail(all, *detectors),
                "upstream_error");
  }
  StreamToClient(st, ch, res);
}

void Gateway::Impl::ServeLocal(std::shared_ptr<RequestState> st, json body, bool stream,
                               std::shared_ptr<ModelBackend> backend, httplib::Response& res) {
  st->forwarded = true;
  GenerateRequest g;
  g.chat = st->chat;
  if (st->chat) {
    for (const json& m : body["messages"]) {
      ChatMessage cm;
      cm.role = m.at("role").get<std::string>();  // checked by ParseCompletionRequest
      if (auto c = m.find("content"); c != m.end()) {
        if (c->is_string()) {
          cm.content = c->get<std::string>();
        } else if (c->is_array()) {
          for (const json& part : *c) {
            if (part.is_string())
              cm.content += part.get<std::string>();
            else if (part.is_object() && part.contains("text") && part["text"].is_string())
              cm.content += part["text"].get<std::string>();
          }
        }
      }
      g.messages.push_back(std::move(cm));
    }
  } else {
    const json& p = body["prompt"];
    g.prompt = p.is_string() ? p.get<std::string>() : (p.empty() ? "" : p[0].get<std::string>());
  }
  g.max_tokens = static_cast<int>(st->completion_cap);
  if (auto t = body.find("temperature"); t != body.end() && t->is_number()) g.temperature = *t;
  if (auto t = body.find("top_p"); t != body.end() && t->is_number()) g.top_p = *t;
  if (auto s = body.find("seed"); s != body.end() && s->is_number_unsigned())
    g.seed = s->get<std::uint64_t>();
  if (auto s = body.find("stop"); s != body.end()) {
    if (s->is_string())
      g.stop.push_back(*s);
    else if (s->is_array())
      for (const json& e : *s)
        if (e.is_string()) g.stop.push_back(e);
  }
  std::string id = (st->chat ? "chatcmpl-" : "cmpl-") + RandomId();
  std::int64_t created = NowSeconds();
  std::string object = st->chat ? "chat.completion.chunk" : "text_completion";
  auto make_chunk = [st, id, created, object](const std::string& text, json finish) {
    json c = {{"id", id}, {"object", object}, {"created", created}, {"model", st->model}};
    c["choices"] = json::array(
        {st->chat ? json{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", finish}}
                  : json{{"index", 0}, {"text", text}, {"finish_reason", finish}}});
    return c;
  };
  if (!stream) {
    std::string text;
    std::atomic<bool> cancel{false};
    auto r = backend->Generate(
        g,
        [&](std::string_view piece) {
          text += piece;
          return true;
        },
        cancel);
    if (!r) return Fail(*st, res, 500, "Local model failed: " + r.error().message(), "model_error");
    json out = {{"id", id},
                {"object", st->chat ? "chat.completion" : "text_completion"},
                {"created", created},
                {"model", st->model}};
    out["choices"] = json::array(
        {st->chat ? json{{"index", 0},
                         {"message", {{"role", "assistant"}, {"content", text}}},
                         {"finish_reason", r->finish_reason}}
                  : json{{"index", 0}, {"text", text}, {"finish_reason", r->finish_reason}}});
    out["usage"] = {{"prompt_tokens", r->prompt_tokens},
                    {"completion_tokens", r->completion_tokens},
                    {"total_tokens", r->prompt_tokens + r->completion_tokens}};
    TransformResponse(*st, out);
    if (st->response_blocked)
      return Fail(*st, res, 403, "Response blocked by policy: " + st->response_block_reason,
                  "policy_violation");
    Finish(*st, 200, st->prompt_tokens + st->completion_tokens, st->ResponseText());
    res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    return;
  }
  auto ch = std::make_shared<Channel>();
  ch->SetStatus(200);
  std::thread([backend, ch, g, make_chunk, st]() {
    auto emit = [&](const json& j) {
      std::string frame =
          "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
      return ch->Push(frame.data(), frame.size());
    };
    if (st->chat) {
      json first = make_chunk("", nullptr);
      first["choices"][0]["delta"] = {{"role", "assistant"}, {"content", ""}};
      emit(first);
    }
    auto r = backend->Generate(
        g, [&](std::string_view piece) { return emit(make_chunk(std::string(piece), nullptr)); },
        ch->cancel);
    if (r) {
      emit(make_chunk("", r->finish_reason));
      json usage = make_chunk("", nullptr);
      usage["choices"] = json::array();
      usage["usage"] = {{"prompt_tokens", r->prompt_tokens},
                        {"completion_tokens", r->completion_tokens},
                        {"total_tokens", r->prompt_tokens + r->completion_tokens}};
      emit(usage);
    }
    ch->Finish(r ? httplib::Error::Success : httplib::Error::Unknown);
  }).detach();
  StreamToClient(st, ch, res);
}

Gateway::Gateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Gateway::~Gateway() {
  Stop();
  Wait();
  // Streams being torn down cancel their producers; wait (bounded) until their states settled.
  std::unique_lock<std::mutex> lock(impl_->live_mu);
  impl_->live_cv.wait_for(lock, std::chrono::seconds(30),
                          [this] { return impl_->live_requests == 0; });
  for (const auto& e : impl_->auth_failures.Flush()) impl_->AppendAuthFailure(e);
}

Result<std::unique_ptr<Gateway>> Gateway::Create(GatewayOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  const policy::Policy& p = impl->options.policy;
  policy::DetectorOptions dopts;
  dopts.enabled = p.detectors;
  AIRLOCK_ASSIGN_OR_RETURN(impl->detectors, policy::DetectorSet::Create(dopts));
  AIRLOCK_ASSIGN_OR_RETURN(impl->keys, KeyStore::Open(p.server.keys_db));
  if (!IsLoopbackHost(impl->options.host)) {
    AIRLOCK_ASSIGN_OR_RETURN(bool any, impl->keys->HasActiveKeys());
    if (!any)
      return PermissionDenied("server: refusing to listen on non-loopback address '" +
                              impl->options.host +
                              "' without API keys; create one with "
                              "`airlock keys create` (keys db " +
                              p.server.keys_db + ")");
  }
  audit::OpenOptions aopts;
  // Fail closed: the log always has a signing key; the first start creates one.
  aopts.signing_key_pem_path =
      p.audit.signing_key.empty() ? p.audit.path + ".key" : p.audit.signing_key;
  aopts.create_signing_key = true;
  aopts.origin = p.audit.origin;
  aopts.anchors.files = p.audit.anchor_files;
  aopts.anchors.syslog = p.audit.syslog;
  aopts.anchors.witnesses = p.audit.witnesses;
  aopts.anchors.witness_keys = p.audit.witness_keys;
  aopts.checkpoint_every = p.audit.checkpoint_every;
  aopts.fsync = p.audit.fsync;
  AIRLOCK_ASSIGN_OR_RETURN(impl->audit, audit::AuditLog::Open(p.audit.path, aopts));
  for (const policy::Upstream& u : p.upstreams) {
    AIRLOCK_ASSIGN_OR_RETURN(UpstreamEndpoint e, EndpointFor(u));
    impl->pools[u.name] = std::make_shared<ClientPool>(std::move(e));
  }

  Impl* s = impl.get();
  httplib::Server& http = impl->http;
  int threads = p.server.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_payload_max_length(p.server.max_body_bytes);
  http.set_read_timeout(p.server.read_timeout_s, 0);
  http.set_write_timeout(p.server.write_timeout_s, 0);
  http.set_keep_alive_max_count(1000);
  http.set_tcp_nodelay(true);
  // httplib's default sets SO_REUSEPORT, which lets a second process bind the same port and take
  // half the connections past every key, budget and audit check. SO_REUSEADDR alone (restart
  // while old connections linger in TIME_WAIT) still refuses a second listener.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.set_keep_alive_timeout(2);  // idle keep-alive connections hold a worker thread
  // Runs after the headers are read and before httplib reads the body (cpp-httplib reads the body
  // only after routing starts). httplib decompresses gzip/brotli bodies itself and applies the
  // payload limit to the compressed length only, and reads a chunked body (or a POST body without
  // a length) whole: an unauthenticated client could make it expand or buffer any amount. A body
  // must therefore come with a Content-Length (which the payload limit bounds) and no content
  // coding. The connection is closed after the refusal, since its body was never read.
  http.set_pre_routing_handler([s](const httplib::Request& req, httplib::Response& res) {
    bool coded = false;
    for (std::size_t i = 0; i < req.get_header_value_count("Content-Encoding"); ++i) {
      std::string v = req.get_header_value("Content-Encoding", i);
      std::string lower;
      for (char c : v)
        if (c != ' ' && c != '\t')
          lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!lower.empty() && lower != "identity") coded = true;
    }
    bool has_body_method = req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
    bool unbounded = req.has_header("Transfer-Encoding") ||
                     (has_body_method && !req.has_header("Content-Length"));
    if (!coded && !unbounded) return httplib::Server::HandlerResponse::Unhandled;
    int status = coded ? 415 : 411;
    std::string code = coded ? "unsupported_content_encoding" : "length_required";
    SetError(res, status,
             coded ? "Request bodies must not be compressed (Content-Encoding is not supported)."
                   : "A request body needs a Content-Length header (chunked or unframed bodies "
                     "are not accepted).",
             code);
    res.set_header("Connection", "close");
    s->AuditAuthFailure(req, status, code);
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([s](const httplib::Request& req, httplib::Response& res) {
    // Refused before authentication could run: audited like a failed authentication.
    if (res.status == 413) s->AuditAuthFailure(req, 413, "request_too_large");
    if (!res.body.empty()) return;
    std::string message = res.status == 413   ? "Request body too large."
                          : res.status == 404 ? "Unknown endpoint."
                          : res.status == 400 ? "Malformed request."
                                              : "Request failed.";
    std::string code = res.status == 413   ? "request_too_large"
                       : res.status == 404 ? "unknown_url"
                                           : "";
    res.set_content(ErrorBody(res.status, message, code), "application/json");
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        SetError(res, 500, "Internal error.", "internal_error");
      });
  http.Post("/v1/chat/completions", [s](const httplib::Request& req, httplib::Response& res) {
    s->HandleCompletion(req, res, true);
  });
  http.Post("/v1/completions", [s](const httplib::Request& req, httplib::Response& res) {
    s->HandleCompletion(req, res, false);
  });
  http.Get("/v1/models",
           [s](const httplib::Request& req, httplib::Response& res) { s->HandleModels(req, res); });
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  // Liveness is /health; readiness also needs every configured local model loaded and the audit
  // log writable. Public like /health, so the reasons name no model.
  http.Get("/ready", [s](const httplib::Request&, httplib::Response& res) {
    json reasons = json::array();
    std::size_t missing = 0;
    for (const auto& m : s->policy().local_models)
      if (!s->options.local_backends.count(m.name)) ++missing;
    if (missing > 0) reasons.push_back(std::to_string(missing) + " local model(s) not loaded");
    const std::string& log = s->policy().audit.path;
    std::string dir = std::filesystem::path(log).parent_path().string();
    if (access(log.c_str(), W_OK) != 0 || access(dir.empty() ? "." : dir.c_str(), W_OK) != 0)
      reasons.push_back("audit log not writable");
    res.status = reasons.empty() ? 200 : 503;
    json body = {{"status", reasons.empty() ? "ready" : "not_ready"}};
    if (!reasons.empty()) body["reasons"] = reasons;
    res.set_content(DumpJson(body), "application/json");
  });
  http.Get("/metrics", [s](const httplib::Request& req, httplib::Response& res) {
    // Request counts, model names and policy actions are operational data: the same key rule as
    // the API unless the policy opens the endpoint to scrapers ([server] public_metrics).
    if (!s->policy().server.public_metrics) {
      RequestState st;
      if (!s->Authenticate(req, res, st)) return;
    }
    std::string out = s->metrics.Render();
    out += "# HELP airlock_reserved_tokens Tokens reserved by requests in flight.\n";
    out += "# TYPE airlock_reserved_tokens gauge\n";
    out += "airlock_reserved_tokens " + std::to_string(s->reserved_tokens.load()) + "\n";
    res.set_content(out, "text/plain; version=0.0.4");
  });
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

Status Gateway::Start() {
  const std::string& host = impl_->options.host;
  int port = impl_->options.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(host);
    if (port <= 0) return Unavailable("server: cannot bind at " + host + ": no free port");
  } else if (!impl_->http.bind_to_port(host, port)) {
    return Unavailable("server: cannot listen on " + host + ":" + std::to_string(port) + ": port " +
                       std::to_string(port) +
                       " is already in use by another process (or binding it is not permitted)");
  }
  impl_->port = port;
  // An upstream that is this gateway would fan one request out until every worker is busy.
  for (const auto& [name, pool] : impl_->pools) {
    const UpstreamEndpoint& ep = pool->endpoint();
    if (ep.port != port) continue;
    for (const std::string& address : ResolveAddresses(ep.host)) {
      if (!ReachesListener(address, host)) continue;
      impl_->http.stop();
      return InvalidArgument("server: upstream '" + name + "' base_url " + ep.scheme_host_port +
                             " points at this gateway's own listen address " + host + ":" +
                             std::to_string(port));
    }
  }
  impl_->listener = std::thread([this] { impl_->http.listen_after_bind(); });
  return Status::Ok();
}

int Gateway::port() const { return impl_->port; }

void Gateway::Stop() {
  if (impl_->stopped.exchange(true)) return;
  impl_->http.stop();
}

void Gateway::Wait() {
  if (impl_->listener.joinable()) impl_->listener.join();
}

}  // namespace airlock::server
