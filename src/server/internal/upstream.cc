#include "server/internal/upstream.h"

#include <arpa/inet.h>
#include <brotli/decode.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <zlib.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <cstdlib>
#include <limits>
#include <optional>
#include <thread>

#include "core/spki_pin.h"
#include "server/internal/gateway_impl.h"
#include "server/internal/http_common.h"
#include "server/internal/json_limits.h"
#include "server/internal/sse.h"

namespace airlock::server::internal {
namespace {

bool IsLoopbackAddress(const std::string& a) { return a == "::1" || a.rfind("127.", 0) == 0; }

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Replaces OpenSSL's chain verification for an upstream's clients
// (SSL_CTX_set_cert_verify_callback): records the leaf the peer presented, verifies the chain and
// host name as OpenSSL would, then applies the policy's pins, subject and organization to the
// verified chain. A refusal sets a verify error; UpstreamClient::Post checks the verify result
// right after the handshake and closes the connection before it writes any byte of the request.
int VerifyUpstreamPeer(X509_STORE_CTX* store, void* arg) {
  auto* client = static_cast<UpstreamClient*>(arg);
  const UpstreamEndpoint& ep = *client->endpoint;
  PeerIdentity& peer = client->peer;
  peer = PeerIdentity{};  // a new handshake: a new connection
  X509* leaf = X509_STORE_CTX_get0_cert(store);
  if (auto fp = core::CertificateSha256(leaf); fp.ok()) peer.cert_sha256 = *fp;
  if (auto pin = core::SpkiSha256Pin(leaf); pin.ok()) peer.spki_sha256 = *pin;
  auto refuse = [&](const char* check, std::string reason) {
    peer.refused_check = check;
    peer.refused_reason = std::move(reason);
    if (X509_STORE_CTX_get_error(store) == X509_V_OK)
      X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  };
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(store);
  if (IsIpLiteral(ep.host))
    X509_VERIFY_PARAM_set1_ip_asc(param, ep.host.c_str());
  else
    X509_VERIFY_PARAM_set1_host(param, ep.host.c_str(), ep.host.size());
  if (X509_verify_cert(store) != 1) {
    int err = X509_STORE_CTX_get_error(store);
    bool host = err == X509_V_ERR_HOSTNAME_MISMATCH || err == X509_V_ERR_IP_ADDRESS_MISMATCH;
    return refuse(host ? "host" : "chain",
                  std::string(host ? "its certificate is not for this host"
                                   : "its certificate chain does not verify") +
                      " (" + X509_verify_cert_error_string(err) + ")");
  }
  if (!ep.spki_pins.empty()) {
    STACK_OF(X509)* verified = X509_STORE_CTX_get0_chain(store);  // leaf to trust anchor
    std::vector<X509*> chain;
    for (int i = 0; verified != nullptr && i < sk_X509_num(verified); ++i)
      chain.push_back(sk_X509_value(verified, i));
    if (!core::ChainMatchesPins(chain, ep.spki_pins))
      return refuse("spki_sha256", "no key of its certificate chain matches the spki_sha256 pins");
  }
  if (!ep.subject.empty() && core::SubjectRfc2253(leaf) != ep.subject)
    return refuse("subject", "its certificate's subject is not the expected subject");
  if (!ep.organization.empty()) {
    auto orgs = core::SubjectOrganizations(leaf);
    if (std::find(orgs.begin(), orgs.end(), ep.organization) == orgs.end())
      return refuse("organization", "its certificate's organization is not the expected one");
  }
  return 1;
}

// An encrypted key is refused instead of prompting on the terminal (there is nobody to answer).
int NoPassphrase(char*, int, int, void*) { return 0; }

std::string OpenSslErrorText() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Loads what the clients will load, once at startup, so that a wrong path or a key that does not
// belong to its certificate is a clear error instead of a failure on every request.
Status CheckTlsFiles(const policy::Upstream& u) {
  if (!u.ca_file.empty()) {
    std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(),
                                                                  X509_STORE_free);
    if (!store || X509_STORE_load_file(store.get(), u.ca_file.c_str()) != 1 ||
        sk_X509_OBJECT_num(X509_STORE_get0_objects(store.get())) == 0)
      return InvalidArgument("server: upstream '" + u.name + "' ca_file '" + u.ca_file +
                             "' holds no readable PEM certificate (" + OpenSslErrorText() + ")");
  }
  if (!u.client_cert.empty()) {
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                          SSL_CTX_free);
    if (!ctx ||
        SSL_CTX_use_certificate_file(ctx.get(), u.client_cert.c_str(), SSL_FILETYPE_PEM) != 1)
      return InvalidArgument("server: upstream '" + u.name + "' client_cert '" + u.client_cert +
                             "' is not a readable PEM certificate (" + OpenSslErrorText() + ")");
    std::unique_ptr<BIO, decltype(&BIO_free)> key_file(BIO_new_file(u.client_key.c_str(), "r"),
                                                       BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        key_file ? PEM_read_bio_PrivateKey(key_file.get(), nullptr, &NoPassphrase, nullptr)
                 : nullptr,
        EVP_PKEY_free);
    if (!key)  // the key is a secret: its path is named, never its content or OpenSSL's dump
      return InvalidArgument("server: upstream '" + u.name + "' client_key '" + u.client_key +
                             "' is not a readable PEM private key");
    if (SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1)
      return InvalidArgument("server: upstream '" + u.name + "' client_key '" + u.client_key +
                             "' does not belong to client_cert '" + u.client_cert + "'");
  }
  ERR_clear_error();
  return Status::Ok();
}

