#include "server/internal/upstream.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <ifaddrs.h>
#include <netdb.h>

#include <cstdlib>
#include <thread>

#include "server/internal/gateway_impl.h"
#include "server/internal/http_common.h"
#include "server/internal/json_limits.h"
#include "server/internal/sse.h"

namespace airlock::server::internal {
namespace {

bool IsLoopbackAddress(const std::string& a) { return a == "::1" || a.rfind("127.", 0) == 0; }

}  // namespace

ClientPool::ClientPool(UpstreamEndpoint e) : endpoint_(std::move(e)) {}
ClientPool::~ClientPool() = default;

std::unique_ptr<httplib::Client> ClientPool::Acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  auto c = std::make_unique<httplib::Client>(endpoint_.scheme_host_port);
  c->set_connection_timeout(5, 0);
  c->set_read_timeout(endpoint_.timeout_s, 0);
  c->set_write_timeout(endpoint_.timeout_s, 0);
  c->set_keep_alive(true);
  // Headers and body are separate writes: avoid Nagle/delayed-ACK stalls.
  c->set_tcp_nodelay(true);
  if (!endpoint_.ca_file.empty()) c->set_ca_cert_path(endpoint_.ca_file.c_str());
  return c;
}

void ClientPool::Release(std::unique_ptr<httplib::Client> c) {
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
  e.ca_file = u.ca_file;
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
  httplib::Headers headers;
  if (!ep.api_key.empty()) headers.emplace("Authorization", "Bearer " + ep.api_key);
  headers.emplace(kHopHeader,
                  st->incoming_hops.empty() ? instance_id : st->incoming_hops + "," + instance_id);
  if (stream) body["stream_options"] = {{"include_usage", true}};
  std::string payload = DumpJson(body);
  auto started = Clock::now();
  auto error_for = [&](httplib::Error e) {
    double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    bool timeout = e == httplib::Error::ConnectionTimeout ||
                   (e == httplib::Error::Read && elapsed >= upstream.timeout_s - 0.5);
    int status = timeout ? 504 : 502;
    Fail(*st, res, status,
         "Upstream '" + upstream.name + "' " + (timeout ? "timed out" : "failed") + " (" +
             httplib::to_string(e) + ").",
         timeout ? "upstream_timeout" : "upstream_error");
  };

  if (!stream) {
    auto client = pool->Acquire();
    httplib::Request r;
    r.method = "POST";
    r.path = path;
    r.headers = headers;
    r.body = payload;
    r.set_header("Content-Type", "application/json");
    // The body is collected here, not by httplib, so that its size is bounded.
    std::string received;
    bool too_large = false;
    // An upstream trickling its answer (each read within the read timeout) is cut off at the
    // request's overall deadline.
    const Clock::time_point deadline =
        st->start + std::chrono::seconds(policy().server.request_timeout_s);
    bool past_deadline = false;
    r.content_receiver = [&](const char* d, std::size_t n, std::uint64_t, std::uint64_t) {
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
    httplib::Response resp;
    httplib::Error err = httplib::Error::Success;
    bool ok = client->send(r, resp, err);
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
    if (received.empty()) received = std::move(resp.body);
    if (resp.status != 200)
      return Fail(*st, res, 502,
                  "Upstream '" + upstream.name + "' returned HTTP " + std::to_string(resp.status) +
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
  std::thread([pool, ch, path, headers, payload]() {
    auto client = pool->Acquire();
    httplib::Request r;
    r.method = "POST";
    r.path = path;
    r.headers = headers;
    r.headers.emplace("Accept", "text/event-stream");
    r.body = payload;
    r.set_header("Content-Type", "application/json");
    r.response_handler = [ch](const httplib::Response& resp) {
      ch->SetStatus(resp.status);
      return !ch->cancel.load();
    };
    r.content_receiver = [ch](const char* d, std::size_t n, std::uint64_t, std::uint64_t) {
      return ch->Push(d, n);
    };
    httplib::Response resp;
    httplib::Error err = httplib::Error::Success;
    bool ok = client->send(r, resp, err);
    if (ok) pool->Release(std::move(client));
    if (!resp.body.empty()) ch->Push(resp.body.data(), resp.body.size());
    ch->Finish(ok ? 0 : static_cast<int>(err));
  }).detach();
  ch->WaitHeaders();
  int status;
  {
    std::lock_guard<std::mutex> lock(ch->mu);
    status = ch->status;
  }
  if (status == 0) {  // no response at all
    httplib::Error e;
    {
      std::lock_guard<std::mutex> lock(ch->mu);
      e = static_cast<httplib::Error>(ch->error);
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
