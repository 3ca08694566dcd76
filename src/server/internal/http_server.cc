// Boost.Beast/Asio live in this file only (they are heavy to compile), which is why it is one file
// of about 870 lines: the connection session template, the accept loop with its per-address caps
// and the TLS context all use Beast/Asio types that no header exposes.
#include "server/internal/http_server.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "server/internal/client_limits.h"
#include "server/internal/http_common.h"

namespace airlock::server::internal {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string HttpRequest::get_header_value(std::string_view name, std::size_t i) const {
  for (const auto& [k, v] : headers)
    if (EqualsIgnoreCase(k, name) && i-- == 0) return v;
  return "";
}

std::size_t HttpRequest::get_header_value_count(std::string_view name) const {
  std::size_t n = 0;
  for (const auto& [k, v] : headers)
    if (EqualsIgnoreCase(k, name)) ++n;
  return n;
}

namespace {

// Bytes a streaming provider may have queued for the client before sink.write waits.
constexpr std::size_t kStreamHighWater = 256u << 10;

std::string_view Reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 508:
      return "Loop Detected";
    default:
      return "Status";
  }
}

// Status line and headers; `chunked`: Transfer-Encoding instead of Content-Length.
std::string Head(const HttpResponse& res, bool close, bool chunked) {
  std::string h =
      "HTTP/1.1 " + std::to_string(res.status) + " " + std::string(Reason(res.status)) + "\r\n";
  for (const auto& [k, v] : res.headers) {
    if (EqualsIgnoreCase(k, "Connection") || EqualsIgnoreCase(k, "Content-Length") ||
        EqualsIgnoreCase(k, "Transfer-Encoding"))
      continue;
    // Header values come from the gateway; CR/LF are dropped all the same.
    std::string value;
    for (char c : v)
      if (c != '\r' && c != '\n') value += c;
    h += k + ": " + value + "\r\n";
  }
  if (!res.content_type.empty()) h += "Content-Type: " + res.content_type + "\r\n";
  if (chunked)
    h += "Transfer-Encoding: chunked\r\n";
  else
    h += "Content-Length: " + std::to_string(res.body.size()) + "\r\n";
  h += close ? "Connection: close\r\n" : "Connection: keep-alive\r\n";
  h += "\r\n";
  return h;
}

std::string ErrorResponse(int status, const std::string& message, const std::string& code) {
  HttpResponse res;
  res.status = status;
  res.set_content(ErrorBody(status, message, code), "application/json");
  return Head(res, true, false) + res.body;
}

class WorkerPool {
 public:
  explicit WorkerPool(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~WorkerPool() { Stop(); }
  void Post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  // Runs what is queued, then joins.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

 private:
  void Run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

Result<std::shared_ptr<net::ssl::context>> MakeTlsContext(const std::string& cert,
                                                          const std::string& key) {
  auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
  ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                   net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                   net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cert, ec);
  if (ec) return InvalidArgument("server: cannot load tls_cert '" + cert + "': " + ec.message());
  ctx->use_private_key_file(key, net::ssl::context::pem, ec);
  if (ec) return InvalidArgument("server: cannot load tls_key '" + key + "': " + ec.message());
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    return InvalidArgument("server: tls_key '" + key + "' does not match tls_cert '" + cert + "'");
  return ctx;
}

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void PostClose() = 0;
  virtual void PostCloseIfIdle() = 0;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  FastHandler fast;
  Handler handler;
  RefusalHook refused;

  // Declared before the io_context: pending handlers (holding sessions) are destroyed with it,
  // and a session's destructor updates these.
  std::mutex conn_mu;
  std::map<std::string, int> per_address;
  int open = 0;
  std::unordered_map<std::uint64_t, std::weak_ptr<SessionBase>> sessions;
  std::uint64_t next_id = 0;
  std::atomic<std::int64_t> refused_connections{0}, timed_out{0}, tls_failures{0};
  std::atomic<int> active{0};
  std::atomic<bool> draining{false};

  std::mutex tls_mu;
  std::shared_ptr<net::ssl::context> tls;

