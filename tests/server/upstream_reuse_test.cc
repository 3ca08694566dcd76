// The gateway's connections to its upstreams and its audit records under concurrent load, end to
// end: a real `airlock serve` process (AIRLOCK_EXE) in front of two upstream TEST DOUBLES (small
// httplib servers in this test process, on loopback) that note the client port of every request
// they get, so a test can count the connections the gateway opened to each.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>

#include "audit/audit_log.h"
#include "audit/note.h"
#include "gateway_support.h"

namespace {

using json = nlohmann::json;
using airlock::testing::ServeArgs;
using airlock::testing::ServeProcess;
using airlock::testing::TempDir;

// An upstream double: answers every chat completion and notes, per request, the model asked for
// and the client port the request came from (one port: one connection).
class CountingUpstream {
 public:
  CountingUpstream() {
    server_.set_keep_alive_max_count(1000);  // httplib closes after 5 requests by default
    server_.Post(
        "/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
          std::string model = json::parse(req.body).value("model", "");
          {
            std::lock_guard<std::mutex> lock(mu_);
            seen_.push_back({model, req.remote_port});
          }
          json answer = {
              {"id", "up-1"},
              {"object", "chat.completion"},
              {"model", model},
              {"choices", json::array({{{"index", 0},
                                        {"message", {{"role", "assistant"}, {"content", "ok"}}},
                                        {"finish_reason", "stop"}}})},
              {"usage", {{"prompt_tokens", 1}, {"completion_tokens", 1}}}};
          res.set_content(answer.dump(), "application/json");
        });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~CountingUpstream() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<std::pair<std::string, int>> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::pair<std::string, int>> seen_;
};

std::string Chat(const std::string& model, const std::string& text) {
  return json{{"model", model}, {"messages", json::array({{{"role", "user"}, {"content", text}}})}}
      .dump();
}

// Keep-alive to the upstream: sequential requests reuse one connection per upstream, and a
// connection to one upstream never carries a request meant for the other (each origin has its
// own pool), however the requests interleave.
TEST(UpstreamConnections, ReusedPerUpstreamAndNeverAcrossUpstreams) {
  TempDir dir("upstream-reuse");
  CountingUpstream a, b;
  std::string config = (dir.path() / "gw.toml").string();
  std::ofstream(config) << "[[upstreams]]\nname='a'\nbase_url='http://127.0.0.1:" << a.port()
                        << "/v1'\njurisdiction='US'\nmodels=['model-a']\n"
                        << "[[upstreams]]\nname='b'\nbase_url='http://127.0.0.1:" << b.port()
                        << "/v1'\njurisdiction='US'\nmodels=['model-b']\n"
                        << "[audit]\npath='" << (dir.path() / "a.db").string()
                        << "'\n[server]\nkeys_db='" << (dir.path() / "k.db").string() << "'\n";
  ServeProcess gw(ServeArgs(config), {.stop_signal = SIGTERM});
  ASSERT_GT(gw.port(), 0) << gw.first_line();
  httplib::Client client("127.0.0.1", gw.port());
  client.set_keep_alive(true);
  client.set_read_timeout(30, 0);
  constexpr int kEach = 12;
  for (int i = 0; i < 2 * kEach; ++i) {
    auto r = client.Post("/v1/chat/completions", Chat(i % 2 ? "model-b" : "model-a", "hello"),
                         "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }
  for (CountingUpstream* up : {&a, &b}) {
    const std::string mine = up == &a ? "model-a" : "model-b";
    auto seen = up->seen();
    ASSERT_EQ(seen.size(), static_cast<std::size_t>(kEach));
    std::set<int> connections;
    for (const auto& [model, port] : seen) {
      EXPECT_EQ(model, mine);
      connections.insert(port);
    }
    EXPECT_EQ(connections.size(), 1u) << "sequential requests opened more than one connection";
  }
  std::set<int> ports_a, ports_b;
  for (const auto& s : a.seen()) ports_a.insert(s.second);
  for (const auto& s : b.seen()) ports_b.insert(s.second);
  for (int p : ports_a) EXPECT_EQ(ports_b.count(p), 0u);
}

// Concurrent requests through the gateway (audit fsync on: group commits): every answered
// request has its own record, under the request id the client was given, and the log verifies
// with `airlock audit verify` after the gateway drained.
TEST(UpstreamConnections, ConcurrentRequestsEachLeaveAVerifiableAuditRecord) {
  TempDir dir("upstream-concurrent");
  CountingUpstream up;
  const std::string audit_db = (dir.path() / "a.db").string();
  std::string config = (dir.path() / "gw.toml").string();
  std::ofstream(config) << "[[upstreams]]\nname='u'\nbase_url='http://127.0.0.1:" << up.port()
                        << "/v1'\njurisdiction='US'\nmodels=['m']\n"
                        << "[[rules]]\ndata_classes=['email']\naction='pseudonymize'\n"
                        << "[audit]\npath='" << audit_db << "'\nfsync=true\n"
                        << "[server]\nkeys_db='" << (dir.path() / "k.db").string() << "'\n";
  constexpr int kClients = 8, kEach = 10;
  std::mutex mu;
  std::set<std::string> answered;
  {
    ServeProcess gw(ServeArgs(config), {.stop_signal = SIGTERM});
    ASSERT_GT(gw.port(), 0) << gw.first_line();
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c)
      clients.emplace_back([&, c] {
        httplib::Client client("127.0.0.1", gw.port());
        client.set_keep_alive(true);
        client.set_read_timeout(60, 0);
        for (int i = 0; i < kEach; ++i) {
          auto r = client.Post("/v1/chat/completions",
                               Chat("m", "mail client" + std::to_string(c) + "@corp.example"),
                               "application/json");
          if (r && r->status == 200) {
            std::lock_guard<std::mutex> lock(mu);
            answered.insert(r->get_header_value("X-Request-Id"));
          }
        }
      });
    for (auto& t : clients) t.join();
  }  // SIGTERM: drained, final checkpoint signed
  ASSERT_EQ(answered.size(), static_cast<std::size_t>(kClients * kEach));
  auto [rc, out] = airlock::testing::RunAirlock("audit verify --log " + audit_db +
                                                " --public-key " + audit_db + ".key.pub 2>&1");
  EXPECT_EQ(rc, 0) << out;
  auto records = airlock::audit::ListRecords(audit_db, {.limit = 1000});
  ASSERT_TRUE(records.ok()) << records.error().message();
  std::set<std::string> recorded;
  for (const auto& r : *records) {
    json j = json::parse(r.json);
    if (j.value("status", 0) == 200) recorded.insert(j.value("request_id", ""));
  }
  EXPECT_EQ(recorded, answered);
}

}  // namespace
