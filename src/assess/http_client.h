// A small HTTP/1.1 client for talking to endpoints that may be hostile: the model being assessed
// may be exactly the gray-market proxy an organization worries about, and the judge endpoint is
// no more trusted. One POST, one response, and hard limits on everything the peer controls:
//   - a wall-clock deadline covering name resolution, connect, send, headers and body (a slow
//     drip or a resolver that never answers is cut off);
//   - a cap on header bytes and on body bytes (a 300 MB body is cut off at the cap, never held);
//   - Content-Length, chunked or close-delimited bodies, strictly parsed (malformed is an error).
// Plain http only (TLS endpoints go through a local `airlock serve` upstream).
// Thread-safety: stateless; safe from many threads.
#pragma once

#include <netdb.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace airlock::assess {

struct HttpLimits {
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_header_bytes = 64 << 10;
  std::chrono::milliseconds deadline{60000};  // the whole exchange
  std::chrono::milliseconds connect_timeout{10000};
};

struct HttpResponse {
  int status = 0;
  std::string body;
  // Chunked replies: how many received bytes the chunked decoder examined, counted over the whole
  // reply (linear in its size however the peer splits it; tests bound it). 0 for other framings.
  std::size_t framing_bytes_examined = 0;
};

// Name resolution as getaddrinfo spells it. HttpPost resolves a host name on a helper thread and
// stops waiting at the deadline (getaddrinfo has no timeout); an address literal never reaches
// the resolver.
using Resolver = std::function<int(const std::string& host, const std::string& service,
                                   const addrinfo* hints, addrinfo** result)>;
// Replaces getaddrinfo for the calls that follow (tests: a resolver that never answers); an
// empty Resolver restores getaddrinfo.
void SetResolverForTesting(Resolver resolver);

// POSTs `body` to http://host:port/path. `host` is a name or an IP address (IPv6 without
// brackets). Errors: kUnavailable (cannot connect, connection reset before a full response),
// kDeadlineExceeded (the deadline ran out), kLimitExceeded (headers or body over their cap),
// kCorrupt (not an HTTP/1.x response, malformed chunked framing).
Result<HttpResponse> HttpPost(const std::string& host, int port, const std::string& path,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              const std::string& body, const HttpLimits& limits);

}  // namespace airlock::assess
