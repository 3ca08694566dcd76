// EngineBackend (server/engine_backend.h) on stories260K: concurrent requests decoded together
// in batched steps (and, with batched = false, each slot on its own) give exactly the text the
// same requests give one at a time (greedy), a
// request cancelled mid-stream or while queued leaves the others undisturbed and frees its
// place, and the queue-depth metric returns to zero.
#include "server/engine_backend.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace airlock::server {
namespace {

struct Output {
  std::string text;
  Status status;
  GenerateResult result;
};

GenerateRequest Completion(const std::string& prompt, int max_tokens) {
  GenerateRequest r;
  r.chat = false;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  r.temperature = 0;
  return r;
}

// Runs `request`; `stop_after` > 0 makes the stream's reader give up after that many pieces.
// With `barrier`, the reader waits after its first piece until `barrier` reaches zero (so the
// backend holds every request of the group at once; it pauses a stream whose reader lags).
Output Generate(ModelBackend& backend, const GenerateRequest& request, int stop_after = 0,
                const std::atomic<bool>* cancel = nullptr, std::atomic<int>* barrier = nullptr) {
  Output out;
  std::atomic<bool> never{false};
  int pieces = 0;
  auto got = backend.Generate(
      request,
      [&](std::string_view piece) {
        out.text += piece;
        if (barrier != nullptr && pieces == 0) {
          barrier->fetch_sub(1);
          const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
          while (barrier->load() > 0 && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return stop_after == 0 || ++pieces < stop_after;
      },
      cancel != nullptr ? *cancel : never);
  if (got.has_value()) {
    out.result = *got;
  } else {
    out.status = got.error();
  }
  return out;
}

std::shared_ptr<ModelBackend> Load(const std::filesystem::path& model, int slots,
                                   bool batched = true) {
  EngineBackendOptions o;
  o.batched = batched;
  o.name = "stories";
  o.slots = slots;
  o.threads = 2;
  o.ctx = 256;
  auto backend = LoadEngineBackend(model.string(), o);
  EXPECT_TRUE(backend.has_value()) << backend.error().message();
  return backend.has_value() ? *backend : nullptr;
}

const std::vector<GenerateRequest>& Requests() {
  static const std::vector<GenerateRequest> requests = {
      Completion("Once upon a time", 40), Completion("The cat sat on the", 25),
      Completion("Lily went to the park with her mom", 33),
      Completion("Tom had a big red ball", 18), Completion("Once upon a time there was a", 29)};
  return requests;
}

TEST(EngineBackend, ConcurrentRequestsGiveTheTextOfSequentialOnes) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  const auto model = models / "stories260K.gguf";
  // One at a time on a one-slot backend: no batching at all.
  auto single = Load(model, 1);
  ASSERT_NE(single, nullptr);
  std::vector<Output> want;
  for (const auto& r : Requests()) want.push_back(Generate(*single, r));
  // All at once on four slots: the fifth waits for a slot, the others decode together
  // (batched) or each on its own scheduler thread (per-slot scheme).
  for (const bool batched_steps : {true, false}) {
    auto batched = Load(model, 4, batched_steps);
    ASSERT_NE(batched, nullptr);
    for (int round = 0; round < 2; ++round) {  // the second round reuses cached prefixes
      SCOPED_TRACE(std::string(batched_steps ? "batched" : "per-slot") + ", round " +
                   std::to_string(round));
      const EngineStepCounts before = EngineSteps();
      std::vector<Output> got(Requests().size());
      std::vector<std::thread> threads;
      std::atomic<int> barrier{4};  // the first four run together; the fifth waits for a slot
      for (std::size_t i = 0; i < Requests().size(); ++i) {
        threads.emplace_back([&, i] {
          got[i] = Generate(*batched, Requests()[i], 0, nullptr, i < 4 ? &barrier : nullptr);
        });
      }
      for (auto& t : threads) t.join();
      const EngineStepCounts after = EngineSteps();
      if (batched_steps) {  // some steps advanced several sequences at once
        EXPECT_GT(after.sequences - before.sequences, after.steps - before.steps);
      } else {  // every step advanced one
        EXPECT_EQ(after.sequences - before.sequences, after.steps - before.steps);
      }
      for (std::size_t i = 0; i < want.size(); ++i) {
        SCOPED_TRACE("request " + std::to_string(i));
        ASSERT_TRUE(want[i].status.ok()) << want[i].status.message();
        ASSERT_TRUE(got[i].status.ok()) << got[i].status.message();
        EXPECT_FALSE(want[i].text.empty());
        EXPECT_EQ(got[i].text, want[i].text);
        EXPECT_EQ(got[i].result.completion_tokens, want[i].result.completion_tokens);
        EXPECT_EQ(got[i].result.prompt_tokens, want[i].result.prompt_tokens);
        EXPECT_EQ(got[i].result.finish_reason, want[i].result.finish_reason);
      }
    }
  }
  EXPECT_EQ(EngineQueueDepth(), 0);
}

TEST(EngineBackend, CancellingOneStreamLeavesTheOthersIntact) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  const auto model = models / "stories260K.gguf";
  auto single = Load(model, 1);
  ASSERT_NE(single, nullptr);
  const GenerateRequest a = Completion("Once upon a time", 60);
  const GenerateRequest b = Completion("The cat sat on the", 60);
  const GenerateRequest c = Completion("Tom had a big red ball", 30);
  const Output want_a = Generate(*single, a);
  const Output want_c = Generate(*single, c);

  auto backend = Load(model, 2);
  ASSERT_NE(backend, nullptr);
  Output got_a, got_b, got_c, got_d;
  std::atomic<bool> cancel_d{false};
  // b's reader stops after 4 pieces (as when the client disconnects); c waits for a slot
  // while a and b run, and gets b's.
  std::thread ta([&] { got_a = Generate(*backend, a); });
  std::thread tb([&] { got_b = Generate(*backend, b, /*stop_after=*/4); });
  std::thread tc([&] { got_c = Generate(*backend, c); });
  // d is cancelled (client gone) while it still waits in the queue or just after.
  std::thread td([&] { got_d = Generate(*backend, Completion("Lily", 60), 0, &cancel_d); });
  cancel_d = true;
  ta.join();
  tb.join();
  tc.join();
  td.join();
  ASSERT_TRUE(got_a.status.ok()) << got_a.status.message();
  ASSERT_TRUE(got_b.status.ok()) << got_b.status.message();
  ASSERT_TRUE(got_c.status.ok()) << got_c.status.message();
  EXPECT_EQ(got_a.text, want_a.text);
  EXPECT_EQ(got_c.text, want_c.text);
  EXPECT_EQ(got_b.result.finish_reason, "cancelled");
  EXPECT_LT(got_b.result.completion_tokens, 60);
  if (got_d.status.ok()) {
    EXPECT_EQ(got_d.result.finish_reason, "cancelled");
  } else {
    EXPECT_EQ(got_d.status.code(), StatusCode::kCancelled);
  }
  EXPECT_EQ(EngineQueueDepth(), 0);
  // The freed slots serve again.
  EXPECT_EQ(Generate(*backend, c).text, want_c.text);
}

TEST(EngineBackend, RequestCancelledWhileQueuedGivesUpItsPlace) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  auto backend = Load(models / "stories260K.gguf", 1);
  ASSERT_NE(backend, nullptr);
  std::atomic<bool> release{false}, cancel{false}, holding{false};
  // The running request holds the only slot until `release`: its reader blocks, and the
  // backend pauses a stream whose reader lags (long before its 200 tokens are done).
  std::thread holder([&] {
    std::atomic<bool> never{false};
    auto r = backend->Generate(
        Completion("Once upon a time", 200),
        [&](std::string_view) {
          holding = true;
          while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
          return true;
        },
        never);
    EXPECT_TRUE(r.has_value());
  });
  while (!holding.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Output queued;
  std::thread waiter([&] { queued = Generate(*backend, Completion("The cat", 10), 0, &cancel); });
  while (EngineQueueDepth() != 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  cancel = true;
  waiter.join();
  EXPECT_EQ(queued.status.code(), StatusCode::kCancelled);
  EXPECT_EQ(EngineQueueDepth(), 0);
  release = true;
  holder.join();
}

}  // namespace
}  // namespace airlock::server