// ---- The upstream HTTP/1.1 client (Boost.Beast) ----

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// How long opening a connection (TCP and TLS handshake) may take.
constexpr std::chrono::seconds kConnectTimeout(5);
// Bytes read from the socket at once; also the size of each body piece handed to the caller.
constexpr std::size_t kReadPiece = 16 * 1024;

// Decodes a response's Content-Encoding (gzip, deflate, br; identity passes through) piece by
// piece, handing out decoded bytes in bounded pieces so that a compression bomb never sits in
// memory whole (the caller's own bound stops it).
class BodyDecoder {
 public:
  enum class Coding { kIdentity, kZlib, kBrotli };
  ~BodyDecoder() {
    if (zlib_ready_) inflateEnd(&zlib_);
    if (brotli_ != nullptr) BrotliDecoderDestroyInstance(brotli_);
  }
  // False for a coding it does not know (or a list of several).
  bool Start(std::string_view content_encoding) {
    std::string c;
    for (char ch : content_encoding)
      if (ch != ' ' && ch != '\t') c.push_back(static_cast<char>(std::tolower(ch)));
    if (c.empty() || c == "identity") return true;
    if (c == "gzip" || c == "x-gzip" || c == "deflate") {
      coding_ = Coding::kZlib;
      // 15 + 32: a zlib or gzip wrapper, detected from its header.
      zlib_ready_ = inflateInit2(&zlib_, 15 + 32) == Z_OK;
      return zlib_ready_;
    }
    if (c == "br") {
      coding_ = Coding::kBrotli;
      brotli_ = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
      return brotli_ != nullptr;
    }
    return false;
  }
  enum class Fed { kOk, kStopped, kCorrupt };
  Fed Feed(const char* data, std::size_t size, const UpstreamClient::OnBody& out) {
    if (size == 0) return Fed::kOk;
    if (coding_ == Coding::kIdentity) return out(data, size) ? Fed::kOk : Fed::kStopped;
    char buf[kReadPiece];
    if (coding_ == Coding::kZlib) {
      if (zlib_done_) return Fed::kOk;  // bytes after the end of the stream are ignored
      zlib_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
      zlib_.avail_in = static_cast<uInt>(size);
      while (zlib_.avail_in > 0 && !zlib_done_) {
        zlib_.next_out = reinterpret_cast<Bytef*>(buf);
        zlib_.avail_out = sizeof buf;
        int rc = inflate(&zlib_, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return Fed::kCorrupt;
        std::size_t n = sizeof buf - zlib_.avail_out;
        if (n > 0 && !out(buf, n)) return Fed::kStopped;
        if (rc == Z_STREAM_END) zlib_done_ = true;
        if (rc == Z_BUF_ERROR && n == 0) break;
      }
      return Fed::kOk;
    }
    const auto* in = reinterpret_cast<const std::uint8_t*>(data);
    std::size_t in_left = size;
    for (;;) {
      auto* next_out = reinterpret_cast<std::uint8_t*>(buf);
      std::size_t out_left = sizeof buf;
      BrotliDecoderResult rc =
          BrotliDecoderDecompressStream(brotli_, &in_left, &in, &out_left, &next_out, nullptr);
      if (rc == BROTLI_DECODER_RESULT_ERROR) return Fed::kCorrupt;
      std::size_t n = sizeof buf - out_left;
      if (n > 0 && !out(buf, n)) return Fed::kStopped;
      if (rc != BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) return Fed::kOk;
    }
  }

 private:
  Coding coding_ = Coding::kIdentity;
  z_stream zlib_{};
  bool zlib_ready_ = false;
  bool zlib_done_ = false;
  BrotliDecoderState* brotli_ = nullptr;
};

std::string EncodingOf(const http::response_header<>& head) {
  auto v = head[http::field::content_encoding];
  return std::string(v.data(), v.size());
}

bool IsHttpError(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::header_limit).category();
}