  std::unique_ptr<WorkerPool> workers;
  net::io_context ioc;
  // Keeps the io threads running while no operation is pending (every connection busy in a
  // handler, the listener closed by a drain): work posted by the workers must still run.
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  tcp::acceptor acceptor{net::make_strand(ioc)};
  net::steady_timer accept_retry{ioc};
  std::vector<std::thread> io_threads;
  int port = 0;
  bool stopped = false;

  void DoAccept();
  void OnAccept(tcp::socket socket);
  void Refuse(tcp::socket socket);
  std::shared_ptr<net::ssl::context> CurrentTls() {
    std::lock_guard<std::mutex> lock(tls_mu);
    return tls;
  }
  void Release(std::uint64_t id, const std::string& address) {
    std::lock_guard<std::mutex> lock(conn_mu);
    auto it = per_address.find(address);
    if (it != per_address.end() && --it->second <= 0) per_address.erase(it);
    --open;
    sessions.erase(id);
  }
  std::vector<std::shared_ptr<SessionBase>> LiveSessions() {
    std::vector<std::shared_ptr<SessionBase>> out;
    std::lock_guard<std::mutex> lock(conn_mu);
    for (auto& [id, w] : sessions)
      if (auto s = w.lock()) out.push_back(std::move(s));
    return out;
  }
};

namespace {

template <class Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(HttpServer::Impl& server, std::uint64_t id, std::string address, std::string bucket,
          std::shared_ptr<net::ssl::context> tls, Stream stream)
      : server_(server),
        id_(id),
        address_(std::move(address)),
        bucket_(std::move(bucket)),
        tls_(std::move(tls)),
        stream_(std::move(stream)) {}
  ~Session() override { server_.Release(id_, bucket_); }

