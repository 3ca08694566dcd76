// Batch (engine/batch.h): a step over several sessions must give each session the logits its
// own Session::Eval gives, on the engine-reference random-weight models (every dense
// architecture and tensor type, and every expert architecture, whose rows of all sessions are
// routed and grouped by expert in one pass) and on stories260K, with the scalar and the best SIMD
// kernel table. The schedule mixes a prompt processed in two chunks (the first without logits),
// whole prompts and decode tokens in the same steps, at different positions per session; the greedy
// continuations must be identical.
//
// Tolerance, as max |batched - alone| / (1 + max |logit|) per logits row:
//  - scalar and AVX2 tables: 1e-5. Both runs use the same kernels and the same per-row
//    activation quantization; a multi-row step goes through the kernels' tile path (several
//    activation rows per weight read) where a lone decode token goes through the row-dot path.
//    For these tables the two paths compute each output identically (measured difference: 0);
//    1e-5 leaves room for a tile that sums the same products in another order (float rounding).
//  - AVX-512 table: the same with an F32 KV cache. (Before the eight-row kernels its row-dot and
//    tile kernels summed in different orders, and a last-bit difference could flip the 8-bit
//    rounding of an activation in the next layer; it needed 5e-2 then.) With the default F16
//    cache: 2e-4. Its F16-weight tile kernel (TileF16) still sums in another order than the row
//    dot (a last-bit difference in K or V), and that can flip the fp16 rounding of a cached value
//    (a step of 2^-11 of it): measured up to 8e-5 on the F16 files, 0 on every other type.
//  Every table runs with the default F16 cache, AVX-512 with an F32 cache too.
#include "engine/batch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/session.h"
#include "test_util.h"

