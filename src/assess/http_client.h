// A small HTTP/1.1 client for talking to endpoints that may be hostile: the model being assessed
// may be exactly the gray-market proxy an organization worries about, and the judge endpoint is
// no more trusted. One POST, one response, and hard limits on everything the peer controls:
//   - a wall-clock deadline covering connect, send, headers and body (a slow drip is cut off);
//   - a cap on header bytes and on body bytes (a 300 MB body is cut off at the cap, never held);
//   - Content-Length, chunked or close-delimited bodies, strictly parsed (malformed is an error).
// Plain http only (TLS endpoints go through a local `airlock serve` upstream).
// Thread-safety: stateless; safe from many threads.
#pragma once

#include <chrono>
#include <cstddef>
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
};

// POSTs `body` to http://host:port/path. `host` is a name or an IP address (IPv6 without
// brackets). Errors: kUnavailable (cannot connect, connection reset before a full response),
// kDeadlineExceeded (the deadline ran out), kLimitExceeded (headers or body over their cap),
// kCorrupt (not an HTTP/1.x response, malformed chunked framing).
Result<HttpResponse> HttpPost(const std::string& host, int port, const std::string& path,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              const std::string& body, const HttpLimits& limits);

}  // namespace airlock::assess
