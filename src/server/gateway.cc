#include "server/gateway.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "audit/audit_log.h"
#include "policy/detectors.h"
#include "server/internal/auth_failures.h"
#include "server/internal/gateway_impl.h"
#include "server/internal/json_limits.h"
#include "server/keys.h"

namespace airlock::server {

using namespace internal;

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr a4;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  return false;
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
  AIRLOCK_ASSIGN_OR_RETURN(impl->keys, OpenKeyStore(p));
  if (!IsLoopbackHost(impl->options.host)) {
    impl->keys_required = true;  // whatever happens to the keys later: never anonymous
    AIRLOCK_ASSIGN_OR_RETURN(bool any, impl->keys->HasAnyKey());
    if (!any)
      return PermissionDenied("server: refusing to listen on non-loopback address '" +
                              impl->options.host +
                              "' without API keys; create one with "
                              "`airlock keys create` (key store " +
                              impl->keys->Describe() + ")");
    // Keys and prompts would cross the network in clear.
    if (p.server.tls_cert.empty() && !impl->options.insecure_http)
      return PermissionDenied("server: refusing to listen on non-loopback address '" +
                              impl->options.host +
                              "' without TLS; set [server] tls_cert and tls_key, or pass "
                              "--insecure-http to serve plain HTTP anyway");
  }
  if (!p.store.url.empty()) {
    impl->store_probe = std::make_unique<StoreProbe>(impl->keys.get());
    if (p.audit.publish_to_store) {
      AIRLOCK_ASSIGN_OR_RETURN(impl->checkpoint_publisher, OpenCheckpointPublisher(p));
    }
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
  if (impl->checkpoint_publisher) aopts.anchors.sinks.push_back(impl->checkpoint_publisher);
  aopts.checkpoint_every = p.audit.checkpoint_every;
  aopts.fsync = p.audit.fsync;
  AIRLOCK_ASSIGN_OR_RETURN(impl->audit, audit::AuditLog::Open(p.audit.path, aopts));
  // The latest checkpoint of an existing log may not have reached the store before the last
  // exit (the database was down): published again (a copy already there is not stored twice).
  if (impl->checkpoint_publisher) {
    std::string latest = impl->audit->LatestCheckpointNote();
    if (!latest.empty()) impl->checkpoint_publisher->Publish(latest, 0);
  }
  for (const policy::Upstream& u : p.upstreams) {
    AIRLOCK_ASSIGN_OR_RETURN(UpstreamEndpoint e, EndpointFor(u));
    impl->pools[u.name] = std::make_shared<ClientPool>(std::move(e));
  }

  Impl* s = impl.get();
  HttpServerOptions so;
  so.host = impl->options.host;
  so.port = impl->options.port;
  so.worker_threads = p.server.threads;
  so.max_body_bytes = p.server.max_body_bytes;
  so.header_timeout_s = p.server.header_timeout_s;
  so.body_timeout_s = p.server.read_timeout_s;
  so.write_timeout_s = p.server.write_timeout_s;
  so.keep_alive_timeout_s = p.server.keep_alive_timeout_s;
  so.keep_alive_max_requests = p.server.keep_alive_max_requests;
  so.max_connections = p.server.max_connections;
  so.max_connections_per_address = p.server.max_connections_per_address;
  so.ipv6_client_prefix = p.server.ipv6_client_prefix;
  impl->completions = std::make_unique<CompletionLimiter>(p.server.CompletionsPerAddress(),
                                                          p.server.CompletionsPerKey());
  so.tls_cert = p.server.tls_cert;
  so.tls_key = p.server.tls_key;
  AIRLOCK_ASSIGN_OR_RETURN(
      impl->http,
      HttpServer::Create(
          std::move(so),
          [s](const HttpRequest& req, HttpResponse& res) { return s->HandleFast(req, res); },
          [s](const HttpRequest& req, HttpResponse& res) { s->HandleRequest(req, res); },
          [s](const HttpRequest& req, int status, const std::string& code) {
            s->AuditRefusal(req, status, code);
          }));
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

bool Gateway::Impl::HandleFast(const HttpRequest& req, HttpResponse& res) {
  if (req.method != "GET") return false;
  if (req.path == "/health") {
    res.set_content(R"({"status":"ok"})", "application/json");
    return true;
  }
  if (req.path != "/ready") return false;
  // Liveness is /health; readiness also needs every configured local model loaded, the audit
  // log writable, the shared key store answering (probed in the background), and no drain under
  // way. Public like /health, so the reasons name no model.
  json reasons = json::array();
  if (draining.load()) reasons.push_back("shutting down");
  std::size_t missing = 0;
  for (const auto& m : policy().local_models)
    if (!options.local_backends.count(m.name)) ++missing;
  if (missing > 0) reasons.push_back(std::to_string(missing) + " local model(s) not loaded");
  const std::string& log = policy().audit.path;
  std::string dir = std::filesystem::path(log).parent_path().string();
  if (access(log.c_str(), W_OK) != 0 || access(dir.empty() ? "." : dir.c_str(), W_OK) != 0)
    reasons.push_back("audit log not writable");
  if (store_probe && !store_probe->available()) reasons.push_back("key store unavailable");
  res.status = reasons.empty() ? 200 : 503;
  json body = {{"status", reasons.empty() ? "ready" : "not_ready"}};
  if (!reasons.empty()) body["reasons"] = reasons;
  res.set_content(DumpJson(body), "application/json");
  return true;
}

void Gateway::Impl::HandleRequest(const HttpRequest& req, HttpResponse& res) {
  if (req.method == "POST" && req.path == "/v1/chat/completions")
    return HandleCompletion(req, res, true);
  if (req.method == "POST" && req.path == "/v1/completions")
    return HandleCompletion(req, res, false);
  if (req.method == "GET" && (req.path == "/v1/models" || req.path.rfind("/v1/models/", 0) == 0))
    return HandleModels(req, res);
  if (req.method == "GET" && req.path == "/metrics") {
    // Request counts, model names and policy actions are operational data: the same key rule as
    // the API unless the policy opens the endpoint to scrapers ([server] public_metrics).
    if (!policy().server.public_metrics) {
      RequestState st;
      if (!Authenticate(req, res, st)) return;
    }
    std::string out = metrics.Render();
    out += RenderKvCacheGauge(options.local_backends);
    if (checkpoint_publisher) {
      out +=
          "# HELP airlock_audit_checkpoints_unpublished Audit checkpoints waiting for the shared "
          "store.\n";
      out += "# TYPE airlock_audit_checkpoints_unpublished gauge\n";
      out += "airlock_audit_checkpoints_unpublished " +
             std::to_string(checkpoint_publisher->pending()) + "\n";
    }
    out += "# HELP airlock_reserved_tokens Tokens reserved by requests in flight.\n";
    out += "# TYPE airlock_reserved_tokens gauge\n";
    out += "airlock_reserved_tokens " + std::to_string(reserved_tokens.load()) + "\n";
    HttpServerCounters c = http->Counters();
    out += "# HELP airlock_open_connections Client connections open.\n";
    out += "# TYPE airlock_open_connections gauge\n";
    out += "airlock_open_connections " + std::to_string(c.open_connections) + "\n";
    out += "# HELP airlock_refused_connections_total Connections refused over a connection cap.\n";
    out += "# TYPE airlock_refused_connections_total counter\n";
    out += "airlock_refused_connections_total " + std::to_string(c.refused_connections) + "\n";
    out +=
        "# HELP airlock_timed_out_connections_total Connections closed by a header, body or "
        "write deadline.\n";
    out += "# TYPE airlock_timed_out_connections_total counter\n";
    out += "airlock_timed_out_connections_total " + std::to_string(c.timed_out_connections) + "\n";
    out += "# HELP airlock_tls_handshake_failures_total TLS handshakes that failed.\n";
    out += "# TYPE airlock_tls_handshake_failures_total counter\n";
    out +=
        "airlock_tls_handshake_failures_total " + std::to_string(c.tls_handshake_failures) + "\n";
    out +=
        "# HELP airlock_insecure_http 1 when serving plain HTTP beyond loopback "
        "(--insecure-http).\n";
    out += "# TYPE airlock_insecure_http gauge\n";
    out += std::string("airlock_insecure_http ") +
           (options.insecure_http && !http->tls() && !IsLoopbackHost(options.host) ? "1" : "0") +
           "\n";
    res.set_content(out, "text/plain; version=0.0.4");
    return;
  }
  SetError(res, 404, "Unknown endpoint.", "unknown_url");
}

void Gateway::Impl::TrackChannel(const std::shared_ptr<Channel>& ch) {
  std::lock_guard<std::mutex> lock(channels_mu);
  std::erase_if(channels, [](const std::weak_ptr<Channel>& w) { return w.expired(); });
  channels.push_back(ch);
  if (cancel_all.load()) ch->Cancel();
}

void Gateway::Impl::CancelAllChannels() {
  std::lock_guard<std::mutex> lock(channels_mu);
  for (auto& w : channels)
    if (auto ch = w.lock()) ch->Cancel();
}

Status Gateway::Start() {
  const std::string& host = impl_->options.host;
  AIRLOCK_TRY(impl_->http->Bind());
  int port = impl_->http->port();
  impl_->port = port;
  // An upstream that is this gateway would fan one request out until every worker is busy.
  for (const auto& [name, pool] : impl_->pools) {
    const UpstreamEndpoint& ep = pool->endpoint();
    if (ep.port != port) continue;
    for (const std::string& address : ResolveAddresses(ep.host)) {
      if (!ReachesListener(address, host)) continue;
      impl_->http->Stop();
      return InvalidArgument("server: upstream '" + name + "' base_url " + ep.scheme_host_port +
                             " points at this gateway's own listen address " + host + ":" +
                             std::to_string(port));
    }
  }
  impl_->http->Start();
  return Status::Ok();
}

int Gateway::port() const { return impl_->port; }

bool Gateway::tls() const { return impl_->http->tls(); }

Status Gateway::ReloadTls() { return impl_->http->ReloadTls(); }

void Gateway::Drain() {
  Impl& s = *impl_;
  if (s.stopped.load() || s.draining.exchange(true)) return;
  s.http->StopAccepting();
  auto idle = [&s] {
    std::lock_guard<std::mutex> lock(s.live_mu);
    return s.live_requests == 0 && s.http->ActiveRequests() == 0;
  };
  // Requests in flight may finish within the drain deadline.
  auto deadline = Clock::now() + std::chrono::seconds(s.policy().server.drain_timeout_s);
  while (!idle() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (!idle()) {
    // Past it: cancel local generation and every stream (each settles as cancelled), then close
    // what is left. A non-streamed upstream call ends at its own timeout_s at the latest.
    s.cancel_all = true;
    s.CancelAllChannels();
    auto grace = Clock::now() + std::chrono::seconds(2);
    while (!idle() && Clock::now() < grace)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    s.http->CloseAll();
  }
  Stop();
}

void Gateway::Stop() {
  if (impl_->stopped.exchange(true)) return;
  impl_->http->Stop();
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  impl_->stop_cv.notify_all();
}

void Gateway::Wait() {
  std::unique_lock<std::mutex> lock(impl_->stop_mu);
  impl_->stop_cv.wait(lock, [this] { return impl_->stopped.load(); });
}

}  // namespace airlock::server
