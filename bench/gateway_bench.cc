// Gateway overhead: the same fake upstream (a test double answering a fixed completion) measured
// directly and through an in-process Gateway (policy with detectors, pseudonymization rule, audit
// log with fsync'd group commits on disk), in the same run. Prints added latency p50/p99 for
// sequential requests, throughput with concurrent clients, and latency under a paced load of
// ~1,000 requests/s; then Google Benchmark measures detector throughput (MB/s).
// Short by design (about 15 s). Run: build/bench/gateway_bench [--benchmark_min_time=0.2]
// For a profiler: --gateway_throughput_only=SECONDS runs only the closed-loop phase through the
// gateway (fsync=true; AIRLOCK_BENCH_NO_FSYNC=1 for fsync=false), printing the pid first.
// Debian's httplib CMake package defines these for its users (the flags its libcpp-httplib
// was built with); keep them for a standalone compile.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <benchmark/benchmark.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "policy/detectors.h"
#include "server/gateway.h"

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

const char* kReply =
    R"({"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,)"
    R"("message":{"role":"assistant","content":"The answer is 42."},"finish_reason":"stop"}],)"
    R"("usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25}})";

std::string RequestBody() {
  json body = {
      {"model", "m"},
      {"max_tokens", 16},
      {"messages", json::array({{{"role", "system"}, {"content", "You are a helpful assistant."}},
                                {{"role", "user"},
                                 {"content",
                                  "Please summarise the ticket from dana@example.com about the "
                                  "failed deploy on host 10.2.3.4; the error said timeout after "
                                  "30 s and the rollback worked. Keep it short."}}})}};
  return body.dump();
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t i = static_cast<std::size_t>(p * (v.size() - 1));
  return v[i];
}

// Sequential latencies (microseconds) of n requests on one keep-alive connection.
std::vector<double> Sequential(int port, int n, const std::string& body) {
  httplib::Client c("127.0.0.1", port);
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    auto r = c.Post("/v1/chat/completions", body, "application/json");
    auto t1 = Clock::now();
    if (!r || r->status != 200) {
      std::fprintf(stderr, "request failed\n");
      continue;
    }
    out.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  return out;
}

// Requests per second with `clients` closed-loop clients for `seconds`.
double Throughput(int port, int clients, double seconds, const std::string& body) {
  std::atomic<long> done{0};
  auto stop = Clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> ts;
  for (int i = 0; i < clients; ++i)
    ts.emplace_back([&] {
      httplib::Client c("127.0.0.1", port);
      c.set_keep_alive(true);
      c.set_tcp_nodelay(true);
      while (Clock::now() < stop) {
        auto r = c.Post("/v1/chat/completions", body, "application/json");
        if (r && r->status == 200) done++;
      }
    });
  for (auto& t : ts) t.join();
  return done / seconds;
}

// Open-loop paced load: `rate` requests/s spread over `clients` connections; returns latencies.
std::vector<double> Paced(int port, int clients, double rate, double seconds,
                          const std::string& body, long* sent) {
  std::vector<std::vector<double>> lat(clients);
  std::vector<std::thread> ts;
  auto start = Clock::now();
  for (int i = 0; i < clients; ++i)
    ts.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", port);
      c.set_keep_alive(true);
      c.set_tcp_nodelay(true);
      double interval = clients / rate;
      for (long k = 0;; ++k) {
        auto due = start + std::chrono::duration<double>(interval * k + i * interval / clients);
        if (due > start + std::chrono::duration<double>(seconds)) break;
        std::this_thread::sleep_until(due);
        auto t0 = Clock::now();
        auto r = c.Post("/v1/chat/completions", body, "application/json");
        if (r && r->status == 200)
          lat[i].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    });
  for (auto& t : ts) t.join();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  *sent = static_cast<long>(all.size());
  return all;
}

// Set by --gateway_throughput_only=SECONDS: run only the closed-loop phase through the gateway
// (for a profiler attached to this process), then exit.
double g_throughput_only_s = 0;

