// The request and response the gateway's handlers see, independent of the HTTP server that reads
// and writes them (internal/http_server.cc). The accessors mirror the names the handlers used with
// cpp-httplib, so the handlers read the same either way.
// Thread-safety: plain values; a response's provider runs on one worker thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace airlock::server::internal {

struct HttpRequest {
  std::string method;
  std::string target;  // as sent: path and query
  std::string path;    // without the query
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote_addr;
  // The client's address bucket (internal/client_limits.h): what per-client caps count.
  std::string client_bucket;

  // The i-th value of header `name` (case-insensitive), or "".
  std::string get_header_value(std::string_view name, std::size_t i = 0) const;
  std::size_t get_header_value_count(std::string_view name) const;
  bool has_header(std::string_view name) const { return get_header_value_count(name) > 0; }
};

// Where a streaming response's provider writes. `write` blocks while more than a bounded number
// of bytes wait for the client (backpressure) and returns false once the connection failed or was
// closed; `done` ends the response.
struct DataSink {
  std::function<bool(const char* data, std::size_t size)> write;
  std::function<void()> done;
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type;

  // Streaming (chunked) body: `provider` is called on the worker thread until it returns false
  // or calls sink.done(); `releaser(success)` runs once afterwards, whatever happened.
  std::function<bool(std::size_t offset, DataSink& sink)> provider;
  std::function<void(bool success)> releaser;

  void set_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
  }
  void set_content(std::string content, std::string type) {
    body = std::move(content);
    content_type = std::move(type);
  }
  void set_chunked_content_provider(std::string type, std::function<bool(std::size_t, DataSink&)> p,
                                    std::function<void(bool)> r) {
    content_type = std::move(type);
    provider = std::move(p);
    releaser = std::move(r);
  }
};

// "a.b" == "A.B", ASCII only (header names).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace airlock::server::internal
