#include "server/gateway.h"

#include <arpa/inet.h>
#include <httplib.h>
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
