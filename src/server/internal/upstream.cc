#include "server/internal/upstream.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <cstdlib>
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
// verified chain. A refusal sets a verify error; cpp-httplib 0.11.4 then closes the connection
// right after the handshake, before it writes any byte of the request (SSLClient::initialize_ssl
// checks SSL_get_verify_result).
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

}  // namespace

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
  auto c = std::make_unique<UpstreamClient>();
  c->endpoint = &endpoint_;
  c->http = std::make_unique<httplib::Client>(endpoint_.scheme_host_port, endpoint_.client_cert,
                                              endpoint_.client_key);
  httplib::Client& h = *c->http;
  h.set_connection_timeout(5, 0);
  h.set_read_timeout(endpoint_.timeout_s, 0);
  h.set_write_timeout(endpoint_.timeout_s, 0);
  h.set_keep_alive(true);
  // Headers and body are separate writes: avoid Nagle/delayed-ACK stalls.
  h.set_tcp_nodelay(true);
  if (endpoint_.https) {
    if (!endpoint_.ca_file.empty()) h.set_ca_cert_path(endpoint_.ca_file.c_str());
    h.enable_server_certificate_verification(true);
    SSL_CTX* ctx = h.ssl_context();  // per client; null when the client certificate failed
    if (ctx == nullptr) return nullptr;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // No session resumption: every new connection runs the verification below, so the peer
    // recorded for a client is always the one of its current connection.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_cert_verify_callback(ctx, &VerifyUpstreamPeer, c.get());
  }
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
  httplib::Headers headers;
  if (!ep.api_key.empty()) headers.emplace("Authorization", "Bearer " + ep.api_key);
  headers.emplace(kHopHeader,
                  st->incoming_hops.empty() ? instance_id : st->incoming_hops + "," + instance_id);
  if (stream) body["stream_options"] = {{"include_usage", true}};
  std::string payload = DumpJson(body);
  auto started = Clock::now();
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
    if (!client)
      return Fail(*st, res, 502, "Upstream '" + upstream.name + "': cannot set up a TLS client.",
                  "upstream_error");
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
    bool ok = client->http->send(r, resp, err);
    note_peer(client->peer, ok);
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
  // Written by the producer before it sets the channel's status or finishes it, read here after
  // WaitHeaders (the channel's mutex orders the two).
  auto peer = std::make_shared<PeerIdentity>();
  auto answered = std::make_shared<bool>(false);
  std::thread([pool, ch, path, headers, payload, peer, answered]() {
    auto client = pool->Acquire();
    if (!client) return ch->Finish(static_cast<int>(httplib::Error::SSLConnection));
    httplib::Request r;
    r.method = "POST";
    r.path = path;
    r.headers = headers;
    r.headers.emplace("Accept", "text/event-stream");
    r.body = payload;
    r.set_header("Content-Type", "application/json");
    bool headers_seen = false;
    r.response_handler = [ch, peer, answered, &client,
                          &headers_seen](const httplib::Response& resp) {
      *peer = client->peer;
      *answered = true;
      headers_seen = true;
      ch->SetStatus(resp.status);
      return !ch->cancel.load();
    };
    r.content_receiver = [ch](const char* d, std::size_t n, std::uint64_t, std::uint64_t) {
      return ch->Push(d, n);
    };
    httplib::Response resp;
    httplib::Error err = httplib::Error::Success;
    bool ok = client->http->send(r, resp, err);
    if (!headers_seen) *peer = client->peer;  // the handler thread is still in WaitHeaders
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
  note_peer(*peer, *answered);
  if (status == 0) {  // no response at all
    if (!peer->refused_check.empty()) return refuse_identity(*peer);
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
