// `airlock serve` under connection-level attack, over TLS, and shutting down: each test starts a
// real `airlock serve` process (AIRLOCK_EXE) on loopback with its own policy, and talks to it with
// raw sockets, cpp-httplib's client or curl. Upstreams are in-process httplib servers (test
// doubles). Every wait is bounded; no test asserts a duration.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "serve_process.h"
#include "test_util.h"

namespace {

using airlock::testing::RunShell;
using airlock::testing::ServeArgs;
using airlock::testing::ServeProcess;

using json = nlohmann::json;
using airlock::testing::TempDir;

std::string Airlock() { return AIRLOCK_EXE; }

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A whole chat completion answering "ok" (1 prompt and 1 completion token), as upstreams send.
std::string OkCompletion() {
  return json{{"id", "x"},
              {"object", "chat.completion"},
              {"choices", json::array({{{"index", 0},
                                        {"message", {{"role", "assistant"}, {"content", "ok"}}},
                                        {"finish_reason", "stop"}}})},
              {"usage", {{"prompt_tokens", 1}, {"completion_tokens", 1}}}}
      .dump();
}

// `airlock serve --config CONFIG --port 0 EXTRA...`; stderr goes to a file the test can read.
class Serve : public ServeProcess {
 public:
  Serve(const std::string& config, const std::vector<std::string>& extra, const std::string& log)
      : ServeProcess(ServeArgs(config, extra), {.stderr_path = log}) {}
};

int Connect(int port, int timeout_s = 10) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(s);
    return -1;
  }
  timeval tv{timeout_s, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return s;
}

// Reads until the peer closes (or the receive timeout); returns what arrived and whether it
// closed.
std::pair<std::string, bool> ReadToClose(int s) {
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = recv(s, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<std::size_t>(n));
  return {got, n == 0 || (n < 0 && errno == ECONNRESET)};
}

httplib::Client Client(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(20, 0);
  return c;
}

class ServeNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("serve-net");
    keys_db_ = (dir_->path() / "keys.db").string();
    audit_db_ = (dir_->path() / "audit.db").string();
    log_ = (dir_->path() / "serve.log").string();
    auto created = RunShell(Airlock() + " keys create --db '" + keys_db_ + "' --name admin");
    ASSERT_EQ(created.first, 0) << created.second;
    key_ = Trim(created.second);
    key_ = key_.substr(key_.rfind('\n') == std::string::npos ? 0 : key_.rfind('\n') + 1);
    ASSERT_EQ(key_.rfind("ak_", 0), 0u) << key_;
  }
  // A policy file with the given [server] lines (and upstream `up` at `upstream_port` if > 0).
  std::string Config(const std::string& server_lines, int upstream_port = 0) {
    std::string path = (dir_->path() / "policy.toml").string();
    std::ofstream f(path);
    if (upstream_port > 0)
      f << "[[upstreams]]\nname='up'\nbase_url='http://127.0.0.1:" << upstream_port
        << "/v1'\njurisdiction='US'\nmodels=['echo','stream']\ntimeout_s=30\n";
    f << "[audit]\npath='" << audit_db_ << "'\n[server]\nkeys_db='" << keys_db_ << "'\n"
      << server_lines;
    return path;
  }
  std::string Log() const {
    std::ifstream f(log_);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  std::unique_ptr<TempDir> dir_;
  std::string keys_db_, audit_db_, log_, key_;
};

