// The attention kernel alone (engine/blocks/attention.h) on one thread, with the best kernel
// table: a prompt chunk of 256 rows ending at a context depth (the last chunk of a prompt of that
// length) and a lone decode row after that depth, for the Qwen2.5-0.5B head shape (14 query
// heads on 2 cached heads of 64) and DeepSeek-V2-Lite's latent cache (16 heads on one row of
// [512 latent | 64 rope]), per cache type. Random cache contents. The GFLOP/s counter counts the
// useful multiply-adds (2 per query head, key and dimension of K and of V) per CPU second.
// QwenDecode24Layers attends at all 24 layers of a cache per iteration, so that the cache is read
// from memory as in a forward pass (the one-layer cases fit the last-level cache).
//
//   ninja -C build attention_bench && build/bench/attention_bench
#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "engine/blocks/attention.h"
#include "engine/internal/workspace.h"
#include "engine/kernels.h"

namespace {

using namespace airlock::engine;            // NOLINT(build/namespaces)
using namespace airlock::engine::internal;  // NOLINT(build/namespaces)

struct Shape {
  int n_head, group;
  std::int64_t k_dim, v_dim, k_width, v_width;  // v_width 0: values inside the key rows (MLA)
};
constexpr Shape kQwen{14, 7, 64, 64, 128, 128};
constexpr Shape kLatent{16, 16, 576, 512, 576, 0};

TensorType TypeOf(int i) {
  return i == 0 ? TensorType::kF16 : i == 1 ? TensorType::kF32 : TensorType::kQ8_0;
}

// n_layer > 1: the cache has that many layers and an iteration attends at every layer in turn,
// as a forward pass does, so that a deep cache (24 layers of 4096 positions: 50 MB in F16) is
// read from memory rather than from the last-level cache.
void Run(benchmark::State& state, const Shape& shape, int n_rows, int n_layer = 1) {
  const TensorType type = TypeOf(static_cast<int>(state.range(0)));
  const int depth = static_cast<int>(state.range(1));
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  SessionState s;
  KvCache& kv = s.kv;
  kv.type = type;
  kv.n_layer = n_layer;
  kv.n_ctx = depth;
  kv.k_width = shape.k_width;
  kv.v_width = shape.v_width;
  kv.k_row_bytes = KvRowBytes(type, shape.k_width);
  kv.v_row_bytes = KvRowBytes(type, shape.v_width);
  kv.k.resize(kv.k_row_bytes * depth * n_layer);
  kv.v.resize(kv.v_row_bytes * depth * n_layer);
  std::vector<float> row(std::max(shape.k_width, shape.v_width));
  for (int il = 0; il < n_layer; ++il) {
    for (int p = 0; p < depth; ++p) {
      for (float& v : row) v = normal(rng);
      StoreKvRow(type, row.data(), kv.KRow(il, p), shape.k_width);
      if (shape.v_width > 0) StoreKvRow(type, row.data(), kv.VRow(il, p), shape.v_width);
    }
  }
  Workspace ws;
  ws.k = &BestKernels();
  ws.kv_type = type;
  ws.pool = std::make_unique<ThreadPool>(1);
  ws.max_rows = n_rows;
  for (int r = 0; r < n_rows; ++r) ws.rows.push_back({&s, depth - n_rows + r, 0});
  ReserveAttention(ws, shape.k_dim, shape.v_dim, shape.n_head, shape.group);
  std::vector<float> q(n_rows * shape.n_head * shape.k_dim),
      out(n_rows * shape.n_head * shape.v_dim);
  for (float& v : q) v = normal(rng) * 0.3f;
  AttendArgs a;
  a.q = q.data();
  a.q_row = shape.n_head * shape.k_dim;
  a.q_head = shape.k_dim;
  a.n_head = shape.n_head;
  a.group = shape.group;
  a.k_dim = shape.k_dim;
  a.v_dim = shape.v_dim;
  a.k_off = shape.v_width > 0 ? shape.k_dim : 0;
  a.v_off = shape.v_width > 0 ? shape.v_dim : 0;
  a.v_in_k = shape.v_width == 0;
  a.scale = 1.0f / std::sqrt(static_cast<float>(shape.k_dim));
  a.out = out.data();
  a.out_row = shape.n_head * shape.v_dim;
  a.out_head = shape.v_dim;
  double keys = 0;
  for (int r = 0; r < n_rows; ++r) keys += depth - n_rows + r + 1;
  for (auto _ : state) {
    for (int il = 0; il < n_layer; ++il) Attend(ws, il, a);
    benchmark::DoNotOptimize(out.data());
  }
  const double flops =
      2.0 * n_layer * keys * shape.n_head * static_cast<double>(shape.k_dim + shape.v_dim);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_QwenPromptChunk(benchmark::State& state) { Run(state, kQwen, 256); }
void BM_QwenDecode(benchmark::State& state) { Run(state, kQwen, 1); }
// A decode row at all 24 layers of a Qwen2.5-0.5B-shaped cache.
void BM_QwenDecode24Layers(benchmark::State& state) { Run(state, kQwen, 1, 24); }
void BM_LatentPromptChunk(benchmark::State& state) { Run(state, kLatent, 256); }
void BM_LatentDecode(benchmark::State& state) { Run(state, kLatent, 1); }

// Arguments: cache type (0 F16, 1 F32, 2 Q8_0), depth.
BENCHMARK(BM_QwenPromptChunk)->ArgsProduct({{0, 1, 2}, {512, 4096}});
BENCHMARK(BM_QwenDecode)->ArgsProduct({{0, 1, 2}, {128, 4096, 16384}});
BENCHMARK(BM_QwenDecode24Layers)->ArgsProduct({{0, 2}, {4096}});
BENCHMARK(BM_LatentPromptChunk)->ArgsProduct({{0}, {512, 2048}});
BENCHMARK(BM_LatentDecode)->ArgsProduct({{0}, {128, 2048}});

}  // namespace

BENCHMARK_MAIN();