bool HasLineBreak(const std::string& s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos;
}

}  // namespace

std::string FailureText(UpstreamFailure f) {
  switch (f) {
    case UpstreamFailure::kNone:
      return "Success";
    case UpstreamFailure::kConnect:
      return "Could not establish connection";
    case UpstreamFailure::kConnectTimeout:
      return "Connection timed out";
    case UpstreamFailure::kTls:
      return "TLS handshake failed";
    case UpstreamFailure::kWrite:
      return "Failed to write connection";
    case UpstreamFailure::kRead:
      return "Failed to read connection";
    case UpstreamFailure::kReadTimeout:
      return "Read timed out";
    case UpstreamFailure::kHeaderTooLarge:
      return "its response header section is larger than " +
             std::to_string(kMaxUpstreamHeaderBytes / 1024) + " KiB";
    case UpstreamFailure::kMalformed:
      return "Malformed HTTP response";
    case UpstreamFailure::kEncoding:
      return "Unsupported or corrupt Content-Encoding";
    case UpstreamFailure::kCanceled:
      return "Canceled";
    case UpstreamFailure::kSetup:
      return "Cannot set up the TLS client";
  }
  return "Unknown";
}

// The Asio state of a client: its own io_context, run by the thread that calls Post (one
// operation at a time, each with a deadline on the tcp_stream), the TLS context and the open
// connection with the bytes read past the last response.
struct UpstreamClient::Impl {
  asio::io_context io;
  std::optional<asio::ssl::context> tls_context;
  bool ready = false;
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer{1u << 20};

  bool open() const { return plain != nullptr || tls != nullptr; }
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  void Close() {
    if (open()) {
      beast::error_code ignored;
      lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
      lowest().socket().close(ignored);
    }
    tls.reset();
    plain.reset();
    buffer.clear();
  }
  // Runs one asynchronous operation to its end (or its stream's deadline) on this thread.
  template <class Start>
  beast::error_code Run(Start&& start) {
    beast::error_code result = asio::error::operation_aborted;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    io.restart();
    io.run();
    return result;
  }
  // Whether an idle connection is still usable: the peer has not closed it and sent nothing
  // unasked (either makes the socket readable).
  bool StillUsable() {
    pollfd p{lowest().socket().native_handle(), POLLIN, 0};
    return buffer.size() == 0 && ::poll(&p, 1, 0) == 0;
  }
  template <class Stream>
  UpstreamFailure Exchange(Stream& stream, const std::string& request, const OnStatus& on_status,
                           const OnBody& on_body, int timeout_s, bool* nothing_read);
};