  void Start() {
    if constexpr (kTls) {
      Lowest().expires_after(std::chrono::seconds(server_.options.header_timeout_s));
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) {
                                  if (ec == beast::error::timeout) self->server_.timed_out++;
                                  self->server_.tls_failures++;
                                  return self->Close();
                                }
                                self->DoRead();
                              });
    } else {
      net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] { self->DoRead(); });
    }
  }

  void PostClose() override {
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      failed_ = true;
    }
    out_cv_.notify_all();
    net::post(stream_.get_executor(), [self = this->shared_from_this()] { self->Close(); });
  }
  void PostCloseIfIdle() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (!self->handling_) self->Close();
    });
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;
  static std::string Str(beast::string_view v) { return std::string(v.data(), v.size()); }

  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void Close() {
    if (closed_) return;
    closed_ = true;
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      failed_ = true;
    }
    out_cv_.notify_all();
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().close();
  }

  void DoRead() {
    if (closed_) return;
    if (server_.draining.load()) return Close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options.max_header_bytes));
    parser_->body_limit(server_.options.max_body_bytes);
    // The first request's headers must arrive within the header deadline; between requests of a
    // keep-alive connection the idle timeout covers the wait and the next headers.
    int limit =
        served_ == 0 ? server_.options.header_timeout_s : server_.options.keep_alive_timeout_s;
    Lowest().expires_after(std::chrono::seconds(limit));
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->OnHeader(ec);
                            });
  }

  // Sends a refusal made before routing and closes the connection (its body is never read).
  void Refuse(int status, const std::string& message, const std::string& code, bool audit) {
    if (audit && server_.refused) {
      auto req = std::make_shared<HttpRequest>(request_);
      auto hook = server_.refused;
      server_.workers->Post([req, hook, status, code] { hook(*req, status, code); });
    }
    close_after_ = true;
    Queue(ErrorResponse(status, message, code));
  }

  void FillRequest() {
    const auto& h = parser_->get();
    request_ = HttpRequest();
    request_.method = Str(h.method_string());
    request_.target = Str(h.target());
    request_.path = request_.target.substr(0, request_.target.find('?'));
    for (const auto& f : h) request_.headers.emplace_back(Str(f.name_string()), Str(f.value()));
    request_.remote_addr = address_;
    request_.client_bucket = bucket_;
  }

  void OnHeader(beast::error_code ec) {
    Lowest().expires_never();
    if (ec == beast::error::timeout) server_.timed_out++;
    // Beast checks the Content-Length against the body limit as soon as the headers are in.
    if (ec == http::error::body_limit) {
      FillRequest();
      return Refuse(413, "Request body too large.", "request_too_large", true);
    }
    if (ec == http::error::header_limit)
      return Refuse(431, "Request headers too large.", "headers_too_large", false);
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::eof ||
        ec == net::error::connection_reset || closed_)
      return Close();
    if (ec) return Refuse(400, "Malformed request.", "", false);
    FillRequest();

    // cpp-httplib-era refusals, kept: compressed bodies would expand past the limit, and chunked
    // or unframed ones could be any size.
    bool coded = false;
    for (std::size_t i = 0; i < request_.get_header_value_count("Content-Encoding"); ++i) {
      std::string lower;
      for (char c : request_.get_header_value("Content-Encoding", i))
        if (c != ' ' && c != '\t')
          lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!lower.empty() && lower != "identity") coded = true;
    }
    const std::string& m = request_.method;
    bool has_body_method = m == "POST" || m == "PUT" || m == "PATCH";
    bool unbounded = request_.has_header("Transfer-Encoding") ||
                     (has_body_method && !request_.has_header("Content-Length"));
    if (coded)
      return Refuse(415,
                    "Request bodies must not be compressed (Content-Encoding is not supported).",
                    "unsupported_content_encoding", true);
    if (unbounded)
      return Refuse(411,
                    "A request body needs a Content-Length header (chunked or unframed bodies "
                    "are not accepted).",
                    "length_required", true);
    auto length = parser_->content_length();
    if (length && *length > server_.options.max_body_bytes)
      return Refuse(413, "Request body too large.", "request_too_large", true);

    if (parser_->is_done()) return OnBody({});
    auto body = [self = this->shared_from_this()] {
      self->Lowest().expires_after(std::chrono::seconds(self->server_.options.body_timeout_s));
      http::async_read(self->stream_, self->buffer_, *self->parser_,
                       [self](beast::error_code ec, std::size_t) { self->OnBody(ec); });
    };
    std::string expect = request_.get_header_value("Expect");
    if (EqualsIgnoreCase(expect, "100-continue")) {
      auto interim = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
      Lowest().expires_after(std::chrono::seconds(server_.options.write_timeout_s));
      net::async_write(
          stream_, net::buffer(*interim),
          [self = this->shared_from_this(), interim, body](beast::error_code ec, std::size_t) {
            if (ec) return self->Close();
            body();
          });
      return;
    }
    body();
  }

  void OnBody(beast::error_code ec) {
    Lowest().expires_never();
    if (ec == beast::error::timeout) server_.timed_out++;
    if (ec == http::error::body_limit)
      return Refuse(413, "Request body too large.", "request_too_large", true);
    if (ec) return Close();
    request_.body = std::move(parser_->get().body());
    ++served_;
    keep_alive_ = parser_->get().keep_alive() && served_ < server_.options.keep_alive_max_requests;
    parser_.reset();
    handling_ = true;
    server_.active++;
    auto res = std::make_shared<HttpResponse>();
    bool handled = false;
    try {
      handled = server_.fast && server_.fast(request_, *res);
    } catch (const std::exception&) {
      *res = HttpResponse();
      SetError(*res, 500, "Internal error.", "internal_error");
      handled = true;
    }
    if (handled) return Respond(res);
    server_.workers->Post([self = this->shared_from_this(), res] {
      try {
        self->server_.handler(self->request_, *res);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "airlock serve: internal error: %s\n", e.what());
        *res = HttpResponse();
        SetError(*res, 500, "Internal error.", "internal_error");
      }
      if (res->provider) {
        self->streaming_ = true;
        return self->StreamAnswer(res);
      }
      net::post(self->stream_.get_executor(), [self, res] { self->Respond(res); });
    });
  }

  bool CloseAfter() const { return !keep_alive_ || server_.draining.load(); }

  // On the strand: a complete answer.
  void Respond(const std::shared_ptr<HttpResponse>& res) {
    bool close = CloseAfter();
    after_flush_ = [self = this->shared_from_this(), close] { self->Done(!close); };
    Queue(Head(*res, close, false) + res->body);
  }

  // Request finished (answer flushed or failed): the next request, or the end.
  void Done(bool again) {
    if (handling_) {
      handling_ = false;
      server_.active--;
    }
    if (again && !closed_)
      DoRead();
    else
      Close();
  }

  // On the strand: appends bytes to the output and starts writing. `counted`: unsent_ already
  // includes them (a streaming worker counts before it posts, so that its waits see them).
  void Queue(std::string bytes, bool counted = false) {
    if (!counted) {
      std::lock_guard<std::mutex> lock(out_mu_);
      unsent_ += bytes.size();
    }
    queue_.push_back(std::move(bytes));
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (closed_) return FailWrites();
    writing_ = true;
    Lowest().expires_after(std::chrono::seconds(server_.options.write_timeout_s));
    net::async_write(stream_, net::buffer(queue_.front()),
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                       self->OnWritten(ec);
                     });
  }

  void OnWritten(beast::error_code ec) {
    Lowest().expires_never();
    writing_ = false;
    std::size_t n = queue_.front().size();
    queue_.pop_front();
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      unsent_ -= n;
      if (ec) failed_ = true;
    }
    out_cv_.notify_all();
    if (ec) {
      if (ec == beast::error::timeout) server_.timed_out++;
      FailWrites();
      return;
    }
    if (!queue_.empty()) return WriteNext();
    if (close_after_) return LingerClose();
    if (after_flush_) {
      auto f = std::move(after_flush_);
      after_flush_ = nullptr;
      f();
    }
  }

  // After a refusal whose body was never read: stop sending, then read and discard what the
  // client still sends (bounded in bytes and time) before closing, so that the close does not
  // reset the connection before the client has read the refusal.
  void LingerClose() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    Lowest().expires_after(std::chrono::seconds(2));
    discard_ = std::make_unique<char[]>(kDiscardBytes);
    DiscardSome();
  }
  void DiscardSome() {
    if (closed_ || discarded_ > (4u << 20)) return Close();
    Lowest().async_read_some(
        net::buffer(discard_.get(), kDiscardBytes),
        [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
          if (ec) return self->Close();
          self->discarded_ += n;
          self->DiscardSome();
        });
  }
  static constexpr std::size_t kDiscardBytes = 16384;

  // The connection is gone: nothing more is written; a pending non-streamed answer ends here.
  void FailWrites() {
    Close();
    queue_.clear();
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      unsent_ = 0;
    }
    out_cv_.notify_all();
    after_flush_ = nullptr;
    if (!streaming_) Done(false);
  }

  // On a worker thread: bytes for the client; waits while too much is unsent.
  bool StreamWrite(std::string bytes) {
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      if (failed_) return false;
      unsent_ += bytes.size();
    }
    net::post(stream_.get_executor(),
              [self = this->shared_from_this(), b = std::move(bytes)]() mutable {
                if (self->closed_) {
                  std::lock_guard<std::mutex> lock(self->out_mu_);
                  self->unsent_ -= b.size();
                  return;
                }
                self->Queue(std::move(b), /*counted=*/true);
              });
    std::unique_lock<std::mutex> lock(out_mu_);
    // Bounded waits: writes time out on the io thread, which sets failed_.
    while (!failed_ && unsent_ > kStreamHighWater) out_cv_.wait_for(lock, std::chrono::seconds(1));
    return !failed_;
  }

  // On a worker thread: a chunked (SSE) answer from the response's provider.
  void StreamAnswer(const std::shared_ptr<HttpResponse>& res) {
    bool close = CloseAfter();
    bool ok = StreamWrite(Head(*res, close, true));
    bool done = false;
    std::size_t offset = 0;
    DataSink sink;
    sink.write = [&](const char* data, std::size_t size) {
      if (size == 0) return ok;
      char hex[24];
      std::snprintf(hex, sizeof hex, "%zx\r\n", size);
      std::string chunk(hex);
      chunk.append(data, size);
      chunk += "\r\n";
      offset += size;
      ok = ok && StreamWrite(std::move(chunk));
      return ok;
    };
    sink.done = [&] {
      if (done) return;
      done = true;
      ok = ok && StreamWrite("0\r\n\r\n");
    };
    while (ok && !done)
      if (!res->provider(offset, sink)) ok = false;
    // Wait until the client took everything (or the connection failed).
    {
      std::unique_lock<std::mutex> lock(out_mu_);
      while (!failed_ && unsent_ > 0) out_cv_.wait_for(lock, std::chrono::seconds(1));
      ok = ok && !failed_;
    }
    if (res->releaser) res->releaser(ok && done);
    net::post(stream_.get_executor(), [self = this->shared_from_this(), again = ok && !close] {
      self->streaming_ = false;
      self->Done(again);
    });
  }

  HttpServer::Impl& server_;
  std::uint64_t id_;
  std::string address_;
  std::string bucket_;                      // what the per-address caps count
  std::shared_ptr<net::ssl::context> tls_;  // outlives stream_
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  HttpRequest request_;
  int served_ = 0;
  bool keep_alive_ = true;
  bool closed_ = false;
  bool handling_ = false;               // a request is read and not yet answered to the end
  std::atomic<bool> streaming_{false};  // a worker thread is writing a chunked answer
  bool close_after_ = false;            // close once the queue is written (refusals)
  std::unique_ptr<char[]> discard_;
  std::size_t discarded_ = 0;
  // Output, on the strand; unsent_/failed_ also read by a streaming worker under out_mu_.
  std::deque<std::string> queue_;
  bool writing_ = false;
  std::function<void()> after_flush_;
  std::mutex out_mu_;
  std::condition_variable out_cv_;
  std::size_t unsent_ = 0;
  bool failed_ = false;
};

}  // namespace

