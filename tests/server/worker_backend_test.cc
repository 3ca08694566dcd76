// The model worker process (server/worker_backend.h) driven directly: a real `airlock
// __model-worker` on stories260K gives the same text as the model in-process and streams it in
// pieces; a worker that misbehaves (the AIRLOCK_TEST_MODEL_WORKER hook: giant frame, garbage,
// invalid result, text for a request never sent, endless text, silence) or dies mid-request fails
// that request with kUnavailable, without crashing or hanging the caller, and the next request
// gets a fresh worker. No test asserts a duration.
#include "server/worker_backend.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <fstream>
#include <string>

#include "test_util.h"

namespace airlock::server {
namespace {

GenerateRequest Completion(const std::string& prompt, int max_tokens) {
  GenerateRequest r;
  r.chat = false;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  r.temperature = 0;
  return r;
}

struct Output {
  std::string text;
  int pieces = 0;
  Result<GenerateResult> result = Internal("not run");
};

Output Gen(ModelBackend& backend, const GenerateRequest& request,
           const std::function<void(int)>& on_piece = nullptr) {
  Output out;
  std::atomic<bool> never{false};
  out.result = backend.Generate(
      request,
      [&](std::string_view piece) {
        out.text += piece;
        if (on_piece) on_piece(out.pieces);
        ++out.pieces;
        return true;
      },
      never);
  return out;
}

EngineBackendOptions Engine() {
  EngineBackendOptions o;
  o.name = "stories";
  o.slots = 2;
  o.threads = 2;
  o.ctx = 256;
  return o;
}

std::shared_ptr<ModelBackend> StartWorker(const std::filesystem::path& model,
                                          int stall_timeout_s = 600) {
  WorkerBackendOptions o;
  o.program = AIRLOCK_EXE;
  o.gguf_path = model.string();
  o.engine = Engine();
  o.stall_timeout_s = stall_timeout_s;
  auto backend = StartWorkerBackend(o);
  EXPECT_TRUE(backend.has_value()) << backend.error().message();
  return backend.has_value() ? *backend : nullptr;
}

// Sets the hostile-worker hook for workers started while it lives.
class HostileMode {
 public:
  explicit HostileMode(const char* mode) { ::setenv("AIRLOCK_TEST_MODEL_WORKER", mode, 1); }
  ~HostileMode() { ::unsetenv("AIRLOCK_TEST_MODEL_WORKER"); }
};

TEST(WorkerBackendTest, WorkerGivesTheInProcessTextInPieces) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  const auto model = models / "stories260K.gguf";
  auto worker = StartWorker(model);
  ASSERT_NE(worker, nullptr);
  EXPECT_GT(ModelWorkerPid(*worker), 0);
  EXPECT_NE(ModelWorkerPid(*worker), ::getpid());
  auto local = LoadEngineBackend(model.string(), Engine());
  ASSERT_TRUE(local.has_value()) << local.error().message();
  for (const auto& prompt : {"Once upon a time", "The cat sat on the"}) {
    Output a = Gen(*worker, Completion(prompt, 30));
    Output b = Gen(**local, Completion(prompt, 30));
    ASSERT_TRUE(a.result.has_value()) << a.result.error().message();
    ASSERT_TRUE(b.result.has_value());
    EXPECT_EQ(a.text, b.text);
    EXPECT_GT(a.pieces, 1) << "text must stream as it is generated";
    EXPECT_EQ(a.result->completion_tokens, b.result->completion_tokens);
    EXPECT_EQ(a.result->prompt_tokens, b.result->prompt_tokens);
    EXPECT_EQ(a.result->finish_reason, b.result->finish_reason);
  }
  EXPECT_EQ(worker->CountTokens("Once upon a time"), (*local)->CountTokens("Once upon a time"));
}

TEST(WorkerBackendTest, WorkerThatCannotLoadTheModelSaysWhy) {
  testing::TempDir dir("worker-bad-model");
  const auto bad = dir.path() / "not-a-model.gguf";
  std::ofstream(bad) << "this is not a GGUF file";
  WorkerBackendOptions o;
  o.program = AIRLOCK_EXE;
  o.gguf_path = bad.string();
  o.engine = Engine();
  auto backend = StartWorkerBackend(o);
  ASSERT_FALSE(backend.has_value());
  EXPECT_EQ(backend.error().code(), StatusCode::kUnavailable);
  EXPECT_NE(backend.error().message().find("could not load the model"), std::string::npos)
      << backend.error().message();
}

// Attack: a model file that takes over the worker makes it send whatever it likes. Each kind of
// misbehaviour fails its request (never crashes or hangs the gateway side), and the next request
// is served by a new worker.
class HostileWorkerTest : public ::testing::TestWithParam<const char*> {};

TEST_P(HostileWorkerTest, HostileWorkerFailsItsRequestAndIsReplaced) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  HostileMode hostile(GetParam());
  auto worker = StartWorker(models / "stories260K.gguf");
  ASSERT_NE(worker, nullptr);
  const pid_t first = ModelWorkerPid(*worker);
  Output bad = Gen(*worker, Completion("airlock-test-hostile once", 20));
  ASSERT_FALSE(bad.result.has_value()) << "a hostile worker's answer was accepted: " << bad.text;
  EXPECT_EQ(bad.result.error().code(), StatusCode::kUnavailable) << bad.result.error().message();
  EXPECT_NE(bad.result.error().message().find("broke the protocol"), std::string::npos)
      << bad.result.error().message();
  Output good = Gen(*worker, Completion("Once upon a time", 10));
  ASSERT_TRUE(good.result.has_value()) << good.result.error().message();
  EXPECT_FALSE(good.text.empty());
  EXPECT_NE(ModelWorkerPid(*worker), first) << "the misbehaving worker was not replaced";
}

