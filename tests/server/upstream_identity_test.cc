// Upstream identity end to end: a real gateway (in process) forwards to a real TLS server in this
// test (OpenSSL, loopback) that presents throwaway certificates made by openssl(1) for each test.
// The server counts completed handshakes, failed ones, and every byte of application data it
// receives, so "refused before any byte of the request was sent" is something it observed, not
// something the gateway claims. Expected fingerprints and pins are computed by openssl(1), not by
// the code under test. Every wait is bounded; no test asserts a duration.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "policy/policy.h"
#include "server/gateway.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using airlock::testing::RunShell;
using airlock::testing::TempDir;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// ---- throwaway PKI (openssl(1)) ----
class Pki {
 public:
  explicit Pki(const std::filesystem::path& dir) : dir_(dir) {}

  // A CA named `name` (name.pem, name.key).
  void Ca(const std::string& name) {
    Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        "-keyout '" +
        Key(name) + "' -out '" + Cert(name) + "' -subj '/CN=" + name + "'");
  }
  // A certificate for 127.0.0.1 with `subject`, issued by CA `ca`, with a fresh key.
  void Leaf(const std::string& name, const std::string& subject, const std::string& ca) {
    std::string ext = (dir_ / (name + ".ext")).string();
    std::ofstream(ext) << "subjectAltName=IP:127.0.0.1\n";
    std::string csr = (dir_ / (name + ".csr")).string();
    Run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout '" +
        Key(name) + "' -out '" + csr + "' -subj '" + subject + "'");
    Run("openssl x509 -req -in '" + csr + "' -CA '" + Cert(ca) + "' -CAkey '" + Key(ca) +
        "' -CAcreateserial -days 2 -out '" + Cert(name) + "' -extfile '" + ext + "'");
  }
  std::string Cert(const std::string& name) const { return (dir_ / (name + ".pem")).string(); }
  std::string Key(const std::string& name) const { return (dir_ / (name + ".key")).string(); }
  // RFC 7469 pin of the certificate's key, by openssl(1).
  std::string Pin(const std::string& name) {
    return Trim(Run("openssl x509 -in '" + Cert(name) +
                    "' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst "
                    "-sha256 -binary | openssl base64 -A"));
  }
  // SHA-256 fingerprint (lower-case hex, no colons), by openssl(1).
  std::string Fingerprint(const std::string& name) {
    std::string out =
        Trim(Run("openssl x509 -in '" + Cert(name) + "' -noout -fingerprint -sha256"));
    std::string hex;
    for (char c : out.substr(out.find('=') + 1))
      if (c != ':') hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return hex;
  }
  // The subject in RFC 2253 form, by openssl(1).
  std::string Subject(const std::string& name) {
    std::string out =
        Trim(Run("openssl x509 -in '" + Cert(name) + "' -noout -subject -nameopt RFC2253"));
    return out.substr(out.find('=') + 1);
  }

 private:
  std::string Run(const std::string& cmd) {
    auto [rc, out] = RunShell(cmd);
    EXPECT_EQ(rc, 0) << cmd << "\n" << out;
    return out;
  }
  std::filesystem::path dir_;
};

// ---- a real TLS upstream that answers OpenAI chat completions and counts what it received ----
class TlsUpstream {
 public:
  // `client_ca`: when set, a client certificate issued by it is required (mTLS).
  TlsUpstream(const std::string& cert, const std::string& key, const std::string& client_ca = "") {
    ctx_ = MakeContext(cert, key, client_ca);
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        listen(listen_fd_, 64) != 0)
      return;
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~TlsUpstream() {
    stop_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    CloseConnections();
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
    close(listen_fd_);
    std::lock_guard<std::mutex> lock(mu_);
    SSL_CTX_free(ctx_);
  }
  int port() const { return port_; }

