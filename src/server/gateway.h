// `airlock serve`: an OpenAI-compatible HTTP server that is also the governance gateway. Every
// request is authenticated (API keys), admitted against rate limits and budgets (reserve, then
// reconcile), scanned by the policy detectors, transformed or blocked by the policy rules, routed
// to a local model backend or a configured upstream (egress deny-by-default), restored
// (pseudonym placeholders, reasoning handling, also across SSE chunks) and recorded in the
// tamper-evident audit log before the answer completes.
// Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET
// /v1/models/{id}, GET /health (liveness), GET /ready (every configured local model loaded, audit
// log writable; else 503), GET /metrics. Errors use OpenAI's JSON shape. Completions in flight
// are capped per client address and per API key (internal/client_limits.h).
// Ownership: Gateway owns its HTTP server, key store, audit log and upstream connection pools.
// Thread-safety: Start/Stop/Wait/Drain/ReloadTls from controlling threads; requests are served
// concurrently (internal/http_server.h: event-driven connections, a bounded worker pool).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/status.h"
#include "policy/policy.h"
#include "server/model_backend.h"

namespace airlock::server {

struct GatewayOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 picks a free port (see Gateway::port())
  policy::Policy policy;
  // Local models by name; the policy's local_models without a backend answer 503.
  std::map<std::string, std::shared_ptr<ModelBackend>> local_backends;
  // Allows a non-loopback bind without TLS ([server] tls_cert/tls_key); API keys are still
  // required there. Shown as a warning and as the metric airlock_insecure_http.
  bool insecure_http = false;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

class Gateway {
 public:
  // Opens the key store and audit log named in the policy, compiles the detectors and loads the
  // TLS certificate. Errors: kPermissionDenied (non-loopback bind without any active API key, or
  // without TLS unless insecure_http), kIo, kInvalidArgument (TLS files).
  static Result<std::unique_ptr<Gateway>> Create(GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds the listening socket and serves on a background thread. Errors: kUnavailable (bind).
  Status Start();
  // The bound port (after Start()).
  int port() const;
  // Whether clients connect with TLS.
  bool tls() const;
  // Graceful drain: stops accepting (idle connections are closed, /ready answers 503), lets the
  // requests in flight finish for up to [server] drain_timeout_s, then cancels the rest; returns
  // once every request is settled and audited (bounded), then stops. Idempotent.
  void Drain();
  // Loads [server] tls_cert/tls_key again for new connections (SIGHUP). Errors: kInvalidArgument
  // (the old certificate stays in use).
  Status ReloadTls();
  // Stops accepting and serving at once; idempotent.
  void Stop();
  // Blocks until the server stops.
  void Wait();

 private:
  struct Impl;
  explicit Gateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::server
