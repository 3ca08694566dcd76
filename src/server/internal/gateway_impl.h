// The gateway's shared state and request handlers (Gateway::Impl), split by concern over
// gateway.cc (configuration, server setup, lifecycle), internal/routes.cc (authentication,
// request parsing and policy, admission, settlement), internal/upstream.cc (forwarding),
// internal/local_backend.cc (local models) and internal/sse.cc (streams to the client).
// Included only by those files.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "audit/audit_log.h"
#include "policy/detectors.h"
#include "server/checkpoints.h"
#include "server/gateway.h"
#include "server/internal/auth_failures.h"
#include "server/internal/client_limits.h"
#include "server/internal/http_common.h"
#include "server/internal/http_server.h"
#include "server/internal/metrics.h"
#include "server/internal/policy_apply.h"
#include "server/internal/sse.h"
#include "server/internal/store_probe.h"
#include "server/internal/upstream.h"
#include "server/keys.h"

namespace airlock::server {

struct Gateway::Impl {
  GatewayOptions options;
  std::unique_ptr<policy::DetectorSet> detectors;
  std::unique_ptr<KeyStore> keys;
  // Set once keys are required (a non-loopback bind, or a key store that has held a key); never
  // cleared: see Authenticate.
  std::atomic<bool> keys_required{false};
  // Whether the key store answered its last probe (/ready); probed only for a shared store.
  std::unique_ptr<internal::StoreProbe> store_probe;
  // The shared store's copy of this replica's audit checkpoints (null without [store]); the audit
  // log's anchors hold it too.
  std::shared_ptr<CheckpointPublisher> checkpoint_publisher;
  std::unique_ptr<audit::AuditLog> audit;
  std::map<std::string, std::shared_ptr<internal::ClientPool>> pools;
  internal::Metrics metrics;
  // Completions in flight per client address bucket and per API key ([server]
  // max_completions_per_address / max_completions_per_key): one client cannot hold every worker.
  std::unique_ptr<internal::CompletionLimiter> completions;
  std::unique_ptr<internal::HttpServer> http;
  int port = 0;
  std::atomic<bool> stopped{false};
  std::mutex stop_mu;
  std::condition_variable stop_cv;  // Wait() until Stop()

  // Graceful drain (SIGTERM): /ready answers 503 from the start; past [server] drain_timeout_s
  // the requests still in flight are cancelled (cancel_all, every live stream's channel).
  std::atomic<bool> draining{false};
  std::atomic<bool> cancel_all{false};
  std::mutex channels_mu;
  std::vector<std::weak_ptr<internal::Channel>> channels;
  void TrackChannel(const std::shared_ptr<internal::Channel>& ch);
  void CancelAllChannels();
  // Requests refused before routing (411, 413, 415, 431) and 508: audited like failed auth.
  void AuditRefusal(const internal::HttpRequest& req, int status, const std::string& code) {
    AuditAuthFailure(req, status, code);
  }
  // GET /health and /ready, answered on the io thread (no worker, no key).
  bool HandleFast(const internal::HttpRequest& req, internal::HttpResponse& res);
  // Every other request, on a worker thread.
  void HandleRequest(const internal::HttpRequest& req, internal::HttpResponse& res);

  const policy::Policy& policy() const { return options.policy; }

  // Tokens reserved by requests in flight (exported as a metric; 0 when the gateway is idle).
  std::atomic<std::int64_t> reserved_tokens{0};
  // internal::RequestStates alive (a streaming producer thread may hold one after the handler
  // returned); the destructor waits for them, since an unsettled state settles through this Impl.
  std::mutex live_mu;
  std::condition_variable live_cv;
  int live_requests = 0;

  void Finish(internal::RequestState& st, int status, std::int64_t actual_tokens,
              const std::string& response_text);

  void Fail(internal::RequestState& st, internal::HttpResponse& res, int status,
            const std::string& message, const std::string& code, const std::string& param = "");

  internal::AuthFailureLog auth_failures;
  const std::string instance_id = internal::RandomId();

  // Refuses (true, `res` set) a request that looped, passed kMaxHops gateways or carries a
  // malformed hop header; otherwise sets *hops to its hop ids, normalized.
  bool RefuseLoop(const internal::HttpRequest& req, internal::HttpResponse& res, std::string* hops);

  // Records a request refused before authentication (401, 413); never the presented key.
  void AuditAuthFailure(const internal::HttpRequest& req, int status, const std::string& reason);
  void AppendAuthFailure(const internal::AuthFailureLog::Entry& e);

  // Authenticates; returns false after writing a 401 (audited, aggregated per client and minute).
  bool Authenticate(const internal::HttpRequest& req, internal::HttpResponse& res,
                    internal::RequestState& st);

  // GET /v1/models and GET /v1/models/{id}.
  void HandleModels(const internal::HttpRequest& req, internal::HttpResponse& res);
  const std::int64_t started_at = internal::NowSeconds();
  std::int64_t ModelCreated(const std::string& model) const;

  void HandleCompletion(const internal::HttpRequest& req, internal::HttpResponse& res, bool chat);
  void ProcessCompletion(const std::shared_ptr<internal::RequestState>& st,
                         const internal::HttpRequest& req, internal::HttpResponse& res);
  void ForwardUpstream(std::shared_ptr<internal::RequestState> st, internal::json body, bool stream,
                       const policy::Upstream& upstream, internal::HttpResponse& res);
  // A local model's error message as the client and the audit may see it: withheld when a
  // detector fires on it (the worker has seen every prompt; local_backend.cc).
  std::string ModelErrorDetail(const std::string& message) const;
  void ServeLocal(std::shared_ptr<internal::RequestState> st, internal::json body, bool stream,
                  std::shared_ptr<ModelBackend> backend, internal::HttpResponse& res);
  void StreamToClient(std::shared_ptr<internal::RequestState> st,
                      std::shared_ptr<internal::Channel> ch, internal::HttpResponse& res);
};

}  // namespace airlock::server