namespace airlock::engine {
namespace {

constexpr double kTolerance = 1e-5;
constexpr double kAvx512F16CacheTolerance = 2e-4;

int Argmax(std::span<const float> v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

std::vector<std::int32_t> Prompt(int length, std::uint32_t seed, int n_vocab) {
  std::vector<std::int32_t> p;
  std::uint32_t x = seed * 2654435761u + 12345u;
  for (int i = 0; i < length; ++i) {
    x = x * 1664525u + 1013904223u;
    p.push_back(static_cast<std::int32_t>(3 + (x >> 8) % static_cast<std::uint32_t>(n_vocab - 3)));
  }
  return p;
}

// One sequence of the schedule: its prompt is fed in `chunks` (sizes), starting at step `start`,
// then `n_gen` greedy tokens are decoded, one per step.
struct Plan {
  std::vector<std::int32_t> prompt;
  std::vector<int> chunks;
  int start = 0;
  int n_gen = 0;
};

// The logits after the prompt and after each generated token, and the greedy tokens.
struct Trace {
  std::vector<std::vector<float>> logits;
  std::vector<std::int32_t> tokens;
};

Trace RunAlone(const Model& model, const Kernels& kernels, KvCacheType kv, const Plan& plan) {
  SessionOptions so;
  so.kernels = &kernels;
  so.kv_type = kv;
  so.n_threads = 2;
  so.n_ctx = 128;
  auto session = Session::Create(model, so);
  EXPECT_TRUE(session.has_value());
  Trace t;
  if (!session.has_value()) return t;
  auto logits = (*session)->Eval(plan.prompt);
  EXPECT_TRUE(logits.has_value());
  if (!logits.has_value()) return t;
  t.logits.emplace_back(logits->begin(), logits->end());
  for (int i = 0; i < plan.n_gen; ++i) {
    const std::int32_t next = Argmax(t.logits.back());
    t.tokens.push_back(next);
    if (i + 1 == plan.n_gen) break;
    logits = (*session)->Eval(std::span<const std::int32_t>(&next, 1));
    EXPECT_TRUE(logits.has_value());
    if (!logits.has_value()) return t;
    t.logits.emplace_back(logits->begin(), logits->end());
  }
  return t;
}

std::vector<Trace> RunBatched(const Model& model, const Kernels& kernels, KvCacheType kv,
                              const std::vector<Plan>& plans, int* steps_with_mixing) {
  BatchOptions bo;
  bo.kernels = &kernels;
  bo.kv_type = kv;
  bo.n_threads = 2;
  bo.n_ctx = 128;
  bo.max_rows = 64;
  auto batch = Batch::Create(model, bo);
  EXPECT_TRUE(batch.has_value());
  std::vector<Trace> traces(plans.size());
  if (!batch.has_value()) return traces;
  std::vector<std::unique_ptr<Session>> sessions;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    auto s = (*batch)->NewSession();
    EXPECT_TRUE(s.has_value());
    if (!s.has_value()) return traces;
    sessions.push_back(std::move(*s));
  }
  std::vector<std::size_t> chunk(plans.size(), 0), fed(plans.size(), 0);
  std::vector<std::int32_t> next(plans.size(), 0);
  *steps_with_mixing = 0;
  for (int step = 0;; ++step) {
    std::vector<BatchItem> items;
    std::vector<std::size_t> owner;
    bool prompt_rows = false, decode_rows = false;
    for (std::size_t i = 0; i < plans.size(); ++i) {
      const Plan& p = plans[i];
      if (step < p.start) continue;
      BatchItem item;
      item.session = sessions[i].get();
      if (chunk[i] < p.chunks.size()) {
        const std::size_t n = p.chunks[chunk[i]];
        item.tokens = std::span<const std::int32_t>(p.prompt).subspan(fed[i], n);
        fed[i] += n;
        ++chunk[i];
        item.want_logits = chunk[i] == p.chunks.size();
        prompt_rows = true;
      } else if (static_cast<int>(traces[i].tokens.size()) < p.n_gen) {
        next[i] = Argmax(traces[i].logits.back());
        traces[i].tokens.push_back(next[i]);
        if (static_cast<int>(traces[i].tokens.size()) == p.n_gen) continue;  // last: no eval
        item.tokens = std::span<const std::int32_t>(&next[i], 1);
        decode_rows = true;
      } else {
        continue;
      }
      items.push_back(item);
      owner.push_back(i);
    }
    bool pending = false;
    for (std::size_t i = 0; i < plans.size(); ++i) {
      pending |= static_cast<int>(traces[i].tokens.size()) < plans[i].n_gen;
    }
    if (items.empty()) {
      if (!pending) break;
      continue;  // a session that has not started yet
    }
    *steps_with_mixing += prompt_rows && decode_rows;
    Status st = (*batch)->Step(items);
    EXPECT_TRUE(st.ok()) << st.message();
    if (!st.ok()) return traces;
    for (std::size_t k = 0; k < items.size(); ++k) {
      if (!items[k].want_logits) {
        EXPECT_TRUE(items[k].logits.empty());
        continue;
      }
      EXPECT_EQ(items[k].logits.size(), static_cast<std::size_t>(model.config().n_vocab));
      traces[owner[k]].logits.emplace_back(items[k].logits.begin(), items[k].logits.end());
    }
  }
  return traces;
}

// Runs the mixed schedule on `model` and compares it with each session alone. Returns the
// largest difference relative to (1 + the largest logit magnitude).
double CheckModel(const Model& model, const Kernels& kernels, KvCacheType kv, double tolerance) {
  const int v = model.config().n_vocab;
  std::vector<Plan> plans(4);
  plans[0].prompt = Prompt(9, 1, v);  // starts alone, decodes through the others' prompts
  plans[0].chunks = {9};
  plans[0].n_gen = 12;
  plans[1].prompt = Prompt(20, 2, v);  // two chunks, the first without logits
  plans[1].chunks = {13, 7};
  plans[1].start = 2;
  plans[1].n_gen = 8;
  plans[2].prompt = Prompt(1, 3, v);  // a one-token prompt
  plans[2].chunks = {1};
  plans[2].start = 3;
  plans[2].n_gen = 10;
  plans[3].prompt = Prompt(31, 4, v);
  plans[3].chunks = {31};
  plans[3].start = 3;
  plans[3].n_gen = 6;
  int mixing = 0;
  const std::vector<Trace> batched = RunBatched(model, kernels, kv, plans, &mixing);
  EXPECT_GE(mixing, 2) << "the schedule should mix prompt chunks with decode tokens";
  double worst = 0;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    SCOPED_TRACE("sequence " + std::to_string(i));
    const Trace alone = RunAlone(model, kernels, kv, plans[i]);
    if (tolerance <= kTolerance) {
      EXPECT_EQ(batched[i].tokens, alone.tokens) << "greedy continuation differs";
    }
    EXPECT_EQ(batched[i].logits.size(), alone.logits.size());
    const std::size_t n = std::min(batched[i].logits.size(), alone.logits.size());
    for (std::size_t k = 0; k < n; ++k) {
      float scale = 0, diff = 0;
      for (int j = 0; j < v; ++j) {
        scale = std::max(scale, std::fabs(alone.logits[k][j]));
        diff = std::max(diff, std::fabs(alone.logits[k][j] - batched[i].logits[k][j]));
      }
      const double rel = diff / (1.0 + scale);
      worst = std::max(worst, rel);
      EXPECT_LE(rel, tolerance) << "step " << k << ": max abs diff " << diff << ", max |logit| "
                                << scale;
    }
  }
  return worst;
}

struct Table {
  const Kernels* kernels;
  KvCacheType kv;
  double tolerance;
};

// Every kernel table this CPU runs with the default (F16) KV cache, with the tolerance of the
// batched-vs-alone comparison; AVX-512 also with an F32 cache at the tight tolerance.
std::vector<Table> KernelTables() {
  std::vector<Table> tables = {{&ScalarKernels(), KvCacheType::kF16, kTolerance}};
  if (Avx2Kernels() != nullptr) tables.push_back({Avx2Kernels(), KvCacheType::kF16, kTolerance});
  if (Avx512Kernels() != nullptr) {
    tables.push_back({Avx512Kernels(), KvCacheType::kF32, kTolerance});
    tables.push_back({Avx512Kernels(), KvCacheType::kF16, kAvx512F16CacheTolerance});
  }
  return tables;
}

TEST(Batch, StepMatchesEachSessionAloneOnReferenceModels) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "engine-reference");
  int checked = 0, experts = 0;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(fixtures / "models")) {
    if (e.path().extension() == ".gguf") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    const std::string name = path.filename().string();
    const bool expert = name.find("moe") != std::string::npos || name.rfind("deepseek2", 0) == 0;
    // Expert architectures: one file per architecture (Q8_0) keeps the run short.
    if (expert && name.find("Q8_0") == std::string::npos) continue;
    auto model = Model::Load(path.string());
    ASSERT_TRUE(model.has_value()) << name << ": " << model.error().message();
    for (const Table& t : KernelTables()) {
      SCOPED_TRACE(name + " / " + t.kernels->name);
      const double worst = CheckModel(**model, *t.kernels, t.kv, t.tolerance);
      std::printf("%-26s %-10s %-4s max |batched - alone| / (1 + max|logit|) = %.2e\n",
                  name.c_str(), t.kernels->name, KvCacheTypeName(t.kv), worst);
    }
    ++checked;
    experts += expert;
  }
  std::printf("checked %d models (%d expert architectures)\n", checked, experts);
  EXPECT_GE(checked, 20);
  EXPECT_GE(experts, 3);
}

