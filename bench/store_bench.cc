// What shared state costs (issue #25). Starts its own PostgreSQL (tests/store/postgres_server.h:
// initdb + pg_ctl from /usr/lib/postgresql/15/bin, Unix socket, as nobody when root) and a fake
// upstream (httplib, fixed completion), then measures, each several times so the spread shows:
//  1. added latency of the PostgreSQL key store against SQLite: sequential requests through real
//     `airlock serve` processes (one with [server] keys_db, one with [store] url), same key
//     limits (a budget, so every request reserves and settles), p50/p99 per run;
//  2. throughput of 1, 2 and 4 `airlock serve` replicas on one PostgreSQL database with
//     closed-loop clients spread round-robin over the replicas.
// Everything (clients, upstream, replicas, database) shares this machine's cores.
// Run: build/bench/store_bench [AIRLOCK_EXE] (default: ./airlock beside bench/); ~1-2 minutes.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../tests/store/postgres_server.h"

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
using airlock::testing::PostgresServer;
using airlock::testing::Quote;
using airlock::testing::RunShell;

std::string g_exe;

const char* kReply =
    R"({"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,)"
    R"("message":{"role":"assistant","content":"The answer is 42."},"finish_reason":"stop"}],)"
    R"("usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25}})";

const std::string kBody =
    json{{"model", "m"},
         {"max_tokens", 16},
         {"messages", json::array({{{"role", "user"}, {"content", "Summarise the deploy log."}}})}}
        .dump();

class Serve {
 public:
  explicit Serve(const std::string& config) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      int null = ::open("/dev/null", O_WRONLY);
      dup2(null, 2);
      close(fds[0]);
      close(fds[1]);
      execl(g_exe.c_str(), g_exe.c_str(), "serve", "--config", config.c_str(), "--port", "0",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    std::string line;
    char c;
    while (line.size() < 512 && read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    close(fds[0]);
    auto colon = line.rfind(':');
    if (colon != std::string::npos) port_ = std::atoi(line.c_str() + colon + 1);
  }
  ~Serve() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * (v.size() - 1))];
}

std::vector<double> Sequential(int port, const std::string& token, int n) {
  httplib::Client c("127.0.0.1", port);
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);
  httplib::Headers h = {{"Authorization", "Bearer " + token}};
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    auto r = c.Post("/v1/chat/completions", h, kBody, "application/json");
    if (!r || r->status != 200) {
      std::fprintf(stderr, "request failed: %d\n", r ? r->status : -1);
      continue;
    }
    out.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return out;
}

double Throughput(const std::vector<int>& ports, const std::vector<std::string>& tokens,
                  int clients, double seconds) {
  std::atomic<long> done{0}, failed{0};
  auto stop = Clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> ts;
  for (int i = 0; i < clients; ++i)
    ts.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", ports[i % ports.size()]);
      c.set_keep_alive(true);
      c.set_tcp_nodelay(true);
      httplib::Headers h = {{"Authorization", "Bearer " + tokens[i % tokens.size()]}};
      while (Clock::now() < stop) {
        auto r = c.Post("/v1/chat/completions", h, kBody, "application/json");
        if (r && r->status == 200)
          done++;
        else
          failed++;
      }
    });
  for (auto& t : ts) t.join();
  if (failed) std::fprintf(stderr, "  (%ld requests failed)\n", failed.load());
  return done / seconds;
}

std::string CreateKey(const std::string& config) {
  auto r = RunShell(g_exe + " keys create --config " + Quote(config) +
                    " --name bench --budget 1000000000000");
  auto at = r.second.find("ak_");
  return at == std::string::npos ? "" : r.second.substr(at, r.second.find('\n', at) - at);
}

void Spread(const char* what, const std::vector<double>& runs, const char* unit) {
  double lo = *std::min_element(runs.begin(), runs.end());
  double hi = *std::max_element(runs.begin(), runs.end());
  double sum = 0;
  for (double r : runs) sum += r;
  std::printf("%-44s mean %8.0f %s  (runs:", what, sum / runs.size(), unit);
  for (double r : runs) std::printf(" %.0f", r);
  std::printf("; spread %.0f-%.0f)\n", lo, hi);
}

}  // namespace

