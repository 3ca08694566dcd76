// Privilege separation in a real `airlock serve` (AIRLOCK_EXE) serving stories260K: completions
// go through the model worker process; the gateway never maps the model file; the worker has
// none of the gateway's secrets (no upstream key in its environment, and the sandbox refuses it
// the key database, the audit signing key, the policy, the gateway's /proc environ, sockets,
// exec and fork, proven by the
// AIRLOCK_TEST_SANDBOX_ATTEMPT hook run inside the worker); a worker killed mid-request gives
// the client an error, leaves an audit record, and the next request works; a worker sending
// garbage gets a 502, not a crashed gateway. Every wait is bounded; no test asserts a duration.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "serve_process.h"
#include "test_util.h"

namespace {

using airlock::testing::ReadFileText;

using json = nlohmann::json;
using airlock::testing::ServeProcess;
using airlock::testing::TempDir;

constexpr const char* kUpstreamSecret = "sk-airlock-test-upstream-secret-7f3a";

std::string Shell(const std::string& cmd) { return airlock::testing::RunShell(cmd).second; }

// The child processes of `parent` (by /proc/<pid>/stat).
std::vector<pid_t> Children(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = ReadFileText(e.path() / "stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    int ppid = 0;
    char state = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == parent &&
        state != 'Z')
      out.push_back(std::stoi(name));
  }
  return out;
}

// `airlock serve MODEL --config CONFIG --port 0 --ctx 256 EXTRA...`, stderr to `log`, with `env`
// added to its environment ("{SERVE_PID}" becomes serve's process id).
class Serve : public ServeProcess {
 public:
  Serve(const std::string& model, const std::string& config, const std::string& log,
        const std::vector<std::string>& env, const std::vector<std::string>& extra_args = {})
      : ServeProcess(Args(model, config, extra_args), {.stderr_path = log, .env = env}) {}
  // The model worker: the one child of serve.
  pid_t Worker() const {
    auto c = Children(pid());
    return c.size() == 1 ? c[0] : 0;
  }

