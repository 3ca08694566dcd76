// `airlock serve`: an OpenAI-compatible HTTP server that is also the governance gateway. Every
// request is authenticated (API keys), admitted against rate limits and budgets (reserve, then
// reconcile), scanned by the policy detectors, transformed or blocked by the policy rules, routed
// to a local model backend or a configured upstream (egress deny-by-default), restored
// (pseudonym placeholders, reasoning handling, also across SSE chunks) and recorded in the
// tamper-evident audit log before the answer completes.
// Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health
// (liveness), GET /ready (every configured local model loaded, audit log writable; else 503),
// GET /metrics. Errors use OpenAI's JSON shape.
// Ownership: Gateway owns its HTTP server, key store, audit log and upstream connection pools.
// Thread-safety: Start/Stop/Wait from one controlling thread; requests are served concurrently.
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
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

class Gateway {
 public:
  // Opens the key store and audit log named in the policy and compiles the detectors. Errors:
  // kPermissionDenied (non-loopback bind without any active API key), kIo, kInvalidArgument.
  static Result<std::unique_ptr<Gateway>> Create(GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds the listening socket and serves on a background thread. Errors: kUnavailable (bind).
  Status Start();
  // The bound port (after Start()).
  int port() const;
  // Stops accepting and serving; idempotent.
  void Stop();
  // Blocks until the server stops.
  void Wait();

 private:
  struct Impl;
  explicit Gateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::server