void HttpServer::Impl::DoAccept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors (or another transient error): try again shortly instead of spinning.
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](beast::error_code e) {
        if (!e) DoAccept();
      });
      return;
    }
    OnAccept(std::move(socket));
    DoAccept();
  });
}

void HttpServer::Impl::Refuse(tcp::socket socket) {
  refused_connections++;
  if (!options.tls_cert.empty()) {
    beast::error_code ec;
    socket.close(ec);
    return;
  }
  auto s = std::make_shared<beast::tcp_stream>(std::move(socket));
  auto msg = std::make_shared<std::string>(ErrorResponse(
      503, "Too many connections from your address or in total.", "too_many_connections"));
  s->expires_after(std::chrono::seconds(2));
  net::async_write(*s, net::buffer(*msg), [s, msg](beast::error_code, std::size_t) {
    beast::error_code e;
    s->socket().shutdown(tcp::socket::shutdown_both, e);
    s->close();
  });
}

void HttpServer::Impl::OnAccept(tcp::socket socket) {
  beast::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) return;
  std::string address = endpoint.address().to_string();
  // Counted per bucket: the addresses of one IPv6 /64 are one client.
  std::string bucket = ClientAddressBucket(address, options.ipv6_client_prefix);
  socket.set_option(tcp::no_delay(true), ec);
  std::uint64_t id;
  {
    std::lock_guard<std::mutex> lock(conn_mu);
    int& mine = per_address[bucket];
    if (open >= options.max_connections || mine >= options.max_connections_per_address ||
        draining.load()) {
      if (mine == 0) per_address.erase(bucket);
      return Refuse(std::move(socket));
    }
    ++mine;
    ++open;
    id = ++next_id;
  }
  std::shared_ptr<SessionBase> session;
  if (auto ctx = CurrentTls()) {
    using TlsStream = beast::ssl_stream<beast::tcp_stream>;
    auto s = std::make_shared<Session<TlsStream>>(
        *this, id, address, bucket, ctx, TlsStream(beast::tcp_stream(std::move(socket)), *ctx));
    session = s;
    {
      std::lock_guard<std::mutex> lock(conn_mu);
      sessions[id] = session;
    }
    s->Start();
  } else {
    auto s = std::make_shared<Session<beast::tcp_stream>>(*this, id, address, bucket, nullptr,
                                                          beast::tcp_stream(std::move(socket)));
    session = s;
    {
      std::lock_guard<std::mutex> lock(conn_mu);
      sessions[id] = session;
    }
    s->Start();
  }
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