  struct Counts {
    int handshakes = 0;                 // completed TLS handshakes
    int failed_handshakes = 0;          // refused by this server (no client certificate, ...)
    int closed = 0;                     // connections ended
    std::size_t application_bytes = 0;  // decrypted bytes received after handshakes
    int requests = 0;                   // HTTP requests answered
  };
  Counts counts() {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_;
  }
  // Waits (bounded) until `n` connections have ended, so that counts() is final for them.
  bool WaitClosed(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return counts_.closed >= n; });
  }
  // From now on, present another certificate (new connections only).
  void ReplaceCertificate(const std::string& cert, const std::string& key) {
    SSL_CTX* fresh = MakeContext(cert, key, "");
    std::lock_guard<std::mutex> lock(mu_);
    SSL_CTX_free(ctx_);
    ctx_ = fresh;
  }
  // Ends every open connection with a bare TCP close (no TLS close_notify), as a restarted server
  // would; a keep-alive client sees it as closed and connects again.
  void CloseConnections() {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
  }

 private:
  static SSL_CTX* MakeContext(const std::string& cert, const std::string& key,
                              const std::string& client_ca) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    // No TLS 1.3 session tickets: the server's handshake then ends when it has read the client's
    // Finished, without a write that could race a client closing right after its handshake.
    SSL_CTX_set_num_tickets(ctx, 0);
    EXPECT_EQ(SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM), 1);
    if (!client_ca.empty()) {
      EXPECT_EQ(SSL_CTX_load_verify_locations(ctx, client_ca.c_str(), nullptr), 1);
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    return ctx;
  }

  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      timeval tv{30, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::lock_guard<std::mutex> lock(mu_);
      open_fds_.push_back(fd);
      SSL* ssl = SSL_new(ctx_);
      threads_.emplace_back([this, fd, ssl] { Serve(fd, ssl); });
    }
  }

  void Serve(int fd, SSL* ssl) {
    SSL_set_fd(ssl, fd);
    bool ok = SSL_accept(ssl) == 1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      (ok ? counts_.handshakes : counts_.failed_handshakes)++;
    }
    std::string buf;
    char chunk[4096];
    while (ok) {
      int n = SSL_read(ssl, chunk, sizeof chunk);
      if (n <= 0) break;
      {
        std::lock_guard<std::mutex> lock(mu_);
        counts_.application_bytes += static_cast<std::size_t>(n);
      }
      buf.append(chunk, static_cast<std::size_t>(n));
      // Answer each complete request (headers and a Content-Length body).
      for (;;) {
        std::size_t end = buf.find("\r\n\r\n");
        if (end == std::string::npos) break;
        std::string head = buf.substr(0, end);
        std::string lower = head;
        std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
        std::size_t cl = lower.find("content-length:");
        std::size_t length = cl == std::string::npos ? 0 : std::stoul(head.substr(cl + 15));
        if (buf.size() < end + 4 + length) break;
        std::string body = buf.substr(end + 4, length);
        buf.erase(0, end + 4 + length);
        {
          // Counted before the answer leaves, so that a client holding the answer sees the count.
          std::lock_guard<std::mutex> lock(mu_);
          counts_.requests++;
        }
        std::string reply = Answer(body);
        SSL_write(ssl, reply.data(), static_cast<int>(reply.size()));
      }
    }
    SSL_free(ssl);
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.erase(std::find(open_fds_.begin(), open_fds_.end(), fd));
    close(fd);
    counts_.closed++;
    cv_.notify_all();
  }

  static std::string Answer(const std::string& request_body) {
    json req = json::parse(request_body, nullptr, false);
    bool stream = req.is_object() && req.value("stream", false);
    std::string body, type;
    if (stream) {
      type = "text/event-stream";
      json delta = {{"id", "c1"},
                    {"object", "chat.completion.chunk"},
                    {"choices", json::array({{{"index", 0},
                                              {"delta", {{"content", "pinned hello"}}},
                                              {"finish_reason", nullptr}}})}};
      json usage = {{"id", "c1"},
                    {"object", "chat.completion.chunk"},
                    {"choices", json::array()},
                    {"usage", {{"prompt_tokens", 3}, {"completion_tokens", 2}}}};
      body = "data: " + delta.dump() + "\n\ndata: " + usage.dump() + "\n\ndata: [DONE]\n\n";
    } else {
      type = "application/json";
      body = json({{"id", "c1"},
                   {"object", "chat.completion"},
                   {"choices",
                    json::array({{{"index", 0},
                                  {"message", {{"role", "assistant"}, {"content", "pinned hello"}}},
                                  {"finish_reason", "stop"}}})},
                   {"usage", {{"prompt_tokens", 3}, {"completion_tokens", 2}}}})
                 .dump();
    }
    return "HTTP/1.1 200 OK\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: keep-alive\r\n\r\n" + body;
  }

  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  std::vector<int> open_fds_;
  Counts counts_;
};

