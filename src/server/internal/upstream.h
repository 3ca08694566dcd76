// The gateway's client side toward configured upstreams: endpoints parsed from the policy's
// base_url, pooled keep-alive HTTP/1.1 clients (Boost.Beast, driven synchronously by the calling
// thread), the relayed error detail of a failed upstream and the check that an upstream is not the
// gateway itself.
// Untrusted answers: an upstream's response header section is bounded (kMaxUpstreamHeaderBytes; a
// larger one fails the exchange, it is never buffered whole), its body reaches the caller in
// pieces (the caller bounds it), chunked transfer coding and gzip/deflate/br content codings are
// decoded, and every connect, write and read has the upstream's timeout.
// Upstream identity: every https client checks its peer during the TLS handshake (CA chain and
// host name, then the policy's spki_sha256 pins, subject and organization) and records the leaf
// certificate that answered; a peer that fails is refused before any byte of a request is
// written (the verification result is checked right after the handshake).
// Thread-safety: ClientPool is thread-safe; an UpstreamClient is used by one thread at a time;
// the functions are pure (name resolution aside).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "policy/detectors.h"
#include "policy/policy.h"

namespace airlock::server::internal {

struct UpstreamEndpoint {
  std::string scheme_host_port;  // "http://127.0.0.1:9000"
  std::string host;              // "127.0.0.1"
  int port = 0;
  std::string path_prefix;  // "/v1"
  std::string api_key;      // from the environment; never logged
  int timeout_s = 60;
  bool https = false;
  // Identity of an https peer (policy::Upstream): all optional, each one set must hold.
  std::string ca_file;
  std::vector<std::string> spki_pins;
  std::string subject;
  std::string organization;
  std::string client_cert;  // mTLS, PEM paths (checked to load and match at startup)
  std::string client_key;
};

// What the last TLS handshake of a client established. A client holds at most one connection and
// reuses it (keep-alive) without a new handshake, so this is the peer of the connection the
// client's last exchange used.
struct PeerIdentity {
  std::string cert_sha256;  // leaf certificate's SHA-256 (hex of its DER); "": no handshake yet
  std::string spki_sha256;  // the leaf key's RFC 7469 pin
  // Set when the peer was refused for its identity: which check ("chain", "host", "spki_sha256",
  // "subject", "organization") and why, in words without secrets.
  std::string refused_check;
  std::string refused_reason;
};

// The largest response header section (status line and fields) read from an upstream.
inline constexpr std::size_t kMaxUpstreamHeaderBytes = 64 * 1024;

// Why an exchange with an upstream failed (kNone: it completed).
enum class UpstreamFailure {
  kNone = 0,
  kConnect,         // the connection could not be opened
  kConnectTimeout,  // nor within the connect timeout
  kTls,             // the TLS handshake failed (see PeerIdentity::refused_check for identity)
  kWrite,           // the request could not be sent
  kRead,            // the connection failed or closed while the answer was read
  kReadTimeout,     // no byte of the answer within the upstream's timeout
  kHeaderTooLarge,  // a response header section past kMaxUpstreamHeaderBytes
  kMalformed,       // not an HTTP/1.x response (or a broken chunked body)
  kEncoding,        // a Content-Encoding it cannot decode, or a corrupt compressed body
  kCanceled,        // the caller's callback stopped the exchange
  kSetup,           // the TLS client could not be set up (certificates)
};
// Words for a failure, without secrets ("Could not connect", ...).
std::string FailureText(UpstreamFailure f);

// A pooled client: at most one keep-alive connection to its endpoint and, for https, what its
// handshakes saw (written by the certificate verification callback, in the thread that uses it).
class UpstreamClient {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;
  // Called once the status line and headers are read; false stops the exchange (kCanceled).
  using OnStatus = std::function<bool(int status)>;
  // Called with each piece of the decoded body; false stops the exchange (kCanceled).
  using OnBody = std::function<bool(const char* data, std::size_t size)>;

  explicit UpstreamClient(const UpstreamEndpoint* endpoint);
  ~UpstreamClient();
  UpstreamClient(const UpstreamClient&) = delete;
  UpstreamClient& operator=(const UpstreamClient&) = delete;

  // False when OpenSSL cannot set up the TLS context (client certificate): fail closed.
  bool Ready() const;

  // POSTs `body` (Content-Type application/json) to `path` with `headers` (Host, Content-Length
  // and the rest are added), reusing the open connection when there is one. The connection is
  // kept only when the exchange completed and the upstream allows keep-alive.
  UpstreamFailure Post(const std::string& path, const Headers& headers, const std::string& body,
                       const OnStatus& on_status, const OnBody& on_body);

  const UpstreamEndpoint* endpoint = nullptr;
  PeerIdentity peer;

 private:
  struct Impl;  // Asio/Beast state: the TLS context and the open connection
  std::unique_ptr<Impl> impl_;
};

class ClientPool {
 public:
  explicit ClientPool(UpstreamEndpoint e);
  ~ClientPool();
  // An idle keep-alive client, or a new one (timeouts and TLS identity checks from the endpoint);
  // nullptr when OpenSSL cannot set one up (fail closed).
  std::unique_ptr<UpstreamClient> Acquire();
  // Returns a client that completed its exchange (kept while fewer than 64 are idle).
  void Release(std::unique_ptr<UpstreamClient> c);
  const UpstreamEndpoint& endpoint() const { return endpoint_; }

 private:
  UpstreamEndpoint endpoint_;
  std::mutex mu_;
  std::vector<std::unique_ptr<UpstreamClient>> idle_;
};

// The endpoint of a policy upstream (base_url validated; API key read from the environment).
// Errors (kInvalidArgument, naming the upstream and file): a ca_file without a certificate, a
// client_cert/client_key that does not load or whose key does not match the certificate.
Result<UpstreamEndpoint> EndpointFor(const policy::Upstream& u);

// ": <message>" from an upstream's OpenAI-shaped error body, or "" (bounded parse, 300 bytes).
// The text comes from the upstream, so it is scanned like an answer: with any finding the detail
// is withheld (it cannot be told apart from an echo of the request).
std::string UpstreamErrorDetail(std::string_view body, const policy::DetectorSet& detectors);

// Addresses of `host` (numeric or a name from the policy), for the self-reference check.
std::vector<std::string> ResolveAddresses(const std::string& host);

// Whether a connection to `address` on the listening port reaches this gateway.
bool ReachesListener(const std::string& address, const std::string& listen_host);

}  // namespace airlock::server::internal