UpstreamClient::UpstreamClient(const UpstreamEndpoint* ep)
    : endpoint(ep), impl_(std::make_unique<Impl>()) {
  if (!ep->https) {
    impl_->ready = true;
    return;
  }
  asio::ssl::context& ctx = impl_->tls_context.emplace(asio::ssl::context::tls_client);
  SSL_CTX* native = ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // No session resumption: every new connection runs the verification below, so the peer
  // recorded for a client is always the one of its current connection.
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(native, SSL_OP_NO_TICKET);
  beast::error_code ec;
  if (!ep->ca_file.empty())
    ctx.load_verify_file(ep->ca_file, ec);
  else
    ctx.set_default_verify_paths(ec);
  if (ec) return;
  if (!ep->client_cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(native, ep->client_cert.c_str()) != 1) return;
    std::unique_ptr<BIO, decltype(&BIO_free)> key_file(BIO_new_file(ep->client_key.c_str(), "r"),
                                                       BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        key_file ? PEM_read_bio_PrivateKey(key_file.get(), nullptr, &NoPassphrase, nullptr)
                 : nullptr,
        EVP_PKEY_free);
    if (!key || SSL_CTX_use_PrivateKey(native, key.get()) != 1 ||
        SSL_CTX_check_private_key(native) != 1)
      return;
  }
  ERR_clear_error();
  // The handshake completes and its verification result is checked before the first write (as
  // the earlier client did): the refused peer sees a handshake, then the connection close.
  SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_cert_verify_callback(native, &VerifyUpstreamPeer, this);
  impl_->ready = true;
}

UpstreamClient::~UpstreamClient() {
  if (impl_) impl_->Close();
}

bool UpstreamClient::Ready() const { return impl_->ready; }

template <class Stream>
UpstreamFailure UpstreamClient::Impl::Exchange(Stream& stream, const std::string& request,
                                               const OnStatus& on_status, const OnBody& on_body,
                                               int timeout_s, bool* nothing_read) {
  const auto timeout = std::chrono::seconds(timeout_s);
  auto timed_out = [](const beast::error_code& ec) { return ec == beast::error::timeout; };
  lowest().expires_after(timeout);
  beast::error_code ec = Run(
      [&](auto handler) { asio::async_write(stream, asio::buffer(request), std::move(handler)); });
  if (ec) return timed_out(ec) ? UpstreamFailure::kReadTimeout : UpstreamFailure::kWrite;

  http::response_parser<http::buffer_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(kMaxUpstreamHeaderBytes));
  parser.body_limit(
      std::numeric_limits<std::uint64_t>::max());  // the caller bounds the body it keeps
  lowest().expires_after(timeout);
  ec = Run(
      [&](auto handler) { http::async_read_header(stream, buffer, parser, std::move(handler)); });
  if (ec) {
    if (ec == http::error::header_limit) return UpstreamFailure::kHeaderTooLarge;
    if (timed_out(ec)) return UpstreamFailure::kReadTimeout;
    *nothing_read =
        !parser.got_some() &&
        (ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::ssl::error::stream_truncated);
    if (IsHttpError(ec) && ec != http::error::end_of_stream && ec != http::error::partial_message)
      return UpstreamFailure::kMalformed;
    return UpstreamFailure::kRead;
  }
  *nothing_read = false;
  BodyDecoder decoder;
  if (!decoder.Start(EncodingOf(parser.get()))) return UpstreamFailure::kEncoding;
  if (!on_status(parser.get().result_int())) return UpstreamFailure::kCanceled;
  char piece[kReadPiece];
  while (!parser.is_done()) {
    parser.get().body().data = piece;
    parser.get().body().size = sizeof piece;
    lowest().expires_after(timeout);
    ec = Run(
        [&](auto handler) { http::async_read_some(stream, buffer, parser, std::move(handler)); });
    if (ec == http::error::need_buffer) ec = {};
    std::size_t n = sizeof piece - parser.get().body().size;
    switch (decoder.Feed(piece, n, on_body)) {
      case BodyDecoder::Fed::kOk:
        break;
      case BodyDecoder::Fed::kStopped:
        return UpstreamFailure::kCanceled;
      case BodyDecoder::Fed::kCorrupt:
        return UpstreamFailure::kEncoding;
    }
    // A TLS peer whose body ends with the connection may close it without close_notify; the
    // body is then complete (nothing says how long it is), as over plain TCP.
    if (ec == asio::ssl::error::stream_truncated && !parser.chunked() && !parser.content_length()) {
      ec = {};
      parser.put_eof(ec);
      if (!ec) break;
    }
    if (ec) {
      if (timed_out(ec)) return UpstreamFailure::kReadTimeout;
      return IsHttpError(ec) && ec != http::error::partial_message ? UpstreamFailure::kMalformed
                                                                   : UpstreamFailure::kRead;
    }
  }
  // Kept for the next request only when the upstream allows it and sent nothing more.
  if (!parser.keep_alive() || buffer.size() != 0) Close();
  return UpstreamFailure::kNone;
}