 private:
  static std::vector<std::string> Args(const std::string& model, const std::string& config,
                                       const std::vector<std::string>& extra_args) {
    std::vector<std::string> args = {"serve",  model, "--config", config,
                                     "--port", "0",   "--ctx",    "256"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    return args;
  }
};

class ServeWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = airlock::testing::FixturesDir();
    if (!root || !std::filesystem::exists(*root / "gguf-models" / "stories260K.gguf"))
      GTEST_SKIP() << "third-party fixtures not found (../shared/fixtures/gguf-models); set "
                      "AIRLOCK_FIXTURES to run this test";
    model_ = (*root / "gguf-models" / "stories260K.gguf").string();
    dir_ = std::make_unique<TempDir>("serve-worker");
    keys_db_ = (dir_->path() / "keys.db").string();
    audit_db_ = (dir_->path() / "audit.db").string();
    log_ = (dir_->path() / "serve.log").string();
    config_ = (dir_->path() / "policy.toml").string();
    std::string key =
        Shell(std::string(AIRLOCK_EXE) + " keys create --db '" + keys_db_ + "' --name admin");
    while (!key.empty() && (key.back() == '\n' || key.back() == ' ')) key.pop_back();
    key_ = key.substr(key.rfind('\n') == std::string::npos ? 0 : key.rfind('\n') + 1);
    ASSERT_EQ(key_.rfind("ak_", 0), 0u) << key_;
    // An upstream whose key lives in the gateway's environment (never contacted here).
    std::ofstream(config_) << "[[upstreams]]\nname='up'\nbase_url='http://127.0.0.1:9/v1'\n"
                           << "jurisdiction='US'\nmodels=['remote']\napi_key_env='"
                           << "AIRLOCK_TEST_UPSTREAM_KEY'\n[audit]\npath='" << audit_db_
                           << "'\n[server]\nkeys_db='" << keys_db_ << "'\n";
  }
  std::string Log() const { return ReadFileText(log_); }
  // A copy of the model in its own folder (same file name), signed with a fresh key as
  // MODEL.sig; returns {model path, public key path}.
  std::pair<std::string, std::string> SignedModelCopy() {
    std::filesystem::create_directory(dir_->path() / "signed");
    const std::string model = (dir_->path() / "signed" / "stories260K.gguf").string();
    std::filesystem::copy_file(model_, model);
    const std::string keys = (dir_->path() / "signer").string();
    EXPECT_NE(Shell(std::string(AIRLOCK_EXE) + " keygen --out '" + keys + "'"), "");
    Shell(std::string(AIRLOCK_EXE) + " sign '" + model + "' --key '" + keys + ".key'");
    EXPECT_TRUE(std::filesystem::exists(model + ".sig"));
    return {model, keys + ".pub"};
  }
  httplib::Result Post(int port, const json& body) {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(60, 0);
    return c.Post("/v1/chat/completions", {{"Authorization", "Bearer " + key_}}, body.dump(),
                  "application/json");
  }
  static json Chat(const std::string& text, bool stream = false) {
    return {{"model", "stories260K"},
            {"messages", json::array({{{"role", "user"}, {"content", text}}})},
            {"max_tokens", 16},
            {"temperature", 0},
            {"stream", stream}};
  }
  // Waits (bounded) until the log contains `text`.
  bool WaitForLog(const std::string& text) {
    for (int i = 0; i < 600; ++i) {
      if (Log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  std::string model_, keys_db_, audit_db_, log_, config_, key_;
  std::unique_ptr<TempDir> dir_;
};

TEST_F(ServeWorkerTest, ChatCompletionRunsInTheWorkerNotTheGateway) {
  Serve serve(model_, config_, log_, {});
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  auto r = Post(serve.port(), Chat("Tell me a story"));
  ASSERT_TRUE(r) << Log();
  ASSERT_EQ(r->status, 200) << r->body;
  json body = json::parse(r->body);
  EXPECT_FALSE(body["choices"][0]["message"]["content"].get<std::string>().empty()) << r->body;
  EXPECT_GT(body["usage"]["completion_tokens"].get<int>(), 0);
  const pid_t worker = serve.Worker();
  ASSERT_GT(worker, 0) << "no model worker process";
  const std::string real_model = std::filesystem::canonical(model_).string();
  // The engine maps the model file: in the worker, never in the gateway.
  EXPECT_NE(ReadFileText("/proc/" + std::to_string(worker) + "/maps").find(real_model),
            std::string::npos);
  EXPECT_EQ(ReadFileText("/proc/" + std::to_string(serve.pid()) + "/maps").find(real_model),
            std::string::npos)
      << "the gateway process mapped the model file";
  std::string cmdline = ReadFileText("/proc/" + std::to_string(worker) + "/cmdline");
  EXPECT_NE(cmdline.find("__model-worker"), std::string::npos);
}

// /metrics reports each local model's KV cache: the bytes allocated for all its slots and the
// cache type, as the worker reports them in its hello (and as the in-process engine holds them).
// stories260K: 5 layers, K and V rows of 4 KV heads x 8 values per position.
TEST_F(ServeWorkerTest, MetricsReportTheKvCacheOfEachLocalModel) {
  const struct {
    std::vector<std::string> args;
    std::string gauge;
  } cases[] = {
      // 2 slots x 256 positions x 5 layers x (64 + 64) bytes (F16, the default)
      {{"--slots", "2"},
       "airlock_engine_kv_cache_bytes{model=\"stories260K\",kv_type=\"f16\"} 327680\n"},
      // 3 slots x 256 x 5 x (128 + 128) bytes (F32), in the gateway's own process
      {{"--slots", "3", "--kv-type", "f32", "--in-process-models"},
       "airlock_engine_kv_cache_bytes{model=\"stories260K\",kv_type=\"f32\"} 983040\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.gauge);
    Serve serve(model_, config_, log_, {}, c.args);
    ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
    httplib::Client client("127.0.0.1", serve.port());
    client.set_read_timeout(60, 0);
    auto metrics = client.Get("/metrics", {{"Authorization", "Bearer " + key_}});
    ASSERT_TRUE(metrics) << Log();
    ASSERT_EQ(metrics->status, 200) << metrics->body;
    EXPECT_NE(metrics->body.find("# TYPE airlock_engine_kv_cache_bytes gauge\n"),
              std::string::npos);
    EXPECT_NE(metrics->body.find("\n" + c.gauge), std::string::npos) << metrics->body;
  }
}

// Attack: code running in the worker (a parser bug exploited by the model file) looks for the
// gateway's secrets. The upstream key is not in its environment, and the sandbox refuses the key
// database, the audit log and its signing key, the policy, new sockets, exec and fork.
TEST_F(ServeWorkerTest, ModelWorkerHoldsNoSecrets) {
  const std::string audit_key = audit_db_ + ".key";
  {
    // A first start creates the audit log and its signing key (workers start before them).
    Serve first(model_, config_, log_, {});
    ASSERT_GT(first.port(), 0) << first.first_line() << Log();
  }
  const std::string attempts = "read:" + keys_db_ + ",read:" + audit_key + ",read:" + audit_db_ +
                               ",read:" + config_ + ",write:" + dir_->path().string() +
                               "/worker-wrote,read:/proc/{SERVE_PID}/environ,socket,exec,fork";
  Serve serve(model_, config_, log_,
              {std::string("AIRLOCK_TEST_UPSTREAM_KEY=") + kUpstreamSecret,
               "AIRLOCK_TEST_SANDBOX_ATTEMPT=" + attempts});
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  ASSERT_TRUE(std::filesystem::exists(audit_key)) << "the gateway holds an audit signing key";
  const pid_t worker = serve.Worker();
  ASSERT_GT(worker, 0);
  EXPECT_NE(ReadFileText("/proc/" + std::to_string(serve.pid()) + "/environ").find(kUpstreamSecret),
            std::string::npos)
      << "test setup: the gateway should hold the upstream key";
  EXPECT_EQ(ReadFileText("/proc/" + std::to_string(worker) + "/environ").find(kUpstreamSecret),
            std::string::npos)
      << "the model worker inherited the upstream key";
  const std::string log = Log();
  for (const std::string& path : {keys_db_, audit_key, audit_db_, config_})
    EXPECT_NE(log.find("airlock sandbox test: read:" + path + ": errno=EACCES"), std::string::npos)
        << path << "\n"
        << log;
  EXPECT_NE(log.find("/worker-wrote: errno=EACCES"), std::string::npos) << log;
  // Nor the gateway's environment through /proc.
  EXPECT_NE(log.find("airlock sandbox test: read:/proc/" + std::to_string(serve.pid()) +
                     "/environ: errno=EACCES"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("airlock sandbox test: socket: errno=EPERM"), std::string::npos) << log;
  EXPECT_NE(log.find("airlock sandbox test: exec: errno=EPERM"), std::string::npos) << log;
  EXPECT_NE(log.find("airlock sandbox test: fork: errno=EPERM"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(dir_->path() / "worker-wrote"));
  // Confined, it still serves.
  auto r = Post(serve.port(), Chat("Hello"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// Regression: the worker dying mid-request (here: killed while it stalls after its first piece)
// fails the request with an error the client sees, leaves an audit record naming the failure,
// and the next request is served by a new worker.
TEST_F(ServeWorkerTest, WorkerKilledMidRequestIs502AuditedAndReplaced) {
  Serve serve(model_, config_, log_, {"AIRLOCK_TEST_MODEL_WORKER=stall"});
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  const pid_t first = serve.Worker();
  ASSERT_GT(first, 0);
  std::optional<httplib::Result> stalled;
  std::thread client([&] { stalled.emplace(Post(serve.port(), Chat("airlock-test-hostile"))); });
  const bool stalls = WaitForLog("airlock test: model worker stalls");
  kill(first, SIGKILL);
  client.join();
  ASSERT_TRUE(stalls) << Log();
  ASSERT_TRUE(stalled.has_value() && *stalled) << Log();
  EXPECT_EQ((*stalled)->status, 502) << (*stalled)->body;
  EXPECT_NE((*stalled)->body.find("model worker"), std::string::npos) << (*stalled)->body;
  std::string audit =
      Shell(std::string(AIRLOCK_EXE) + " audit show --log '" + audit_db_ + "' --json --limit 1000");
  EXPECT_NE(audit.find("model worker failed"), std::string::npos) << audit;
  EXPECT_NE(audit.find("502"), std::string::npos) << audit;
  auto next = Post(serve.port(), Chat("Once upon a time"));
  ASSERT_TRUE(next) << Log();
  EXPECT_EQ(next->status, 200) << next->body;
  EXPECT_NE(serve.Worker(), first);
  EXPECT_GT(serve.Worker(), 0);
}

// Attack (red team): a compromised worker, which sees every prompt, puts another user's data in
// an error message; it is withheld from the client and the audit, as an upstream's would be.
TEST_F(ServeWorkerTest, WorkerErrorMessageCarryingDataIsWithheld) {
  Serve serve(model_, config_, log_, {"AIRLOCK_TEST_MODEL_WORKER=leaky-error"});
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  auto r = Post(serve.port(), Chat("airlock-test-hostile"));
  ASSERT_TRUE(r) << Log();
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(r->body.find("alice.liddell"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("4111"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("withheld"), std::string::npos) << r->body;
  // Streamed, the client gets an error event, and the audit record the withheld message too.
  auto streamed = Post(serve.port(), Chat("airlock-test-hostile", /*stream=*/true));
  ASSERT_TRUE(streamed) << Log();
  EXPECT_EQ(streamed->body.find("alice.liddell"), std::string::npos) << streamed->body;
  EXPECT_NE(streamed->body.find("\"error\""), std::string::npos) << streamed->body;
  std::string audit =
      Shell(std::string(AIRLOCK_EXE) + " audit show --log '" + audit_db_ + "' --json --limit 1000");
  EXPECT_EQ(audit.find("alice.liddell"), std::string::npos) << audit;
  EXPECT_EQ(audit.find("4111 1111"), std::string::npos) << audit;
  EXPECT_NE(audit.find("model failed: (its error message was withheld"), std::string::npos)
      << audit;
}

// Attack (red team): serve --require-signature checked the model once, at start; the file is
// then replaced by a tampered copy and the worker dies (killed here; a crash the model causes
// does the same). The restarted worker must not load the unsigned file: 502, audited.
TEST_F(ServeWorkerTest, ModelReplacedAfterStartIsNotLoadedByARestartedWorker) {
  const auto [model, public_key] = SignedModelCopy();
  ASSERT_FALSE(HasFailure());
  Serve serve(model, config_, log_, {}, {"--require-signature", public_key});
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  auto before = Post(serve.port(), Chat("Once upon a time"));
  ASSERT_TRUE(before) << Log();
  EXPECT_EQ(before->status, 200) << before->body;
  // The tampered copy takes the signed file's place (a new file, as `mv` does).
  const std::string tampered = model + ".new";
  std::filesystem::copy_file(model_, tampered);
  std::ofstream(tampered, std::ios::app) << "x";
  std::filesystem::rename(tampered, model);
  const pid_t first = serve.Worker();
  ASSERT_GT(first, 0);
  kill(first, SIGKILL);
  // A request may still reach the dying worker ("worker is gone"); none may be answered, and
  // once the gateway has seen the death, the restart is refused.
  bool refused_restart = false;
  for (int i = 0; i < 50 && !refused_restart; ++i) {
    auto after = Post(serve.port(), Chat("Once upon a time"));
    ASSERT_TRUE(after) << Log();
    ASSERT_EQ(after->status, 502) << after->body;
    refused_restart = after->body.find("not started") != std::string::npos;
  }
  EXPECT_TRUE(refused_restart) << Log();
  std::string audit =
      Shell(std::string(AIRLOCK_EXE) + " audit show --log '" + audit_db_ + "' --json --limit 1000");
  EXPECT_NE(audit.find("502"), std::string::npos) << audit;
  EXPECT_EQ(serve.Worker(), 0) << "a worker runs the unsigned model";
}

// Attack: the signed model is rewritten in place (the same file, so a worker that mapped it sees
// the new bytes) while serve runs. The worker must be retired before its next request and the
// restart refused: no answer from bytes that were never checked.
TEST_F(ServeWorkerTest, ModelRewrittenInPlaceRetiresTheWorkerAndIsNotAnsweredFrom) {
  const auto [model, public_key] = SignedModelCopy();
  ASSERT_FALSE(HasFailure());
  Serve serve(model, config_, log_, {}, {"--require-signature", public_key});
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  auto before = Post(serve.port(), Chat("Once upon a time"));
  ASSERT_TRUE(before) << Log();
  ASSERT_EQ(before->status, 200) << before->body;
  const pid_t first = serve.Worker();
  ASSERT_GT(first, 0);
  // One weight byte flipped in place (the tensor data ends the file): the file still loads.
  {
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    char c = 0;
    f.get(c);
    f.seekp(-1, std::ios::end);
    f.put(static_cast<char>(c ^ 0x55));
  }
  auto after = Post(serve.port(), Chat("Once upon a time"));
  ASSERT_TRUE(after) << Log();
  EXPECT_EQ(after->status, 502) << after->body;
  EXPECT_NE(after->body.find("not started"), std::string::npos) << after->body;
  EXPECT_NE(waitpid(serve.pid(), nullptr, WNOHANG), serve.pid()) << "the gateway exited";
  EXPECT_EQ(serve.Worker(), 0) << "a worker runs the rewritten model";
}

// Attack (red team R1): whoever can write the signed model maps it shared and writable and
// dirties its pages before serve checks it; writes through that mapping later move no timestamp,
// so the per-request check cannot see them. The worker loads a sealed copy of the checked bytes:
// the answer after the tamper is the answer before it.
TEST_F(ServeWorkerTest, ModelRewrittenThroughADirtySharedMappingIsNotAnsweredFrom) {
  const auto [model, public_key] = SignedModelCopy();
  ASSERT_FALSE(HasFailure());
  const std::size_t size = std::filesystem::file_size(model);
  const int fd = ::open(model.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  void* mapping = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  ASSERT_NE(mapping, MAP_FAILED);
  char* bytes = static_cast<char*>(mapping);
  // The second half of the file is tensor data; every page of it made dirty, bytes unchanged.
  const std::size_t from = size / 2 / 4096 * 4096;
  volatile char* dirty = bytes;  // a store the compiler keeps though it writes the same value
  for (std::size_t i = from; i < size; i += 4096) dirty[i] = dirty[i];
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the timestamp tick

  Serve serve(model, config_, log_, {}, {"--require-signature", public_key});
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  auto before = Post(serve.port(), Chat("Once upon a time"));
  ASSERT_TRUE(before) << Log();
  ASSERT_EQ(before->status, 200) << before->body;
  std::memset(bytes + from, 0, size - from);  // the weights zeroed, through the dirty pages
  auto after = Post(serve.port(), Chat("Once upon a time"));
  ASSERT_TRUE(after) << Log();
  if (after->status == 200) {
    EXPECT_EQ(json::parse(after->body)["choices"][0]["message"]["content"],
              json::parse(before->body)["choices"][0]["message"]["content"])
        << "answered from weights that were never checked";
  } else {
    // A timestamp that moved after all (the pages were written back in between) retires the
    // worker instead: refused, never answered from the tampered bytes.
    EXPECT_EQ(after->status, 502) << after->body;
  }
  ::munmap(mapping, size);
}

// The worker maps the descriptor the gateway checked and cannot open the model by its path: a
// file renamed over the path is invisible to it, and its sandbox grants no read of the path.
TEST_F(ServeWorkerTest, WorkerCannotOpenTheModelByItsPath) {
  Serve serve(model_, config_, log_, {"AIRLOCK_TEST_SANDBOX_ATTEMPT=read:" + model_});
  ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
  EXPECT_NE(Log().find("airlock sandbox test: read:" + model_ + ": errno=EACCES"),
            std::string::npos)
      << Log();
  auto r = Post(serve.port(), Chat("Once upon a time"));
  ASSERT_TRUE(r) << Log();
  EXPECT_EQ(r->status, 200) << r->body;
}

// Attack: a worker that answers garbage (and one announcing a 4 GiB frame) gets its requests
// answered 502, streamed or not; the gateway stays up and serves the next request.
TEST_F(ServeWorkerTest, HostileWorkerCannotCrashOrHangTheGateway) {
  for (const char* mode : {"garbage", "giant-frame"}) {
    Serve serve(model_, config_, log_, {std::string("AIRLOCK_TEST_MODEL_WORKER=") + mode});
    ASSERT_GT(serve.port(), 0) << serve.first_line() << Log();
    auto bad = Post(serve.port(), Chat("airlock-test-hostile"));
    ASSERT_TRUE(bad) << mode << Log();
    EXPECT_EQ(bad->status, 502) << mode << bad->body;
    auto streamed = Post(serve.port(), Chat("airlock-test-hostile", /*stream=*/true));
    ASSERT_TRUE(streamed) << mode << Log();
    EXPECT_NE(streamed->body.find("\"error\""), std::string::npos) << mode << streamed->body;
    auto good = Post(serve.port(), Chat("Once upon a time"));
    ASSERT_TRUE(good) << mode << Log();
    EXPECT_EQ(good->status, 200) << mode << good->body;
    EXPECT_EQ(waitpid(serve.pid(), nullptr, WNOHANG), 0) << "the gateway exited";
  }
}

}  // namespace