int main(int argc, char** argv) {
  g_exe = argc > 1
              ? argv[1]
              : (std::filesystem::path(argv[0]).parent_path().parent_path() / "airlock").string();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows when piped
  PostgresServer pg;
  if (!pg.ok()) {
    std::fprintf(stderr, "store_bench: no PostgreSQL: %s%s\n", pg.skip_reason().c_str(),
                 pg.error().c_str());
    return 1;
  }
  std::string why;
  std::string db = pg.CreateDatabase("bench", &why);
  if (db.empty()) {
    std::fprintf(stderr, "store_bench: %s\n", why.c_str());
    return 1;
  }
  httplib::Server upstream;
  upstream.new_task_queue = [] { return new httplib::ThreadPool(16); };
  upstream.set_tcp_nodelay(true);
  upstream.Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kReply, "application/json");
  });
  int up_port = upstream.bind_to_any_port("127.0.0.1");
  std::thread up_thread([&] { upstream.listen_after_bind(); });

  auto dir = std::filesystem::temp_directory_path() / ("store-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto config = [&](const std::string& name, bool postgres) {
    std::string path = (dir / (name + ".toml")).string();
    std::ofstream f(path);
    f << "[[upstreams]]\nname='up'\nbase_url='http://127.0.0.1:" << up_port
      << "/v1'\njurisdiction='US'\nmodels=['m']\n[audit]\npath='" << (dir / (name + ".db")).string()
      << "'\n[server]\nkeys_db='" << (dir / "keys.db").string() << "'\n";
    if (postgres)
      f << "[store]\nurl='" << pg.Url(db) << "'\npassword_file='" << pg.password_file() << "'\n";
    return path;
  };

  std::printf("== 1. Added latency: PostgreSQL key store vs SQLite (sequential, 1 connection)\n");
  {
    std::string sqlite_config = config("sqlite", false);
    std::string pg_config = config("pg", true);
    std::string sqlite_key = CreateKey(sqlite_config);
    std::string pg_key = CreateKey(pg_config);
    Serve sqlite_serve(sqlite_config), pg_serve(pg_config);
    std::vector<double> p50_added, p99_added, s50, p50;
    for (int run = 0; run < 5; ++run) {
      auto s = Sequential(sqlite_serve.port(), sqlite_key, 1000);
      auto p = Sequential(pg_serve.port(), pg_key, 1000);
      std::printf(
          "run %d: SQLite p50 %.0f p99 %.0f us | PostgreSQL p50 %.0f p99 %.0f us | added "
          "p50 %.0f us\n",
          run + 1, Percentile(s, 0.5), Percentile(s, 0.99), Percentile(p, 0.5), Percentile(p, 0.99),
          Percentile(p, 0.5) - Percentile(s, 0.5));
      s50.push_back(Percentile(s, 0.5));
      p50.push_back(Percentile(p, 0.5));
      p50_added.push_back(Percentile(p, 0.5) - Percentile(s, 0.5));
      p99_added.push_back(Percentile(p, 0.99) - Percentile(s, 0.99));
    }
    Spread("SQLite store, p50", s50, "us");
    Spread("PostgreSQL store, p50", p50, "us");
    Spread("added by PostgreSQL, p50", p50_added, "us");
    Spread("added by PostgreSQL, p99", p99_added, "us");
  }

  std::printf("\n== 2. Throughput: N replicas on one PostgreSQL (16 closed-loop clients, 5 s)\n");
  {
    std::vector<std::string> configs;
    for (int i = 0; i < 4; ++i) configs.push_back(config("replica" + std::to_string(i), true));
    // One key for every client (each reservation of it waits for the key's row lock), and a key
    // per client (reservations of different keys do not wait for each other).
    std::vector<std::string> one_key = {CreateKey(configs[0])};
    std::vector<std::string> per_client;
    for (int i = 0; i < 16; ++i) per_client.push_back(CreateKey(configs[0]));
    {
      // The one-machine baseline: one replica on SQLite.
      std::string sqlite_config = config("sqlite-throughput", false);
      std::vector<std::string> sqlite_keys;
      for (int i = 0; i < 16; ++i) sqlite_keys.push_back(CreateKey(sqlite_config));
      Serve serve(sqlite_config);
      std::vector<int> ports = {serve.port()};
      Throughput(ports, sqlite_keys, 16, 1.0);
      for (const auto& keys : {std::vector<std::string>{sqlite_keys[0]}, sqlite_keys}) {
        std::vector<double> runs;
        for (int run = 0; run < 3; ++run) runs.push_back(Throughput(ports, keys, 16, 5.0));
        std::string what = std::string("1 replica on SQLite, ") +
                           (keys.size() == 1 ? "1 key" : "16 keys") + ", req/s";
        Spread(what.c_str(), runs, "req/s");
      }
    }
    for (int n : {1, 2, 4}) {
      std::vector<std::unique_ptr<Serve>> replicas;
      std::vector<int> ports;
      for (int i = 0; i < n; ++i) {
        replicas.push_back(std::make_unique<Serve>(configs[i]));
        ports.push_back(replicas.back()->port());
      }
      Throughput(ports, per_client, 16, 1.0);  // warm-up: connection pools, caches
      for (const auto* keys : {&one_key, &per_client}) {
        std::vector<double> runs;
        for (int run = 0; run < 3; ++run) runs.push_back(Throughput(ports, *keys, 16, 5.0));
        std::string what = std::to_string(n) + " replica(s), " +
                           (keys->size() == 1 ? "1 key" : "16 keys") + ", req/s";
        Spread(what.c_str(), runs, "req/s");
      }
    }
  }
  upstream.stop();
  up_thread.join();
  std::filesystem::remove_all(dir);
  return 0;
}