TEST(Batch, StepMatchesEachSessionAloneOnStories260K) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  auto model = Model::Load((fixtures / "stories260K.gguf").string());
  ASSERT_TRUE(model.has_value()) << model.error().message();
  for (const Table& t : KernelTables()) {
    SCOPED_TRACE(t.kernels->name);
    const double worst = CheckModel(**model, *t.kernels, t.kv, t.tolerance);
    std::printf("stories260K %-10s max |batched - alone| / (1 + max|logit|) = %.2e\n",
                t.kernels->name, worst);
  }
}

TEST(Batch, RefusesBadStepsWithoutRunningAnything) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  auto model = Model::Load((fixtures / "stories260K.gguf").string());
  ASSERT_TRUE(model.has_value()) << model.error().message();
  BatchOptions bo;
  bo.n_threads = 1;
  bo.n_ctx = 16;
  bo.max_rows = 8;
  auto batch = Batch::Create(**model, bo);
  auto other = Batch::Create(**model, bo);
  ASSERT_TRUE(batch.has_value() && other.has_value());
  auto a = (*batch)->NewSession();
  auto b = (*batch)->NewSession(8);
  auto foreign = (*other)->NewSession();
  ASSERT_TRUE(a.has_value() && b.has_value() && foreign.has_value());
  EXPECT_FALSE((*batch)->NewSession(17).has_value());  // above the batch's n_ctx
  auto standalone = Session::Create(**model, SessionOptions{.n_ctx = 16, .n_threads = 1});
  ASSERT_TRUE(standalone.has_value());
  const std::vector<std::int32_t> five = {5, 6, 7, 8, 9}, bad = {5, 100000};
  auto step = [&](std::vector<BatchItem> items) { return (*batch)->Step(items); };
  auto item = [](const std::unique_ptr<Session>& s, std::span<const std::int32_t> tokens) {
    BatchItem it;
    it.session = s.get();
    it.tokens = tokens;
    return it;
  };
  EXPECT_EQ(step({}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(step({item(*foreign, five)}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(step({item(*standalone, five)}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(step({item(*a, five), item(*a, five)}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(step({item(*a, {})}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(step({item(*a, bad)}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(step({item(*a, five), item(*b, five)}).code(),
            StatusCode::kInvalidArgument);  // 10 rows > max_rows 8
  EXPECT_EQ((*a)->position(), 0);
  EXPECT_EQ((*b)->position(), 0);
  EXPECT_TRUE(step({item(*a, five), item(*b, {five.data(), 3})}).ok());
  EXPECT_EQ((*a)->position(), 5);
  EXPECT_EQ((*b)->position(), 3);
  // b holds 8 tokens: 6 more do not fit; neither session moves.
  const std::vector<std::int32_t> six = {5, 6, 7, 8, 9, 10};
  EXPECT_EQ(step({item(*a, {five.data(), 1}), item(*b, six)}).code(), StatusCode::kLimitExceeded);
  EXPECT_EQ((*a)->position(), 5);
  EXPECT_EQ((*b)->position(), 3);
  // A batch session's own Eval runs on the batch's buffers and agrees with a step.
  (*a)->Rewind(0);
  auto alone = (*a)->Eval(five);
  ASSERT_TRUE(alone.has_value());
  const std::vector<float> want(alone->begin(), alone->end());
  (*a)->Rewind(0);
  std::vector<BatchItem> items = {item(*a, five)};
  ASSERT_TRUE((*batch)->Step(items).ok());
  ASSERT_EQ(items[0].logits.size(), want.size());
  for (std::size_t j = 0; j < want.size(); ++j) EXPECT_EQ(items[0].logits[j], want[j]);
}

}  // namespace
}  // namespace airlock::engine