void GatewayOverhead(bool fsync) {
  httplib::Server upstream;
  upstream.new_task_queue = [] { return new httplib::ThreadPool(16); };
  upstream.set_tcp_nodelay(true);
  upstream.Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kReply, "application/json");
  });
  int up_port = upstream.bind_to_any_port("127.0.0.1");
  std::thread up_thread([&] { upstream.listen_after_bind(); });

  auto dir = std::filesystem::current_path() / ("gateway-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string toml =
      "[[upstreams]]\nname='u'\nbase_url='http://127.0.0.1:" + std::to_string(up_port) +
      "/v1'\njurisdiction='US'\nmodels=['m']\nallowed_data_classes=['ip_address']\n"
      "[[rules]]\ndata_classes=['email']\naction='pseudonymize'\n"
      "[audit]\npath='" +
      (dir / "audit.db").string() + "'\nfsync=" + (fsync ? "true" : "false") +
      "\n[server]\nkeys_db='" + (dir / "keys.db").string() + "'\n";
  auto policy = airlock::policy::ParsePolicy(toml);
  if (!policy) {
    std::fprintf(stderr, "%s\n", policy.error().message().c_str());
    return;
  }
  airlock::server::GatewayOptions options;
  options.port = 0;
  options.policy = *policy;
  auto gw = airlock::server::Gateway::Create(options);
  if (!gw || !(*gw)->Start().ok()) {
    std::fprintf(stderr, "gateway failed to start\n");
    return;
  }
  int gw_port = (*gw)->port();
  std::string body = RequestBody();
  if (g_throughput_only_s > 0) {
    std::printf("pid %d: closed-loop through the gateway for %.0f s (fsync=%s)\n", getpid(),
                g_throughput_only_s, fsync ? "true" : "false");
    std::fflush(stdout);
    std::printf("  via gateway %.0f req/s\n", Throughput(gw_port, 8, g_throughput_only_s, body));
  } else {
    Sequential(up_port, 50, body);  // warm up
    Sequential(gw_port, 50, body);
    auto direct = Sequential(up_port, 1000, body);
    auto via = Sequential(gw_port, 1000, body);
    std::printf("Gateway overhead, audit fsync=%s (same fake upstream, same run, %u CPUs)\n",
                fsync ? "true" : "false", std::thread::hardware_concurrency());
    std::printf(
        "  sequential, 1000 requests: direct p50 %.0f us p99 %.0f us | via gateway p50 %.0f "
        "us p99 %.0f us | added p50 %.0f us p99 %.0f us\n",
        Percentile(direct, .5), Percentile(direct, .99), Percentile(via, .5), Percentile(via, .99),
        Percentile(via, .5) - Percentile(direct, .5),
        Percentile(via, .99) - Percentile(direct, .99));
    double tput_direct = Throughput(up_port, 8, 2.0, body);
    double tput_via = Throughput(gw_port, 8, 2.0, body);
    std::printf(
        "  throughput, 8 closed-loop clients, 2 s: direct %.0f req/s | via gateway %.0f "
        "req/s (%.2fx)\n",
        tput_direct, tput_via, tput_via / tput_direct);
    long n_direct = 0, n_via = 0;
    auto paced_direct = Paced(up_port, 16, 1000, 2.0, body, &n_direct);
    auto paced_via = Paced(gw_port, 16, 1000, 2.0, body, &n_via);
    std::printf(
        "  paced 1000 req/s for 2 s (16 connections): direct %ld ok, p50 %.0f us p99 %.0f us"
        " | via gateway %ld ok, p50 %.0f us p99 %.0f us | added p50 %.0f us\n",
        n_direct, Percentile(paced_direct, .5), Percentile(paced_direct, .99), n_via,
        Percentile(paced_via, .5), Percentile(paced_via, .99),
        Percentile(paced_via, .5) - Percentile(paced_direct, .5));
  }
  std::fflush(stdout);
  (*gw)->Stop();
  (*gw)->Wait();
  gw->reset();
  upstream.stop();
  up_thread.join();
  std::filesystem::remove_all(dir);
}

std::string MixedText(std::size_t bytes) {
  const char* pieces[] = {
      "The quarterly report shows revenue growth across all regions. ",
      "Contact ops+alerts@example.com if the deploy on 10.20.30.40 fails again. ",
      "请把发票发给财务部门，并抄送项目经理。 ",
      "def handler(event):\n    return {'status': 200, 'body': json.dumps(event)}\n",
      "Order 2024-0001-5555 shipped; tracking 1Z999AA10123456784. ",
      "export API_TOKEN=ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5 # rotate me\n",
  };
  std::string s;
  for (std::size_t i = 0; s.size() < bytes; ++i) s += pieces[(i * 7) % 6];
  s.resize(bytes);
  return s;
}

void BM_DetectorsMixedText(benchmark::State& state) {
  auto set = airlock::policy::DetectorSet::Create();
  std::string text = MixedText(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(set.value()->Scan(text));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_DetectorsMixedText)->Arg(4 << 10)->Arg(1 << 20);

void BM_DetectorsPlainProse(benchmark::State& state) {
  auto set = airlock::policy::DetectorSet::Create();
  std::string text;
  while (text.size() < (1 << 20)) text += "The quick brown fox jumps over the lazy dog. ";
  for (auto _ : state) benchmark::DoNotOptimize(set.value()->Scan(text));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_DetectorsPlainProse);

}  // namespace

int main(int argc, char** argv) {
  const std::string only_flag = "--gateway_throughput_only=";
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).rfind(only_flag, 0) == 0) {
      g_throughput_only_s = std::atof(argv[i] + only_flag.size());
      GatewayOverhead(std::getenv("AIRLOCK_BENCH_NO_FSYNC") == nullptr);
      return 0;
    }
  GatewayOverhead(true);
  GatewayOverhead(false);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
