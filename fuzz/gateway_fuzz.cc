// Gateway request-path fuzz target: every input becomes HTTP traffic through a real in-process
// Gateway on loopback (body in, response out), with an in-process upstream on loopback and a
// local echo model behind it. The first byte picks what the rest of the input is:
//   0: the body of POST /v1/chat/completions     1: the body of POST /v1/completions
//   2: the upstream's answer to a valid request  3: the upstream's SSE stream to a valid request
//   4: the body of POST /v1/chat/completions with the bearer token taken from its first line
// The gateway must answer every request with an OpenAI-shaped status (never crash, hang or 5xx
// other than the upstream codes) and stay up.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <httplib.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "policy/policy.h"
#include "server/gateway.h"
#include "server/model_backend.h"

namespace {

// Local model: echoes the last message in three-byte pieces after a reasoning block.
class EchoBackend : public airlock::server::ModelBackend {
 public:
  std::string Name() const override { return "loc"; }
  std::int64_t CountTokens(std::string_view text) const override {
    return static_cast<std::int64_t>(text.size() / 4 + 1);
  }
  airlock::Result<airlock::server::GenerateResult> Generate(
      const airlock::server::GenerateRequest& request,
      const std::function<bool(std::string_view)>& on_text,
      const std::atomic<bool>& cancel) override {
    std::string last = request.messages.empty() ? request.prompt : request.messages.back().content;
    airlock::server::GenerateResult r;
    std::string all = "<think>hm</think>" + last;
    for (std::size_t i = 0;
         i < all.size() && static_cast<int>(r.completion_tokens) < request.max_tokens; i += 3) {
      if (cancel || !on_text(std::string_view(all).substr(i, 3))) break;
      r.completion_tokens++;
    }
    r.prompt_tokens = CountTokens(last);
    return r;
  }
};

struct World {
  httplib::Server upstream;
  std::thread upstream_thread;
  std::mutex mu;
  std::string upstream_body;  // what the upstream answers next
  bool upstream_sse = false;
  std::unique_ptr<airlock::server::Gateway> gateway;
  int port = 0;
};

World* Setup() {
  auto* w = new World();  // lives for the whole process (reachable: not a leak)
  char tmpl[] = "/tmp/airlock-gateway-fuzz-XXXXXX";
  if (!mkdtemp(tmpl)) std::abort();
  std::string dir = tmpl;
  auto answer = [w](const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(w->mu);
    if (w->upstream_sse) {
      std::string body = w->upstream_body;
      res.set_chunked_content_provider("text/event-stream",
                                       [body](std::size_t, httplib::DataSink& sink) {
                                         // Two writes, so an event can straddle chunks.
                                         std::size_t half = body.size() / 2;
                                         sink.write(body.data(), half);
                                         sink.write(body.data() + half, body.size() - half);
                                         sink.done();
                                         return true;
                                       });
    } else {
      res.set_content(w->upstream_body, "application/json");
    }
  };
  w->upstream.Post("/v1/chat/completions", answer);
  w->upstream.Post("/v1/completions", answer);
  int up_port = w->upstream.bind_to_any_port("127.0.0.1");
  if (up_port <= 0) std::abort();
  w->upstream_thread = std::thread([w] { w->upstream.listen_after_bind(); });

  std::string toml =
      "[[upstreams]]\nname='up'\nbase_url='http://127.0.0.1:" + std::to_string(up_port) +
      "/v1'\njurisdiction='US'\nmodels=['fz']\ntimeout_s=5\n"
      "allowed_data_classes=['ip_address']\n"
      "[[local_models]]\nname='loc'\npath='loc.gguf'\n"
      "[[rules]]\ndata_classes=['secret']\naction='redact'\n"
      "[[rules]]\ndata_classes=['cn_resident_id']\naction='block'\n"
      "[[rules]]\ndata_classes=['email']\naction='pseudonymize'\n"
      "[reasoning]\naction='log'\n"
      "[audit]\npath='" +
      dir + "/audit.db'\n[server]\nkeys_db='" + dir +
      "/keys.db'\nmax_body_bytes=1048576\nthreads=4\ndefault_max_tokens=64\n";
  auto policy = airlock::policy::ParsePolicy(toml);
  if (!policy.ok()) {
    std::fprintf(stderr, "policy: %s\n", policy.error().message().c_str());
    std::abort();
  }
  airlock::server::GatewayOptions options;
  options.port = 0;
  options.policy = *policy;
  options.local_backends["loc"] = std::make_shared<EchoBackend>();
  auto gw = airlock::server::Gateway::Create(options);
  if (!gw.ok() || !(*gw)->Start().ok()) std::abort();
  w->port = (*gw)->port();
  w->gateway = std::move(*gw);
  return w;
}

bool KnownStatus(int status) {
  switch (status) {
    case 200:
    case 400:
    case 401:
    case 403:
    case 404:
    case 413:
    case 429:
    case 502:
    case 503:
    case 504:
      return true;
    default:
      return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World* world = Setup();
  if (size == 0) return 0;
  int mode = data[0] % 5;
  std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  httplib::Client client("127.0.0.1", world->port);
  client.set_read_timeout(8, 0);
  client.set_connection_timeout(2, 0);
  httplib::Headers headers;
  std::string path = mode == 1 ? "/v1/completions" : "/v1/chat/completions";
  std::string body = rest;
  if (mode == 2 || mode == 3) {
    std::lock_guard<std::mutex> lock(world->mu);
    world->upstream_body = rest;
    world->upstream_sse = mode == 3;
    body = std::string(R"({"model":"fz","stream":)") + (mode == 3 ? "true" : "false") +
           R"(,"messages":[{"role":"user","content":"mail eve@example.com"}]})";
  } else if (mode == 4) {
    std::size_t nl = rest.find('\n');
    std::string token = rest.substr(0, nl);
    for (char& c : token)
      if (c == '\r' || c == '\0') c = ' ';
    headers.emplace("Authorization", "Bearer " + token);
    body = nl == std::string::npos ? "" : rest.substr(nl + 1);
  }
  auto r = client.Post(path, headers, body, "application/json");
  if (!r) {
    std::fprintf(stderr, "gateway gave no answer: %s\n", httplib::to_string(r.error()).c_str());
    std::abort();
  }
  if (!KnownStatus(r->status)) {
    std::fprintf(stderr, "unexpected status %d: %s\n", r->status, r->body.substr(0, 300).c_str());
    std::abort();
  }
  return 0;
}
