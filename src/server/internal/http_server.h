// The gateway's event-driven HTTP/1.1 server (Boost.Beast on Asio; Beast and Asio stay inside
// http_server.cc). Connections live on a small io_context (reading headers and bodies, writing
// answers, idle keep-alive): a slow or idle connection holds no thread. A request whose headers
// and body have arrived goes to a bounded pool of worker threads (handlers may block on local
// inference or an upstream); cheap handlers (/health, /ready) answer on the io thread.
// Limits applied before any handler runs: a deadline for the request header (and the TLS
// handshake), one for the body, a header size limit, the body size limit (413), a refusal of
// compressed (415) and unframed or chunked (411) bodies; after each of these refusals the
// connection is closed. Connections are capped per client address bucket (IPv4 /32, IPv6 /64 by
// default: internal/client_limits.h) and in total (above either cap
// a new connection gets 503 and is closed); keep-alive connections close after an idle timeout or
// a number of requests. Streaming answers are written with backpressure: the provider's
// sink.write waits while 256 KiB are unsent, and a write that does not complete within the write
// timeout closes the connection.
// TLS (1.2 or later, OpenSSL through Asio) when a certificate and key are configured; ReloadTls()
// loads them again for new connections.
// Thread-safety: Bind/Start/StopAccepting/CloseAll/Stop/ReloadTls from one controlling thread;
// the counters may be read from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"
#include "server/internal/http_types.h"

namespace airlock::server::internal {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: a free port
  int worker_threads = 64;
  int io_threads = 2;
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_header_bytes = 64 << 10;
  int header_timeout_s = 10;     // request line and headers (and TLS handshake) of a request
  int body_timeout_s = 10;       // the whole body, once the headers are in
  int write_timeout_s = 30;      // each write to the client
  int keep_alive_timeout_s = 5;  // idle time allowed before the next request's headers are in
  int keep_alive_max_requests = 100;
  int max_connections = 4096;
  int max_connections_per_address = 64;  // per client address bucket
  int ipv6_client_prefix = 64;           // IPv6 clients are bucketed by this prefix
  std::string tls_cert;                  // PEM chain; empty: plain HTTP
  std::string tls_key;                   // PEM private key
};

struct HttpServerCounters {
  std::int64_t open_connections = 0;
  std::int64_t refused_connections = 0;    // over a connection cap
  std::int64_t timed_out_connections = 0;  // header, body or write deadline
  std::int64_t tls_handshake_failures = 0;
};

class HttpServer {
 public:
  using Handler = std::function<void(const HttpRequest&, HttpResponse&)>;
  // Runs on the io thread; returns false to pass the request on to the worker pool.
  using FastHandler = std::function<bool(const HttpRequest&, HttpResponse&)>;
  // A request refused before routing (status 411, 413, 415, 431): for the audit log. Runs on a
  // worker thread, after the refusal was sent.
  using RefusalHook = std::function<void(const HttpRequest&, int status, const std::string& code)>;

  // Errors: kInvalidArgument (TLS certificate or key cannot be loaded).
  static Result<std::unique_ptr<HttpServer>> Create(HttpServerOptions options, FastHandler fast,
                                                    Handler handler, RefusalHook refused);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens (SO_REUSEADDR, never SO_REUSEPORT). Errors: kUnavailable (in use).
  Status Bind();
  int port() const;
  bool tls() const;
  // Starts accepting and the io and worker threads.
  void Start();
  // Closes the listening socket and every connection that has no request in progress; requests
  // in progress finish, and their connections close after the answer.
  void StopAccepting();
  // Requests being handled (read completely, answer not yet written to the end).
  int ActiveRequests() const;
  // Closes every connection now (requests in progress see their writes fail).
  void CloseAll();
  // Stops everything and joins the threads (handlers still running are waited for).
  void Stop();
  // Loads the certificate and key again; new connections use them. Errors: kInvalidArgument.
  Status ReloadTls();
  HttpServerCounters Counters() const;

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::server::internal