Result<std::unique_ptr<HttpServer>> HttpServer::Create(HttpServerOptions options, FastHandler fast,
                                                       Handler handler, RefusalHook refused) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->fast = std::move(fast);
  impl->handler = std::move(handler);
  impl->refused = std::move(refused);
  if (!impl->options.tls_cert.empty() || !impl->options.tls_key.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(impl->tls,
                             MakeTlsContext(impl->options.tls_cert, impl->options.tls_key));
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

Status HttpServer::Bind() {
  Impl& s = *impl_;
  beast::error_code ec;
  auto address =
      net::ip::make_address(s.options.host == "localhost" ? "127.0.0.1" : s.options.host, ec);
  if (ec) {
    // A host name: the first address it resolves to.
    tcp::resolver resolver(s.ioc);
    auto results = resolver.resolve(s.options.host, "", ec);
    if (ec || results.empty())
      return Unavailable("server: cannot resolve host '" + s.options.host + "'");
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, static_cast<unsigned short>(s.options.port));
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    s.acceptor.close(ignored);
    std::string port = std::to_string(s.options.port);
    if (ec == net::error::address_in_use)
      return Unavailable("server: cannot listen on " + s.options.host + ":" + port + ": port " +
                         port + " is already in use by another process");
    return Unavailable("server: cannot listen on " + s.options.host + ":" + port + ": " +
                       ec.message());
  }
  s.port = s.acceptor.local_endpoint().port();
  return Status::Ok();
}