UpstreamFailure UpstreamClient::Post(const std::string& path, const Headers& headers,
                                     const std::string& body, const OnStatus& on_status,
                                     const OnBody& on_body) {
  if (!impl_->ready) return UpstreamFailure::kSetup;
  const UpstreamEndpoint& ep = *endpoint;
  bool v6 = ep.host.find(':') != std::string::npos;
  std::string host = v6 ? "[" + ep.host + "]" : ep.host;
  if (ep.port != (ep.https ? 443 : 80)) host += ":" + std::to_string(ep.port);
  std::string request = "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\n";
  bool has_accept = false;
  for (const auto& [name, value] : headers) {
    // A line break would let a value add headers or requests of its own.
    if (HasLineBreak(name) || HasLineBreak(value)) return UpstreamFailure::kWrite;
    has_accept = has_accept || EqualsIgnoreCase(name, "Accept");
    request += name + ": " + value + "\r\n";
  }
  if (!has_accept) request += "Accept: */*\r\n";
  request += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n\r\n";
  request += body;

  Impl& s = *impl_;
  // A kept connection the upstream closed meanwhile fails at once; the request is then sent on a
  // new connection, once (the upstream saw nothing of it).
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = s.open();
    if (reused && !s.StillUsable()) {
      s.Close();
      reused = false;
    }
    if (!s.open()) {
      peer = PeerIdentity{};  // a new connection: its handshake says who answers
      beast::error_code ec;
      tcp::resolver resolver(s.io);
      auto addresses = resolver.resolve(ep.host, std::to_string(ep.port), ec);
      if (ec) return UpstreamFailure::kConnect;
      auto stream = std::make_unique<beast::tcp_stream>(s.io);
      stream->expires_after(kConnectTimeout);
      ec = s.Run([&](auto handler) { stream->async_connect(addresses, std::move(handler)); });
      if (ec)
        return ec == beast::error::timeout ? UpstreamFailure::kConnectTimeout
                                           : UpstreamFailure::kConnect;
      // Headers and body are one write, but small answers still should not wait on Nagle.
      stream->socket().set_option(tcp::no_delay(true), ec);
      if (!ep.https) {
        s.plain = std::move(stream);
      } else {
        auto tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*stream),
                                                                          *s.tls_context);
        if (!IsIpLiteral(ep.host)) SSL_set_tlsext_host_name(tls->native_handle(), ep.host.c_str());
        beast::get_lowest_layer(*tls).expires_after(kConnectTimeout);
        ec = s.Run([&](auto handler) {
          tls->async_handshake(asio::ssl::stream_base::client, std::move(handler));
        });
        ERR_clear_error();
        if (ec) {
          beast::get_lowest_layer(*tls).socket().close(ec);
          return ec == beast::error::timeout && peer.refused_check.empty()
                     ? UpstreamFailure::kConnectTimeout
                     : UpstreamFailure::kTls;
        }
        // Any failed check of VerifyUpstreamPeer leaves a verify error; a peer without a
        // certificate never ran it. Either way nothing is written to it.
        if (SSL_get_verify_result(tls->native_handle()) != X509_V_OK ||
            SSL_get0_peer_certificate(tls->native_handle()) == nullptr) {
          if (peer.refused_check.empty()) {
            peer.refused_check = "chain";
            peer.refused_reason = "it presented no verifiable certificate";
          }
          beast::get_lowest_layer(*tls).socket().close(ec);
          return UpstreamFailure::kTls;
        }
        s.tls = std::move(tls);
      }
    }
    bool nothing_read = false;
    UpstreamFailure f =
        s.tls ? s.Exchange(*s.tls, request, on_status, on_body, ep.timeout_s, &nothing_read)
              : s.Exchange(*s.plain, request, on_status, on_body, ep.timeout_s, &nothing_read);
    if (f == UpstreamFailure::kNone) return f;
    s.Close();
    bool retry =
        reused && (f == UpstreamFailure::kWrite || (f == UpstreamFailure::kRead && nothing_read));
    if (!retry) return f;
  }
  return UpstreamFailure::kRead;
}