class UpstreamIdentityTest : public ::testing::Test {
 protected:
  // As `airlock serve` does (serve_command.cc): a TLS close_notify written to a connection the
  // peer already closed must not kill the process.
  static void SetUpTestSuite() { signal(SIGPIPE, SIG_IGN); }
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("upstream-identity");
    pki_ = std::make_unique<Pki>(dir_->path());
    pki_->Ca("ca");
    pki_->Leaf("genuine", "/C=US/O=Genuine Provider/CN=api.provider.test", "ca");
    // The reseller holds a certificate from the same CA for the same address: chain and host
    // name verify; only its key (and its subject) differ.
    pki_->Leaf("reseller", "/C=US/O=Gray Reseller/CN=api.provider.test", "ca");
    audit_db_ = (dir_->path() / "audit.db").string();
  }

  // Starts a gateway with one upstream "provider" (model "m") at `port` with `identity` lines.
  void StartGateway(int port, const std::string& identity) {
    std::string toml =
        "[[upstreams]]\nname='provider'\nbase_url='https://127.0.0.1:" + std::to_string(port) +
        "/v1'\njurisdiction='US'\nmodels=['m']\ntimeout_s=30\nca_file='" + pki_->Cert("ca") +
        "'\n" + identity + "[audit]\npath='" + audit_db_ + "'\n[server]\nkeys_db='" +
        (dir_->path() / "keys.db").string() + "'\npublic_metrics=true\n";
    auto policy = airlock::policy::ParsePolicy(toml);
    ASSERT_TRUE(policy.ok()) << policy.error().message();
    airlock::server::GatewayOptions options;
    options.port = 0;
    options.policy = *policy;
    auto gw = airlock::server::Gateway::Create(options);
    ASSERT_TRUE(gw.ok()) << gw.error().message();
    gateway_ = std::move(*gw);
    ASSERT_TRUE(gateway_->Start().ok());
  }
  void TearDown() override {
    if (gateway_) gateway_->Stop();
  }

  httplib::Result Ask(bool stream = false) {
    httplib::Client c("127.0.0.1", gateway_->port());
    c.set_read_timeout(30, 0);
    json body = {{"model", "m"},
                 {"stream", stream},
                 {"messages", json::array({{{"role", "user"}, {"content", "hello"}}})}};
    return c.Post("/v1/chat/completions", body.dump(), "application/json");
  }
  std::string Metrics() {
    httplib::Client c("127.0.0.1", gateway_->port());
    auto r = c.Get("/metrics");
    return r ? r->body : "";
  }
  // `airlock audit show` lines, oldest first.
  std::vector<std::string> AuditLines() {
    auto [rc, out] =
        RunShell(std::string(AIRLOCK_EXE) + " audit show --log '" + audit_db_ + "' --limit 100");
    EXPECT_EQ(rc, 0) << out;
    std::vector<std::string> lines;
    std::size_t pos = 0;
    while (pos < out.size()) {
      std::size_t nl = out.find('\n', pos);
      if (nl == std::string::npos) nl = out.size();
      std::string line = out.substr(pos, nl - pos);
      if (line.find(" model=m ") != std::string::npos) lines.push_back(line);
      pos = nl + 1;
    }
    std::sort(lines.begin(), lines.end(), [](const std::string& a, const std::string& b) {
      return std::stoull(a) < std::stoull(b);
    });
    return lines;
  }
  std::string CertField(const std::string& name) {
    return "cert=sha256:" + pki_->Fingerprint(name) + " spki=" + pki_->Pin(name);
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Pki> pki_;
  std::string audit_db_;
  std::unique_ptr<airlock::server::Gateway> gateway_;
};