int HttpServer::port() const { return impl_->port; }

bool HttpServer::tls() const { return impl_->CurrentTls() != nullptr; }

void HttpServer::Start() {
  Impl& s = *impl_;
  s.workers = std::make_unique<WorkerPool>(s.options.worker_threads);
  s.work.emplace(s.ioc.get_executor());
  net::dispatch(s.acceptor.get_executor(), [impl = impl_.get()] { impl->DoAccept(); });
  for (int i = 0; i < std::max(1, s.options.io_threads); ++i)
    s.io_threads.emplace_back([impl = impl_.get()] {
      for (;;) {
        try {
          impl->ioc.run();
          return;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "airlock serve: io error: %s\n", e.what());
        }
      }
    });
}

void HttpServer::StopAccepting() {
  Impl& s = *impl_;
  s.draining = true;
  net::post(s.acceptor.get_executor(), [impl = impl_.get()] {
    beast::error_code ec;
    impl->acceptor.close(ec);
    impl->accept_retry.cancel();
  });
  for (auto& session : s.LiveSessions()) session->PostCloseIfIdle();
}

int HttpServer::ActiveRequests() const { return impl_->active.load(); }

void HttpServer::CloseAll() {
  for (auto& session : impl_->LiveSessions()) session->PostClose();
}

void HttpServer::Stop() {
  Impl& s = *impl_;
  if (s.stopped) return;
  s.stopped = true;
  if (s.io_threads.empty()) {
    beast::error_code ec;
    s.acceptor.close(ec);
    return;
  }
  StopAccepting();
  CloseAll();
  if (s.workers) s.workers->Stop();  // handlers see their writes fail and return
  s.work.reset();
  s.ioc.stop();
  for (auto& t : s.io_threads)
    if (t.joinable()) t.join();
}

Status HttpServer::ReloadTls() {
  Impl& s = *impl_;
  if (s.options.tls_cert.empty()) return Status::Ok();
  AIRLOCK_ASSIGN_OR_RETURN(auto ctx, MakeTlsContext(s.options.tls_cert, s.options.tls_key));
  std::lock_guard<std::mutex> lock(s.tls_mu);
  s.tls = std::move(ctx);
  return Status::Ok();
}

HttpServerCounters HttpServer::Counters() const {
  HttpServerCounters c;
  {
    std::lock_guard<std::mutex> lock(impl_->conn_mu);
    c.open_connections = impl_->open;
  }
  c.refused_connections = impl_->refused_connections.load();
  c.timed_out_connections = impl_->timed_out.load();
  c.tls_handshake_failures = impl_->tls_failures.load();
  return c;
}

}  // namespace airlock::server::internal