INSTANTIATE_TEST_SUITE_P(Modes, HostileWorkerTest,
                         ::testing::Values("giant-frame", "garbage", "bad-result", "wrong-id",
                                           "flood"));

// Attack: a worker that stops answering (an infinite loop in a parser) holds the request only
// until the stall timeout; then it is killed.
TEST(WorkerBackendTest, SilentWorkerIsKilledAtTheStallTimeout) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  HostileMode hostile("stall");
  auto worker = StartWorker(models / "stories260K.gguf", /*stall_timeout_s=*/1);
  ASSERT_NE(worker, nullptr);
  Output bad = Gen(*worker, Completion("airlock-test-hostile", 20));
  ASSERT_FALSE(bad.result.has_value());
  EXPECT_EQ(bad.result.error().code(), StatusCode::kUnavailable);
  EXPECT_NE(bad.result.error().message().find("sent nothing"), std::string::npos)
      << bad.result.error().message();
  EXPECT_EQ(bad.text, "stalling");  // what arrived before the silence was delivered
  Output good = Gen(*worker, Completion("Once upon a time", 10));
  EXPECT_TRUE(good.result.has_value()) << good.result.error().message();
}

// Regression: the worker killed while a request waits on it (crash, OOM killer) fails that
// request at once with kUnavailable; the next one starts a new worker.
TEST(WorkerBackendTest, WorkerKilledMidRequestFailsItAndTheNextRequestWorks) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  HostileMode hostile("stall");
  auto worker = StartWorker(models / "stories260K.gguf");
  ASSERT_NE(worker, nullptr);
  const pid_t pid = ModelWorkerPid(*worker);
  Output bad = Gen(*worker, Completion("airlock-test-hostile", 20), [&](int piece) {
    if (piece == 0) ::kill(pid, SIGKILL);
  });
  ASSERT_FALSE(bad.result.has_value());
  EXPECT_EQ(bad.result.error().code(), StatusCode::kUnavailable);
  EXPECT_NE(bad.result.error().message().find("SIGKILL"), std::string::npos)
      << bad.result.error().message();
  Output good = Gen(*worker, Completion("Once upon a time", 10));
  ASSERT_TRUE(good.result.has_value()) << good.result.error().message();
  EXPECT_NE(ModelWorkerPid(*worker), pid);
}

// A client that goes away: its request returns "cancelled" and the worker keeps serving.
TEST(WorkerBackendTest, CancelledRequestEndsAndTheWorkerStaysUsable) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  auto worker = StartWorker(models / "stories260K.gguf");
  ASSERT_NE(worker, nullptr);
  const pid_t pid = ModelWorkerPid(*worker);
  std::atomic<bool> cancel{false};
  int pieces = 0;
  auto r = worker->Generate(
      Completion("Once upon a time", 200),
      [&](std::string_view) {
        if (++pieces == 2) cancel = true;
        return true;
      },
      cancel);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->finish_reason, "cancelled");
  Output good = Gen(*worker, Completion("Once upon a time", 10));
  ASSERT_TRUE(good.result.has_value()) << good.result.error().message();
  EXPECT_EQ(ModelWorkerPid(*worker), pid);
}

}  // namespace
}  // namespace airlock::server
