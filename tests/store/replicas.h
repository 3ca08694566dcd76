// Fixtures of the replica tests (replicas_test.cc, checkpoints_test.cc): real `airlock serve`
// processes (AIRLOCK_EXE) on one PostgreSQL database (postgres_server.h), each with its own audit
// log (origin gwN.test/airlock-audit, a checkpoint after every record), in front of one upstream
// (an in-process httplib test double). Every wait is bounded.
#pragma once

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "postgres_server.h"
#include "serve_process.h"
#include "test_util.h"

namespace airlock::testing {

using json = nlohmann::json;

// `airlock serve --config CONFIG --port 0`; stderr goes to `log`.
class Serve : public ServeProcess {
 public:
  Serve(const std::string& config, const std::string& log)
      : ServeProcess(ServeArgs(config), {.stderr_path = log}) {}
};

// The upstream: answers chat completions with the usage the test sets; while `hold` is set, each
// request waits (bounded) until it is cleared, so a test can kill a replica mid-request.
class Upstream {
 public:
  Upstream() {
    server_.Post("/v1/chat/completions", [this](const httplib::Request&, httplib::Response& res) {
      ++received;
      ++waiting;
      for (int i = 0; hold.load() && i < 3000; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      --waiting;
      json out = {{"id", "x"},
                  {"object", "chat.completion"},
                  {"choices", json::array({{{"index", 0},
                                            {"message", {{"role", "assistant"}, {"content", "ok"}}},
                                            {"finish_reason", "stop"}}})},
                  {"usage",
                   {{"prompt_tokens", prompt_tokens.load()},
                    {"completion_tokens", completion_tokens.load()}}}};
      res.set_content(out.dump(), "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the listener runs would leave it running (and the destructor's join hanging).
    for (int i = 0; i < 5000 && !server_.is_running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Upstream() {
    hold = false;
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::atomic<int> received{0}, waiting{0};
  std::atomic<bool> hold{false};
  std::atomic<std::int64_t> prompt_tokens{1}, completion_tokens{1};

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

inline const std::string kBody =
    json{{"model", "echo"}, {"messages", json::array({{{"role", "user"}, {"content", "hello"}}})}}
        .dump();

class ReplicasTest : public ::testing::Test {
 protected:
  // Starts `n` replicas on a fresh database `db`; false (with a failure) when one did not start.
  void StartReplicas(PostgresServer& pg, const std::string& db, int n) {
    pg_ = &pg;
    db_ = db;
    for (int i = 0; i < n; ++i) {
      std::string name = "gw" + std::to_string(i);
      std::string config = P(name + ".toml");
      std::ofstream f(config);
      f << "[[upstreams]]\nname='up'\nbase_url='http://127.0.0.1:" << upstream_.port()
        << "/v1'\njurisdiction='US'\nmodels=['echo']\ntimeout_s=30\n"
        << "[audit]\npath='" << P(name + ".db") << "'\norigin='" << name
        << ".test/airlock-audit'\ncheckpoint_every=1\n"
        << extra_audit_ << "[server]\nkeys_db='" << P(name + "-unused-keys.db") << "'\n"
        << "[store]\nurl='" << pg.Url(db) << "'\npassword_file='" << pg.password_file() << "'\n";
      f.close();
      configs_.push_back(config);
      replicas_.push_back(std::make_unique<Serve>(config, P(name + ".log")));
      ASSERT_GT(replicas_.back()->port(), 0) << Log(i);
    }
  }
  std::string P(const std::string& name) const { return (dir_.path() / name).string(); }
  std::string Log(int i) const {
    std::ifstream f(P("gw" + std::to_string(i) + ".log"));
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  // Creates a key on the shared store through replica 0's policy; returns (token, id).
  std::pair<std::string, std::string> CreateKey(const std::string& flags) {
    auto r = RunShell(std::string(AIRLOCK_EXE) + " keys create --config " + Quote(configs_[0]) +
                      " --name t " + flags);
    EXPECT_EQ(r.first, 0) << r.second;
    // The secret is the line starting with ak_ (the note about it goes to stderr).
    std::string token;
    auto at = r.second.find("ak_");
    if (at != std::string::npos) token = r.second.substr(at, r.second.find('\n', at) - at);
    EXPECT_EQ(token.rfind("ak_", 0), 0u) << token;
    return {token, token.size() > 15 ? token.substr(3, 12) : ""};
  }
  httplib::Result Post(int replica, const std::string& token) {
    httplib::Client c("127.0.0.1", replicas_[replica]->port());
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(60, 0);
    return c.Post("/v1/chat/completions", {{"Authorization", "Bearer " + token}}, kBody,
                  "application/json");
  }
  std::string Sql(const std::string& sql) {
    auto r = pg_->Psql(db_, sql);
    EXPECT_EQ(r.first, 0) << r.second;
    return r.second;
  }

  TempDir dir_{"replicas-pg"};
  Upstream upstream_;
  PostgresServer* pg_ = nullptr;
  std::string db_;
  std::vector<std::string> configs_;
  std::string extra_audit_;  // more [audit] lines for the replicas StartReplicas writes
  std::vector<std::unique_ptr<Serve>> replicas_;
};

}  // namespace airlock::testing