// The provider the policy pins answers, streamed and not, and each audit record names the
// certificate that answered (fingerprint and key pin as openssl(1) computes them).
TEST_F(UpstreamIdentityTest, PinnedProviderAnswersAndTheAuditNamesItsCertificate) {
  TlsUpstream upstream(pki_->Cert("genuine"), pki_->Key("genuine"));
  StartGateway(upstream.port(), "spki_sha256=['" + pki_->Pin("genuine") + "']\n");
  auto r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("pinned hello"), std::string::npos);
  r = Ask(/*stream=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("pinned hello"), std::string::npos);
  EXPECT_EQ(upstream.counts().requests, 2);
  auto lines = AuditLines();
  ASSERT_EQ(lines.size(), 2u);
  for (const std::string& line : lines) {
    EXPECT_NE(line.find(CertField("genuine")), std::string::npos) << line;
    EXPECT_NE(line.find("status=200"), std::string::npos) << line;
  }
}

// Attack: a gray-market reseller relays to the provider but terminates TLS itself, with a valid
// certificate for the same address from a trusted CA and its own key. The pin of the provider's
// key refuses it; the TLS server saw a completed handshake and not one byte of application data
// (no prompt, no API key), for plain and streamed requests; the audit names the reseller's
// certificate and the refusal, and the metric counts both.
TEST_F(UpstreamIdentityTest, GrayMarketProxyWithOtherKeyIsRefusedBeforeAnyByte) {
  TlsUpstream reseller(pki_->Cert("reseller"), pki_->Key("reseller"));
  StartGateway(reseller.port(), "spki_sha256=['" + pki_->Pin("genuine") + "']\n");
  for (bool stream : {false, true}) {
    auto r = Ask(stream);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 502) << r->body;
    EXPECT_NE(r->body.find("upstream_identity_mismatch"), std::string::npos) << r->body;
    EXPECT_NE(r->body.find("spki_sha256"), std::string::npos) << r->body;
  }
  ASSERT_TRUE(reseller.WaitClosed(2));
  TlsUpstream::Counts seen = reseller.counts();
  EXPECT_EQ(seen.handshakes, 2);  // the gateway did reach it: the refusal is the pin's
  EXPECT_EQ(seen.application_bytes, 0u);
  EXPECT_EQ(seen.requests, 0);
  auto lines = AuditLines();
  ASSERT_EQ(lines.size(), 2u);
  for (const std::string& line : lines) {
    EXPECT_NE(line.find("status=502"), std::string::npos) << line;
    EXPECT_NE(line.find("upstream_identity_refused: spki_sha256"), std::string::npos) << line;
    EXPECT_NE(line.find(CertField("reseller")), std::string::npos) << line;
  }
  EXPECT_NE(Metrics().find("airlock_upstream_identity_failures_total{upstream=\"provider\","
                           "check=\"spki_sha256\"} 2"),
            std::string::npos);
}

// Key rotation: the provider moved to its next key, listed second; the first pin (the old key)
// no longer matches anything and the request still passes. A pin of the issuing CA's key (RFC
// 7469: any key of the verified chain) also passes.
TEST_F(UpstreamIdentityTest, RotatedKeyMatchingTheSecondPinPasses) {
  TlsUpstream upstream(pki_->Cert("genuine"), pki_->Key("genuine"));
  StartGateway(upstream.port(),
               "spki_sha256=['" + pki_->Pin("reseller") + "', '" + pki_->Pin("genuine") + "']\n");
  auto r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  gateway_->Stop();
  gateway_.reset();
  StartGateway(upstream.port(), "spki_sha256=['" + pki_->Pin("ca") + "']\n");
  r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// Attack: a reseller with a trusted certificate for the address but under its own name. With the
// provider's subject (RFC 2253, as openssl prints it) or organization expected, it is refused
// before any byte; the provider itself passes both checks.
TEST_F(UpstreamIdentityTest, CertificateOfAnotherSubjectOrOrganizationIsRefusedBeforeAnyByte) {
  TlsUpstream reseller(pki_->Cert("reseller"), pki_->Key("reseller"));
  StartGateway(reseller.port(), "subject='" + pki_->Subject("genuine") + "'\n");
  auto r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_NE(r->body.find("subject"), std::string::npos) << r->body;
  gateway_->Stop();
  gateway_.reset();
  StartGateway(reseller.port(), "organization='Genuine Provider'\n");
  r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_NE(r->body.find("organization"), std::string::npos) << r->body;
  ASSERT_TRUE(reseller.WaitClosed(2));
  EXPECT_EQ(reseller.counts().handshakes, 2);
  EXPECT_EQ(reseller.counts().application_bytes, 0u);
  EXPECT_NE(Metrics().find("check=\"organization\"} 1"), std::string::npos);

  TlsUpstream genuine(pki_->Cert("genuine"), pki_->Key("genuine"));
  gateway_->Stop();
  gateway_.reset();
  StartGateway(genuine.port(),
               "subject='" + pki_->Subject("genuine") + "'\norganization='Genuine Provider'\n");
  r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// Attack: an interceptor with a self-made certificate for the address. The upstream's ca_file
// (not the system store) decides: refused as a chain failure, nothing sent.
TEST_F(UpstreamIdentityTest, InterceptorWithUntrustedCertificateIsRefusedBeforeAnyByte) {
  pki_->Ca("rogue-ca");
  pki_->Leaf("interceptor", "/CN=api.provider.test", "rogue-ca");
  TlsUpstream interceptor(pki_->Cert("interceptor"), pki_->Key("interceptor"));
  StartGateway(interceptor.port(), "");
  auto r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_NE(r->body.find("does not verify"), std::string::npos) << r->body;
  ASSERT_TRUE(interceptor.WaitClosed(1));
  EXPECT_EQ(interceptor.counts().application_bytes, 0u);
  EXPECT_NE(Metrics().find("check=\"chain\"} 1"), std::string::npos);
}

// An upstream that requires a client certificate from its own CA (mTLS) answers the gateway that
// presents client_cert/client_key, and refuses (no request processed) a gateway without them.
TEST_F(UpstreamIdentityTest, MutualTlsUpstreamAcceptsTheGatewayCertificateAndRefusesOthers) {
  pki_->Ca("client-ca");
  pki_->Leaf("gateway-client", "/O=Airlock Gateway/CN=gw1", "client-ca");
  TlsUpstream upstream(pki_->Cert("genuine"), pki_->Key("genuine"), pki_->Cert("client-ca"));
  StartGateway(upstream.port(), "spki_sha256=['" + pki_->Pin("genuine") + "']\nclient_cert='" +
                                    pki_->Cert("gateway-client") + "'\nclient_key='" +
                                    pki_->Key("gateway-client") + "'\n");
  auto r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(upstream.counts().requests, 1);
  gateway_->Stop();
  gateway_.reset();
  StartGateway(upstream.port(), "spki_sha256=['" + pki_->Pin("genuine") + "']\n");
  r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  ASSERT_TRUE(upstream.WaitClosed(2));       // the first gateway's connection, and the refused one
  EXPECT_EQ(upstream.counts().requests, 1);  // the second request was never processed
  EXPECT_EQ(upstream.counts().failed_handshakes, 1);
}

// A client key that does not belong to its certificate is a startup error naming the files, not
// a failure of every request later.
TEST_F(UpstreamIdentityTest, MismatchedClientKeyIsAStartupError) {
  std::string toml =
      "[[upstreams]]\nname='provider'\nbase_url='https://127.0.0.1:9/v1'\n"
      "jurisdiction='US'\nmodels=['m']\nclient_cert='" +
      pki_->Cert("genuine") + "'\nclient_key='" + pki_->Key("reseller") + "'\n[audit]\npath='" +
      audit_db_ + "'\n[server]\nkeys_db='" + (dir_->path() / "keys.db").string() + "'\n";
  auto policy = airlock::policy::ParsePolicy(toml);
  ASSERT_TRUE(policy.ok()) << policy.error().message();
  airlock::server::GatewayOptions options;
  options.port = 0;
  options.policy = *policy;
  auto gw = airlock::server::Gateway::Create(options);
  ASSERT_FALSE(gw.ok());
  EXPECT_NE(gw.error().message().find("does not belong to client_cert"), std::string::npos)
      << gw.error().message();
}

// Keep-alive: the fingerprint in a record is the one of the connection that request used. Two
// requests share one connection (one handshake); then the server closes it and presents its next
// certificate (both keys pinned); the third request reconnects and its record names the new one.
TEST_F(UpstreamIdentityTest, ReusedConnectionAuditsTheCertificateOfTheConnectionUsed) {
  TlsUpstream upstream(pki_->Cert("genuine"), pki_->Key("genuine"));
  pki_->Leaf("genuine-next", "/C=US/O=Genuine Provider/CN=api.provider.test", "ca");
  StartGateway(upstream.port(), "spki_sha256=['" + pki_->Pin("genuine") + "', '" +
                                    pki_->Pin("genuine-next") + "']\n");
  for (int i = 0; i < 2; ++i) {
    auto r = Ask();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  EXPECT_EQ(upstream.counts().handshakes, 1);  // the second request reused the connection
  upstream.ReplaceCertificate(pki_->Cert("genuine-next"), pki_->Key("genuine-next"));
  upstream.CloseConnections();
  ASSERT_TRUE(upstream.WaitClosed(1));
  auto r = Ask();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(upstream.counts().handshakes, 2);
  auto lines = AuditLines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find(CertField("genuine")), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find(CertField("genuine")), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find(CertField("genuine-next")), std::string::npos) << lines[2];
}

}  // namespace
