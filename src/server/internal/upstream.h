// The gateway's client side toward configured upstreams: endpoints parsed from the policy's
// base_url, pooled keep-alive cpp-httplib clients, the relayed error detail of a failed upstream
// and the check that an upstream is not the gateway itself.
// Thread-safety: ClientPool is thread-safe; the functions are pure (name resolution aside).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "policy/detectors.h"
#include "policy/policy.h"

namespace httplib {
class Client;
}

namespace airlock::server::internal {

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
  explicit ClientPool(UpstreamEndpoint e);
  ~ClientPool();
  // An idle keep-alive client, or a new one (timeouts from the endpoint).
  std::unique_ptr<httplib::Client> Acquire();
  // Returns a client that completed its exchange (kept while fewer than 64 are idle).
  void Release(std::unique_ptr<httplib::Client> c);
  const UpstreamEndpoint& endpoint() const { return endpoint_; }

 private:
  UpstreamEndpoint endpoint_;
  std::mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_;
};

// The endpoint of a policy upstream (base_url validated; API key read from the environment).
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