// Attack: with cpp-httplib's thread per connection, 20 connections sending one header line every
// 3 s stalled /health, and 500 idle connections took the gateway down. Idle and slow connections
// now wait in the event loop without a worker thread: with 2 workers, 200 idle connections and 40
// slow-header connections open, /health and an authenticated request on the worker pool still
// answer.
TEST_F(ServeNetTest, SlowlorisAndIdleConnectionsDoNotStopHealth) {
  Serve serve(Config("threads=2\nheader_timeout_s=60\nmax_connections_per_address=1000\n"), {},
              log_);
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  std::vector<int> idle, slow;
  for (int i = 0; i < 200; ++i) {
    int s = Connect(serve.port());
    ASSERT_GE(s, 0);
    idle.push_back(s);
  }
  for (int i = 0; i < 40; ++i) {
    int s = Connect(serve.port());
    ASSERT_GE(s, 0);
    std::string start = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n";
    send(s, start.data(), start.size(), MSG_NOSIGNAL);
    slow.push_back(s);
  }
  std::atomic<bool> stop{false};
  std::thread dripper([&] {
    for (int round = 0; !stop.load() && round < 600; ++round) {
      for (int s : slow) {
        std::string line = "X-Drip-" + std::to_string(round) + ": 1\r\n";
        send(s, line.data(), line.size(), MSG_NOSIGNAL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  for (int i = 0; i < 5; ++i) {
    auto c = Client(serve.port());
    auto h = c.Get("/health");
    ASSERT_TRUE(h) << "no answer to /health under attack";
    EXPECT_EQ(h->status, 200);
    httplib::Headers auth = {{"Authorization", "Bearer " + key_}};
    auto m = c.Get("/v1/models", auth);
    ASSERT_TRUE(m) << "no answer from the worker pool under attack";
    EXPECT_EQ(m->status, 200);
  }
  auto metrics = Client(serve.port()).Get("/metrics", {{"Authorization", "Bearer " + key_}});
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("airlock_open_connections"), std::string::npos);
  stop = true;
  dripper.join();
  for (int s : idle) close(s);
  for (int s : slow) close(s);
}

// Attack: one address opening connection after connection. Above [server]
// max_connections_per_address the next connection gets 503 and is closed; the others keep
// working, and once one closes the address may connect again.
TEST_F(ServeNetTest, PerAddressCapRefusesTheConnectionAboveIt) {
  Serve serve(Config("max_connections_per_address=4\nheader_timeout_s=60\n"), {}, log_);
  ASSERT_GT(serve.port(), 0) << Log();
  std::vector<int> held;
  for (int i = 0; i < 4; ++i) {
    int s = Connect(serve.port());
    ASSERT_GE(s, 0);
    held.push_back(s);
  }
  // The fourth is accepted once the server answered on it (so all four count).
  std::string ping = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  send(held[3], ping.data(), ping.size(), MSG_NOSIGNAL);
  char buf[1024];
  ASSERT_GT(recv(held[3], buf, sizeof buf, 0), 0);
  int fifth = Connect(serve.port());
  ASSERT_GE(fifth, 0);
  auto [reply, closed] = ReadToClose(fifth);
  close(fifth);
  EXPECT_TRUE(closed);
  EXPECT_NE(reply.find("503"), std::string::npos) << reply;
  EXPECT_NE(reply.find("too_many_connections"), std::string::npos) << reply;
  // A held connection still works.
  send(held[0], ping.data(), ping.size(), MSG_NOSIGNAL);
  ASSERT_GT(recv(held[0], buf, sizeof buf, 0), 0);
  EXPECT_EQ(std::string(buf, 12), "HTTP/1.1 200");
  for (int s : held) close(s);
  // Released: the address may connect again (bounded retries while the server sees the closes).
  bool again = false;
  for (int i = 0; i < 50 && !again; ++i) {
    auto h = Client(serve.port()).Get("/health");
    again = h && h->status == 200;
    if (!again) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(again);
}

// Attack (slowloris): a client that never finishes its headers, sending a header line every
// 300 ms. httplib restarted its read timeout with every byte; the header deadline now closes the
// connection although bytes keep coming.
TEST_F(ServeNetTest, HeaderDeadlineClosesAConnectionThatNeverFinishesItsHeaders) {
  Serve serve(Config("header_timeout_s=1\n"), {}, log_);
  ASSERT_GT(serve.port(), 0) << Log();
  int s = Connect(serve.port(), 1);
  ASSERT_GE(s, 0);
  std::string start = "GET /health HTTP/1.1\r\nHost: x\r\n";
  send(s, start.data(), start.size(), MSG_NOSIGNAL);
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {  // at most ~30 s of dripping
    std::string line = "X-Drip-" + std::to_string(i) + ": 1\r\n";
    if (send(s, line.data(), line.size(), MSG_NOSIGNAL) < 0) {
      closed = true;
      break;
    }
    char buf[256];
    timeval tv{0, 300000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
    EXPECT_LE(n, 0) << "the server answered an unfinished request";
  }
  close(s);
  EXPECT_TRUE(closed) << "connection still open after 100 header lines";
  auto h = Client(serve.port()).Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// A certificate for 127.0.0.1 from openssl(1), valid for a day.
bool MakeCertificate(const std::string& cert, const std::string& key, const std::string& cn) {
  auto r =
      RunShell("openssl req -x509 -newkey rsa:2048 -nodes -keyout '" + key + "' -out '" + cert +
               "' -days 1 -subj '/CN=" + cn + "' -addext 'subjectAltName=IP:127.0.0.1'");
  return r.first == 0;
}

// HTTPS: a round trip with curl against a throwaway certificate; plain HTTP to the TLS port fails
// cleanly (and the server keeps serving); TLS 1.1 is refused; SIGHUP loads a new certificate.
TEST_F(ServeNetTest, HttpsRoundTripWithCurl) {
  if (RunShell("command -v curl").first != 0) GTEST_SKIP() << "curl is not installed";
  std::string cert = (dir_->path() / "cert.pem").string();
  std::string key = (dir_->path() / "key.pem").string();
  ASSERT_TRUE(MakeCertificate(cert, key, "first"));
  Serve serve(Config("tls_cert='" + cert + "'\ntls_key='" + key + "'\n"), {}, log_);
  ASSERT_GT(serve.port(), 0) << Log();
  EXPECT_NE(serve.first_line().find("https://"), std::string::npos) << serve.first_line();
  std::string url = "https://127.0.0.1:" + std::to_string(serve.port());
  auto health = RunShell("curl -sS --max-time 20 --cacert '" + cert + "' " + url + "/health");
  EXPECT_EQ(health.first, 0) << health.second;
  EXPECT_NE(health.second.find("\"ok\""), std::string::npos) << health.second;
  auto models = RunShell("curl -sS --max-time 20 --cacert '" + cert +
                         "' -H 'Authorization: Bearer " + key_ + "' " + url + "/v1/models");
  EXPECT_EQ(models.first, 0) << models.second;
  EXPECT_NE(models.second.find("\"list\""), std::string::npos) << models.second;
  // A POST with a body (curl sends Expect: 100-continue for larger ones).
  std::string big(2000, 'a');
  auto post = RunShell(
      "curl -sS --max-time 20 --cacert '" + cert + "' -H 'Authorization: Bearer " + key_ +
      "' -H 'Content-Type: application/json' -d '{\"model\":\"none\",\"x\":\"" + big +
      "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}' " + url + "/v1/chat/completions");
  EXPECT_EQ(post.first, 0) << post.second;
  EXPECT_NE(post.second.find("model_not_found"), std::string::npos) << post.second;

  auto plain = RunShell("curl -sS --max-time 20 http://127.0.0.1:" + std::to_string(serve.port()) +
                        "/health");
  EXPECT_NE(plain.first, 0) << "plain HTTP answered on the TLS port: " << plain.second;
  auto old_tls = RunShell("curl -sS --max-time 20 --tlsv1.0 --tls-max 1.1 --cacert '" + cert +
                          "' " + url + "/health");
  EXPECT_NE(old_tls.first, 0) << "TLS 1.1 accepted: " << old_tls.second;
  health = RunShell("curl -sS --max-time 20 --cacert '" + cert + "' " + url + "/health");
  EXPECT_EQ(health.first, 0) << health.second;

  // SIGHUP: a new certificate for new connections.
  std::string cert2 = (dir_->path() / "cert2.pem").string();
  std::string key2 = (dir_->path() / "key2.pem").string();
  ASSERT_TRUE(MakeCertificate(cert2, key2, "second"));
  std::filesystem::rename(cert2, cert);
  std::filesystem::rename(key2, key);
  kill(serve.pid(), SIGHUP);
  bool reloaded = false;
  for (int i = 0; i < 100 && !reloaded; ++i) {
    reloaded = Log().find("TLS certificate reloaded") != std::string::npos;
    if (!reloaded) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(reloaded) << Log();
  auto after = RunShell("curl -sS --max-time 20 -v --cacert '" + cert + "' " + url + "/health");
  EXPECT_EQ(after.first, 0) << after.second;
  EXPECT_NE(after.second.find("CN=second"), std::string::npos) << after.second;
  EXPECT_EQ(airlock::testing::ExitCode(serve.Stop(SIGTERM)), 0);
}

// Keys would cross the network readable: binding beyond loopback without TLS is refused unless
// --insecure-http is given (then a warning and the metric airlock_insecure_http 1).
TEST_F(ServeNetTest, NonLoopbackBindWithoutTlsRefusedUnlessInsecureHttp) {
  std::string cfg = Config("");
  auto refused = RunShell(Airlock() + " serve --config '" + cfg + "' --host 0.0.0.0 --port 0");
  EXPECT_EQ(refused.first, 1) << refused.second;
  EXPECT_NE(refused.second.find("without TLS"), std::string::npos) << refused.second;
  Serve serve(cfg, {"--host", "0.0.0.0", "--insecure-http"}, log_);
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  EXPECT_NE(Log().find("WARNING: serving plain HTTP"), std::string::npos) << Log();
  auto m = Client(serve.port()).Get("/metrics", {{"Authorization", "Bearer " + key_}});
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("airlock_insecure_http 1"), std::string::npos) << m->body;
  // Keys are still required beyond loopback.
  auto anonymous = Client(serve.port()).Get("/v1/models");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_EQ(airlock::testing::ExitCode(serve.Stop(SIGTERM)), 0);
}

// An upstream (test double) that answers after 300 ms, or streams an event every 100 ms for 20 s.
class SlowUpstream {
 public:
  SlowUpstream() {
    server_.Post("/v1/chat/completions", [](const httplib::Request& req, httplib::Response& res) {
      json body = json::parse(req.body, nullptr, false);
      if (!body.is_discarded() && body.value("stream", false)) {
        res.set_chunked_content_provider("text/event-stream", [](std::size_t,
                                                                 httplib::DataSink& sink) {
          for (int i = 0; i < 200; ++i) {
            std::string ev =
                "data: " +
                json{{"choices", json::array({{{"index", 0}, {"delta", {{"content", "tick "}}}}})}}
                    .dump() +
                "\n\n";
            if (!sink.write(ev.data(), ev.size())) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
          sink.done();
          return true;
        });
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      res.set_content(OkCompletion(), "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~SlowUpstream() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

std::string AuditJson(const std::string& audit_db) {
  return RunShell(Airlock() + " audit show --log '" + audit_db + "' --json --limit 100000").second;
}

// SIGTERM under load: the gateway stops accepting, finishes the requests in flight, audits every
// one of them and exits 0. Every request that got an answer has its audit record.
TEST_F(ServeNetTest, SigtermDrainUnderLoadLosesNoAuditRecordAndExitsZero) {
  SlowUpstream upstream;
  Serve serve(Config("drain_timeout_s=20\n", upstream.port()), {}, log_);
  ASSERT_GT(serve.port(), 0) << Log();
  std::mutex mu;
  std::vector<std::string> answered;
  std::atomic<int> failures{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 6; ++c)
    clients.emplace_back([&, c] {
      for (int i = 0; !stop.load(); ++i) {
        auto cl = Client(serve.port());
        json body = {
            {"model", "echo"},
            {"messages",
             json::array({{{"role", "user"},
                           {"content", "c" + std::to_string(c) + " " + std::to_string(i)}}})}};
        auto r = cl.Post("/v1/chat/completions", {{"Authorization", "Bearer " + key_}}, body.dump(),
                         "application/json");
        if (!r) {
          failures++;
          return;  // the server stopped accepting
        }
        std::lock_guard<std::mutex> lock(mu);
        EXPECT_EQ(r->status, 200) << r->body;
        answered.push_back(r->get_header_value("X-Request-Id"));
      }
    });
  for (int waited = 0; waited < 400; ++waited) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (answered.size() >= 12) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  std::size_t before;
  {
    std::lock_guard<std::mutex> lock(mu);
    before = answered.size();
  }
  int status = serve.Stop(SIGTERM);
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_TRUE(WIFEXITED(status)) << Log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << Log();
  ASSERT_GE(before, 12u);
  // Requests in flight at SIGTERM were answered, not dropped (each client had one in flight).
  EXPECT_GT(answered.size(), before) << Log();
  std::string audit = AuditJson(audit_db_);
  for (const std::string& id : answered) {
    ASSERT_FALSE(id.empty());
    EXPECT_NE(audit.find(id), std::string::npos) << "answered request " << id << " not audited";
  }
}

// A stream longer than drain_timeout_s is cancelled at the deadline, settled and audited as
// cancelled; the process still exits 0.
TEST_F(ServeNetTest, DrainPastItsDeadlineCancelsStreamsAndAuditsThem) {
  SlowUpstream upstream;
  Serve serve(Config("drain_timeout_s=1\n", upstream.port()), {}, log_);
  ASSERT_GT(serve.port(), 0) << Log();
  std::atomic<bool> got_data{false};
  std::string request_id;
  std::thread client([&] {
    auto cl = Client(serve.port());
    json body = {{"model", "stream"},
                 {"stream", true},
                 {"messages", json::array({{{"role", "user"}, {"content", "go"}}})}};
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.headers = {{"Authorization", "Bearer " + key_}, {"Content-Type", "application/json"}};
    req.body = body.dump();
    req.response_handler = [&](const httplib::Response& r) {
      request_id = r.get_header_value("X-Request-Id");
      return true;
    };
    req.content_receiver = [&](const char*, std::size_t, std::uint64_t, std::uint64_t) {
      got_data = true;
      return true;
    };
    httplib::Response res;
    httplib::Error err;
    cl.send(req, res, err);
  });
  for (int i = 0; i < 200 && !got_data.load(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(got_data.load());
  int status = serve.Stop(SIGTERM);
  client.join();
  ASSERT_TRUE(WIFEXITED(status)) << Log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << Log();
  ASSERT_FALSE(request_id.empty());
  std::string audit = AuditJson(audit_db_);
  std::size_t at = audit.find(request_id);
  ASSERT_NE(at, std::string::npos) << "cancelled stream not audited";
  EXPECT_NE(audit.find("cancelled: server shutting down"), std::string::npos) << audit;
}

}  // namespace

namespace {

// Issue #19: OpenAI clients always send a bearer token. On loopback without any API key the
// gateway accepts whatever token comes (as llama-server does); once keys exist, a wrong or
// missing key gets a 401 that says how to create one.
TEST_F(ServeNetTest, AnyBearerTokenOnLoopbackWithoutKeysAndA401ThatNamesKeysCreate) {
  std::string open_cfg = (dir_->path() / "open.toml").string();
  std::ofstream(open_cfg) << "[audit]\npath='" << (dir_->path() / "open-audit.db").string()
                          << "'\n[server]\nkeys_db='" << (dir_->path() / "empty-keys.db").string()
                          << "'\n";
  {
    Serve open(open_cfg, {}, log_);
    ASSERT_GT(open.port(), 0) << Log();
    auto r = Client(open.port()).Get("/v1/models", {{"Authorization", "Bearer sk-no-key-needed"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    r = Client(open.port()).Get("/v1/models");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  Serve keyed(Config(""), {}, log_);
  ASSERT_GT(keyed.port(), 0) << Log();
  for (const httplib::Headers& h :
       {httplib::Headers{{"Authorization", "Bearer sk-no-key-needed"}}, httplib::Headers{}}) {
    auto r = Client(keyed.port()).Get("/v1/models", h);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_NE(r->body.find("airlock keys create"), std::string::npos) << r->body;
  }
  auto ok = Client(keyed.port()).Get("/v1/models", {{"Authorization", "Bearer " + key_}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

}  // namespace

namespace {

// An upstream (test double) that holds every request whose body contains "hold" until Release(),
// and answers the others at once; it counts the requests it holds.
class GatedUpstream {
 public:
  GatedUpstream() {
    server_.new_task_queue = [] { return new httplib::ThreadPool(16); };
    server_.Post("/v1/chat/completions",
                 [this](const httplib::Request& req, httplib::Response& res) {
                   if (req.body.find("hold") != std::string::npos) {
                     std::unique_lock<std::mutex> lock(mu_);
                     ++held_;
                     cv_.notify_all();
                     cv_.wait(lock, [this] { return released_; });
                   }
                   res.set_content(OkCompletion(), "application/json");
                 });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~GatedUpstream() {
    Release();
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  // Waits (bounded, ~30 s) until `n` requests are held; returns whether they are.
  bool WaitHeld(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return held_ >= n; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  int held_ = 0;
  bool released_ = false;
};

// One HTTP/1.1 request (Connection: close) from the loopback address `source` (127.0.0.x: the
// gateway sees another client); returns the whole answer, or "" when none came.
std::string RequestFrom(const std::string& source, int port, const std::string& method,
                        const std::string& path, const std::string& key, const std::string& body) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      connect(s, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    close(s);
    return "";
  }
  timeval tv{60, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  if (!key.empty()) req += "Authorization: Bearer " + key + "\r\n";
  if (!body.empty())
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  send(s, req.data(), req.size(), MSG_NOSIGNAL);
  std::string got = ReadToClose(s).first;
  close(s);
  return got;
}

std::string ChatBody(const std::string& text) {
  return json{{"model", "echo"}, {"messages", json::array({{{"role", "user"}, {"content", text}}})}}
      .dump();
}

// Attack (#15): one client within its connection cap sent slow completions (an upstream that
// answers slowly) until every worker of the pool was busy, and the next client's request waited.
// Completions in flight are now capped per client address and per API key below the pool size:
// with 4 workers, key A holds 2 from one address and 1 from another, its next ones get 429 with
// Retry-After (audited), while key B from a third address and /health are still answered.
TEST_F(ServeNetTest, OneClientHoldingSlowCompletionsCannotStarveAnotherKeyOrHealth) {
  GatedUpstream upstream;
  auto other = RunShell(Airlock() + " keys create --db '" + keys_db_ + "' --name other");
  ASSERT_EQ(other.first, 0) << other.second;
  std::string key_b = Trim(other.second);
  key_b = key_b.substr(key_b.rfind('\n') == std::string::npos ? 0 : key_b.rfind('\n') + 1);
  Serve serve(Config("threads=4\nmax_completions_per_address=2\nmax_completions_per_key=3\n",
                     upstream.port()),
              {}, log_);
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  const int port = serve.port();
  std::vector<std::thread> holders;
  std::vector<std::string> held_answers(3);
  for (int i = 0; i < 2; ++i)
    holders.emplace_back([&, i] {
      held_answers[i] = RequestFrom("127.0.0.1", port, "POST", "/v1/chat/completions", key_,
                                    ChatBody("hold " + std::to_string(i)));
    });
  ASSERT_TRUE(upstream.WaitHeld(2));
  // The address is at its cap: 429, whatever the key.
  std::string over =
      RequestFrom("127.0.0.1", port, "POST", "/v1/chat/completions", key_b, ChatBody("hold over"));
  EXPECT_NE(over.find("HTTP/1.1 429"), std::string::npos) << over;
  EXPECT_NE(over.find("Retry-After: 1"), std::string::npos) << over;
  EXPECT_NE(over.find("too_many_concurrent_requests"), std::string::npos) << over;
  EXPECT_NE(over.find("client address"), std::string::npos) << over;
  // Key A from a second address: its third completion in flight is within the key's cap.
  holders.emplace_back([&] {
    held_answers[2] =
        RequestFrom("127.0.0.3", port, "POST", "/v1/chat/completions", key_, ChatBody("hold 2"));
  });
  ASSERT_TRUE(upstream.WaitHeld(3));
  std::string key_over =
      RequestFrom("127.0.0.4", port, "POST", "/v1/chat/completions", key_, ChatBody("quick"));
  EXPECT_NE(key_over.find("HTTP/1.1 429"), std::string::npos) << key_over;
  EXPECT_NE(key_over.find("API key"), std::string::npos) << key_over;
  // Another key from another address, and /health from the busy address, are answered.
  std::string b =
      RequestFrom("127.0.0.2", port, "POST", "/v1/chat/completions", key_b, ChatBody("quick"));
  EXPECT_NE(b.find("HTTP/1.1 200"), std::string::npos) << b;
  std::string health = RequestFrom("127.0.0.1", port, "GET", "/health", "", "");
  EXPECT_NE(health.find("HTTP/1.1 200"), std::string::npos) << health;
  std::string ready = RequestFrom("127.0.0.1", port, "GET", "/ready", "", "");
  EXPECT_NE(ready.find("HTTP/1.1 200"), std::string::npos) << ready;
  upstream.Release();
  for (auto& t : holders) t.join();
  for (const std::string& a : held_answers)
    EXPECT_NE(a.find("HTTP/1.1 200"), std::string::npos) << a;
  // Places are freed when a completion ends: the address may start one again.
  std::string again =
      RequestFrom("127.0.0.1", port, "POST", "/v1/chat/completions", key_, ChatBody("quick"));
  EXPECT_NE(again.find("HTTP/1.1 200"), std::string::npos) << again;
  EXPECT_EQ(airlock::testing::ExitCode(serve.Stop(SIGTERM)), 0) << Log();
  std::string audit = AuditJson(audit_db_);
  std::size_t refusals = 0;
  for (std::size_t at = audit.find("too_many_concurrent_requests"); at != std::string::npos;
       at = audit.find("too_many_concurrent_requests", at + 1))
    ++refusals;
  EXPECT_EQ(refusals, 2u) << audit;
  EXPECT_NE(audit.find("client: 127.0.0.1"), std::string::npos) << audit;
}

// /health and /ready answer on the io thread: with every worker of the pool busy on a slow
// completion (two clients, two keys, two workers), they are still answered at once.
TEST_F(ServeNetTest, HealthAndReadyNeedNoWorkerWhenThePoolIsBusy) {
  GatedUpstream upstream;
  auto other = RunShell(Airlock() + " keys create --db '" + keys_db_ + "' --name other");
  ASSERT_EQ(other.first, 0) << other.second;
  std::string key_b = Trim(other.second);
  key_b = key_b.substr(key_b.rfind('\n') == std::string::npos ? 0 : key_b.rfind('\n') + 1);
  Serve serve(Config("threads=2\nmax_completions_per_address=1\nmax_completions_per_key=1\n",
                     upstream.port()),
              {}, log_);
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  const int port = serve.port();
  std::vector<std::thread> holders;
  holders.emplace_back([&] {
    RequestFrom("127.0.0.1", port, "POST", "/v1/chat/completions", key_, ChatBody("hold a"));
  });
  holders.emplace_back([&] {
    RequestFrom("127.0.0.2", port, "POST", "/v1/chat/completions", key_b, ChatBody("hold b"));
  });
  ASSERT_TRUE(upstream.WaitHeld(2));  // both workers are now inside a completion
  std::string health = RequestFrom("127.0.0.5", port, "GET", "/health", "", "");
  EXPECT_NE(health.find("HTTP/1.1 200"), std::string::npos) << health;
  std::string ready = RequestFrom("127.0.0.5", port, "GET", "/ready", "", "");
  EXPECT_NE(ready.find("HTTP/1.1 200"), std::string::npos) << ready;
  upstream.Release();
  for (auto& t : holders) t.join();
}

// A cap below the pool is the point: a policy that lets one client have every worker is refused.
TEST_F(ServeNetTest, CompletionCapAtOrAboveThePoolSizeIsALoadError) {
  auto r = RunShell(Airlock() + " serve --port 0 --config '" +
                    Config("threads=4\nmax_completions_per_address=4\n") + "'");
  EXPECT_NE(r.first, 0) << r.second;
  EXPECT_NE(r.second.find("max_completions_per_address must be below threads"), std::string::npos)
      << r.second;
}

}  // namespace

namespace {

// Issue #19: OpenAI parameters for local models, through a real `airlock serve` of stories260K
// (a 260K-parameter story model that cannot follow instructions: whatever structure its answers
// have comes from the gateway).
class ServeLocalParamsTest : public ServeNetTest {
 protected:
  void SetUp() override {
    ServeNetTest::SetUp();
    AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
    model_ = (models / "stories260K.gguf").string();
  }
  // POST with key; the parsed body (or {"transport_error"}) and the status in "http_status".
  json Post(int port, const std::string& path, const json& body) {
    auto r = Client(port).Post(path, {{"Authorization", "Bearer " + key_}}, body.dump(),
                               "application/json");
    if (!r) return json{{"transport_error", httplib::to_string(r.error())}};
    json doc = json::parse(r->body, nullptr, false);
    if (!doc.is_object()) doc = json{{"raw", r->body}};
    doc["http_status"] = r->status;
    return doc;
  }
  // The data payloads of a streamed answer.
  std::vector<json> Stream(int port, const json& body) {
    auto r = Client(port).Post("/v1/chat/completions", {{"Authorization", "Bearer " + key_}},
                               body.dump(), "application/json");
    std::vector<json> events;
    if (!r) return events;
    std::size_t pos = 0;
    while ((pos = r->body.find("data: ", pos)) != std::string::npos) {
      std::size_t end = r->body.find("\n\n", pos);
      std::string payload = r->body.substr(pos + 6, end - pos - 6);
      pos = end;
      if (payload != "[DONE]") events.push_back(json::parse(payload, nullptr, false));
    }
    return events;
  }
  std::string model_;
};

const json kMoodSchema = {{"type", "object"},
                          {"properties",
                           {{"mood", {{"type", "string"}, {"enum", {"happy", "sad", "angry"}}}},
                            {"ok", {{"type", "boolean"}}}}},
                          {"required", {"mood", "ok"}},
                          {"additionalProperties", false}};

// The reply is a JSON document that matches kMoodSchema: an object with exactly `mood` (one of
// the enum) and `ok` (a boolean).
void ExpectMatchesMoodSchema(const std::string& text) {
  json doc = json::parse(text, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << "not a JSON object: " << text;
  EXPECT_EQ(doc.size(), 2u) << text;
  ASSERT_TRUE(doc.contains("mood") && doc["mood"].is_string()) << text;
  std::string mood = doc["mood"];
  EXPECT_TRUE(mood == "happy" || mood == "sad" || mood == "angry") << text;
  ASSERT_TRUE(doc.contains("ok")) << text;
  EXPECT_TRUE(doc["ok"].is_boolean()) << text;
}

// A JSON-schema constrained request (an object with an enum and a boolean) returns valid JSON
// matching the schema on stories260K, for every choice, streamed and not: the constraint holds for
// a model that cannot follow instructions (unconstrained, it tells a story).
TEST_F(ServeLocalParamsTest, JsonSchemaResponseFormatHoldsOnStories260K) {
  Serve serve(Config(""), {model_}, log_);
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  json body = {{"model", "stories260K"},
               {"messages", json::array({{{"role", "user"}, {"content", "How are you?"}}})},
               {"max_tokens", 128},
               {"temperature", 1},
               {"seed", 7},
               {"n", 3},
               {"response_format",
                {{"type", "json_schema"},
                 {"json_schema", {{"name", "mood"}, {"strict", true}, {"schema", kMoodSchema}}}}}};
  json r = Post(serve.port(), "/v1/chat/completions", body);
  ASSERT_EQ(r.value("http_status", 0), 200) << r.dump();
  ASSERT_EQ(r["choices"].size(), 3u) << r.dump();
  for (std::size_t i = 0; i < 3; ++i) {
    const json& c = r["choices"][i];
    EXPECT_EQ(c["index"], i);
    EXPECT_EQ(c["finish_reason"], "stop") << r.dump();
    ExpectMatchesMoodSchema(c["message"]["content"].get<std::string>());
  }
  // Without the constraint the same request is no JSON at all.
  json free = body;
  free.erase("response_format");
  free["n"] = 1;
  json story = Post(serve.port(), "/v1/chat/completions", free);
  ASSERT_EQ(story.value("http_status", 0), 200) << story.dump();
  EXPECT_FALSE(
      json::parse(story["choices"][0]["message"]["content"].get<std::string>(), nullptr, false)
          .is_object());
  // Streamed: each choice's deltas put together.
  body["stream"] = true;
  body["n"] = 2;
  std::map<int, std::string> text;
  std::map<int, std::string> finish;
  for (const json& e : Stream(serve.port(), body)) {
    ASSERT_TRUE(e.is_object());
    for (const json& c : e["choices"]) {
      int index = c["index"];
      if (c["delta"].contains("content")) text[index] += c["delta"]["content"].get<std::string>();
      if (!c["finish_reason"].is_null()) finish[index] = c["finish_reason"];
    }
  }
  ASSERT_EQ(text.size(), 2u);
  for (const auto& [index, t] : text) {
    EXPECT_EQ(finish[index], "stop") << t;
    ExpectMatchesMoodSchema(t);
  }
  // json_object: any object.
  body.erase("stream");
  body["n"] = 1;
  body["response_format"] = {{"type", "json_object"}};
  body["max_tokens"] = 256;
  body["temperature"] = 0;
  r = Post(serve.port(), "/v1/chat/completions", body);
  ASSERT_EQ(r.value("http_status", 0), 200) << r.dump();
  if (r["choices"][0]["finish_reason"] == "stop")
    EXPECT_TRUE(
        json::parse(r["choices"][0]["message"]["content"].get<std::string>(), nullptr, false)
            .is_object())
        << r.dump();
  else  // cut by max_tokens: at least the start of an object
    EXPECT_EQ(r["choices"][0]["message"]["content"].get<std::string>().rfind("{", 0), 0u);
}

// n, logprobs / top_logprobs (chat and legacy completions), model lookup, created times, the usage
// chunk only on request, and a 400 naming the parameter for what is out of range or not
// implemented for local models.
TEST_F(ServeLocalParamsTest, OpenAIParametersForLocalModels) {
  Serve serve(Config(""), {model_}, log_);
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  const int port = serve.port();
  json base = {{"model", "stories260K"},
               {"messages", json::array({{{"role", "user"}, {"content", "Once"}}})},
               {"max_tokens", 4}};
  json body = base;
  body["n"] = 2;
  body["logprobs"] = true;
  body["top_logprobs"] = 3;
  json r = Post(port, "/v1/chat/completions", body);
  ASSERT_EQ(r.value("http_status", 0), 200) << r.dump();
  ASSERT_EQ(r["choices"].size(), 2u);
  EXPECT_EQ(r["usage"]["completion_tokens"], 8) << r.dump();
  for (const json& c : r["choices"]) {
    const json& content = c["logprobs"]["content"];
    ASSERT_EQ(content.size(), 4u) << r.dump();
    std::string joined;
    for (const json& t : content) {
      EXPECT_LE(t["logprob"].get<double>(), 0.0);
      EXPECT_EQ(t["top_logprobs"].size(), 3u);
      joined += t["token"].get<std::string>();
    }
    EXPECT_EQ(joined, c["message"]["content"]) << r.dump();
  }
  EXPECT_GT(r["created"].get<std::int64_t>(), 1600000000);
  json legacy = {{"model", "stories260K"}, {"prompt", "Once"}, {"max_tokens", 2}, {"logprobs", 2}};
  r = Post(port, "/v1/completions", legacy);
  ASSERT_EQ(r.value("http_status", 0), 200) << r.dump();
  EXPECT_EQ(r["choices"][0]["logprobs"]["tokens"].size(), 2u) << r.dump();
  EXPECT_EQ(r["choices"][0]["logprobs"]["top_logprobs"][0].size(), 2u) << r.dump();

  // Out of range or not implemented: 400 with `param`.
  std::vector<std::pair<json, std::string>> refused = {
      {{{"temperature", 5}}, "temperature"},
      {{{"top_logprobs", 2}}, "top_logprobs"},  // without logprobs
      {{{"n", 17}}, "n"},
      {{{"logit_bias", {{"50256", -100}}}}, "logit_bias"},
      {{{"tools", json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}})}},
       "tools"},  // stories260K's template has no tool-call format
      {{{"tool_choice", "required"}}, "tool_choice"},
      {{{"response_format",
         {{"type", "json_schema"},
          {"json_schema", {{"schema", {{"type", "string"}, {"pattern", "a+"}}}}}}}},
       "response_format"},
      {{{"messages",
         json::array(
             {{{"role", "user"},
               {"content", json::array({{{"type", "image_url"},
                                         {"image_url", {{"url", "http://x/y.png"}}}}})}}})}},
       "messages"},
      {{{"stream_options", {{"include_usage", true}}}}, "stream_options"},  // without stream
      // Hostile types end in a 400, never an exception.
      {{{"logprobs", "yes"}}, "logprobs"},
      {{{"tools", json::array({{{"type", 5}}})}}, "tools"},
      {{{"response_format", {{"type", 5}}}}, "response_format"},
      {{{"tool_choice", json::array()}}, "tool_choice"},
  };
  for (const auto& [extra, param] : refused) {
    json b = base;
    b.update(extra);
    json e = Post(port, "/v1/chat/completions", b);
    EXPECT_EQ(e.value("http_status", 0), 400) << b.dump() << " -> " << e.dump();
    EXPECT_EQ(e["error"]["param"], param) << b.dump() << " -> " << e.dump();
  }

  json nulls = base;
  nulls.update({{"logprobs", nullptr},
                {"top_logprobs", nullptr},
                {"tools", nullptr},
                {"response_format", nullptr},
                {"n", nullptr}});
  EXPECT_EQ(Post(port, "/v1/chat/completions", nulls).value("http_status", 0), 200);

  // GET /v1/models/{id}, with the model file's time as `created`.
  auto m = Client(port).Get("/v1/models/stories260K", {{"Authorization", "Bearer " + key_}});
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200) << m->body;
  json model = json::parse(m->body);
  EXPECT_EQ(model["id"], "stories260K");
  EXPECT_EQ(model["object"], "model");
  EXPECT_GT(model["created"].get<std::int64_t>(), 0);
  m = Client(port).Get("/v1/models/none", {{"Authorization", "Bearer " + key_}});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 404) << m->body;

  // The usage chunk only with stream_options.include_usage.
  json streamed = base;
  streamed["stream"] = true;
  auto has_usage = [&](const json& b) {
    bool usage = false;
    for (const json& e : Stream(port, b)) usage |= e.contains("usage") && e["usage"].is_object();
    return usage;
  };
  EXPECT_FALSE(has_usage(streamed));
  streamed["stream_options"] = {{"include_usage", true}};
  EXPECT_TRUE(has_usage(streamed));
}

}  // namespace