namespace {}  // namespace

ClientPool::ClientPool(UpstreamEndpoint e) : endpoint_(std::move(e)) {}
ClientPool::~ClientPool() = default;

std::unique_ptr<UpstreamClient> ClientPool::Acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  auto c = std::make_unique<UpstreamClient>(&endpoint_);
  if (!c->Ready()) return nullptr;
  return c;
}

void ClientPool::Release(std::unique_ptr<UpstreamClient> c) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < 64) idle_.push_back(std::move(c));
}

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
  e.https = url->scheme == "https";
  AIRLOCK_TRY(CheckTlsFiles(u));
  e.ca_file = u.ca_file;
  e.spki_pins = u.spki_sha256;
  e.subject = u.subject;
  e.organization = u.organization;
  e.client_cert = u.client_cert;
  e.client_key = u.client_key;
  return e;
}

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

}  // namespace airlock::server::internal

namespace airlock::server {

using namespace internal;

void Gateway::Impl::ForwardUpstream(std::shared_ptr<RequestState> st, json body, bool stream,
                                    const policy::Upstream& upstream, HttpResponse& res) {
  std::shared_ptr<ClientPool> pool = pools.at(upstream.name);
  st->forwarded = true;
  const UpstreamEndpoint& ep = pool->endpoint();
  std::string path = ep.path_prefix + (st->chat ? "/chat/completions" : "/completions");
  UpstreamClient::Headers headers;
  if (!ep.api_key.empty()) headers.emplace_back("Authorization", "Bearer " + ep.api_key);
  headers.emplace_back(
      kHopHeader, st->incoming_hops.empty() ? instance_id : st->incoming_hops + "," + instance_id);
  if (stream) body["stream_options"] = {{"include_usage", true}};
  std::string payload = DumpJson(body);
  // The peer of the connection a request used goes into its audit record: when it answered, and
  // when it was refused for its identity (the evidence of who was at the other end).
  auto note_peer = [&](const PeerIdentity& peer, bool answered) {
    if (!answered && peer.refused_check.empty()) return;
    st->upstream_cert_sha256 = peer.cert_sha256;
    st->upstream_spki_sha256 = peer.spki_sha256;
  };
  auto refuse_identity = [&](const PeerIdentity& peer) {
    metrics.UpstreamIdentityFailure(upstream.name, peer.refused_check);
    st->actions.push_back("upstream_identity_refused: " + peer.refused_check + ": " +
                          peer.refused_reason);
    Fail(*st, res, 502,
         "Upstream '" + upstream.name + "' refused: " + peer.refused_reason + " (" +
             peer.refused_check + " check of the policy). Nothing was sent to it.",
         "upstream_identity_mismatch");
  };
  auto error_for = [&](UpstreamFailure e) {
    if (e == UpstreamFailure::kHeaderTooLarge)
      return Fail(*st, res, 502,
                  "Upstream '" + upstream.name + "' failed: " + FailureText(e) +
                      " (the answer was refused).",
                  "upstream_error");
    bool timeout = e == UpstreamFailure::kConnectTimeout || e == UpstreamFailure::kReadTimeout;
    int status = timeout ? 504 : 502;
    Fail(*st, res, status,
         "Upstream '" + upstream.name + "' " + (timeout ? "timed out" : "failed") + " (" +
             FailureText(e) + ").",
         timeout ? "upstream_timeout" : "upstream_error");
  };

  if (!stream) {
    auto client = pool->Acquire();
    if (!client)
      return Fail(*st, res, 502, "Upstream '" + upstream.name + "': cannot set up a TLS client.",
                  "upstream_error");
    // The body is collected here, so that its size is bounded.
    std::string received;
    int status = 0;
    bool too_large = false;
    // An upstream trickling its answer (each read within the read timeout) is cut off at the
    // request's overall deadline.
    const Clock::time_point deadline =
        st->start + std::chrono::seconds(policy().server.request_timeout_s);
    bool past_deadline = false;
    auto on_status = [&](int s) {
      status = s;
      return true;
    };
    auto on_body = [&](const char* d, std::size_t n) {
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
    UpstreamFailure err = client->Post(path, headers, payload, on_status, on_body);
    bool ok = err == UpstreamFailure::kNone;
    note_peer(client->peer, status != 0);
    if (!ok && !client->peer.refused_check.empty()) return refuse_identity(client->peer);
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
    if (status != 200)
      return Fail(*st, res, 502,
                  "Upstream '" + upstream.name + "' returned HTTP " + std::to_string(status) +
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
  // Written by the producer before it sets the channel's status or finishes it, read here after
  // WaitHeaders (the channel's mutex orders the two).
  auto peer = std::make_shared<PeerIdentity>();
  auto answered = std::make_shared<bool>(false);
  std::thread([pool, ch, path, headers, payload, peer, answered]() {
    auto client = pool->Acquire();
    if (!client) return ch->Finish(static_cast<int>(UpstreamFailure::kSetup));
    UpstreamClient::Headers stream_headers = headers;
    stream_headers.emplace_back("Accept", "text/event-stream");
    bool status_seen = false;
    auto on_status = [&](int status) {
      *peer = client->peer;
      *answered = true;
      status_seen = true;
      ch->SetStatus(status);
      return !ch->cancel.load();
    };
    auto on_body = [&](const char* d, std::size_t n) { return ch->Push(d, n); };
    UpstreamFailure err = client->Post(path, stream_headers, payload, on_status, on_body);
    if (!status_seen) *peer = client->peer;  // the handler thread is still in WaitHeaders
    if (err == UpstreamFailure::kNone) pool->Release(std::move(client));
    ch->Finish(static_cast<int>(err));
  }).detach();
  ch->WaitHeaders();
  int status;
  {
    std::lock_guard<std::mutex> lock(ch->mu);
    status = ch->status;
  }
  note_peer(*peer, *answered);
  if (status == 0) {  // no response at all
    if (!peer->refused_check.empty()) return refuse_identity(*peer);
    UpstreamFailure e;
    {
      std::lock_guard<std::mutex> lock(ch->mu);
      e = static_cast<UpstreamFailure>(ch->error);
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

}  // namespace airlock::server
