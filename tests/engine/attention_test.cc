// The tiled attention kernel (engine/blocks/attention.h) against a plain two-pass softmax written
// here: random queries and a random KV cache in each cache type (F32, F16, Q8_0), context lengths
// below, at and across the tile size (1, 63, 64, 65, 200, 1100 positions), GQA (two query heads
// per cached head) and the MLA layout (values are the first part of each key row), on every
// kernel table this CPU runs.
//
// The reference uses the cache's stored values (dequantized) and the float query, in double. The
// tolerance is 1e-4 of max |value| for float queries (F32 and F16 caches on every table; every
// cache type on the exact table); with a Q8_0 cache the fast tables quantize the query to 8 bits
// per value (as llama.cpp does), which moves a score by up to about 1% of |q| |k|: 2e-2.
#include "engine/blocks/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/internal/workspace.h"
#include "engine/kernels.h"

namespace airlock::engine::internal {
namespace {

struct Layout {
  int n_head, group;
  std::int64_t k_dim, v_dim, k_width, v_width;  // v_width 0: MLA (values inside the key rows)
};

// Fills a one-layer cache of `n_ctx` positions with random rows and returns the workspace-free
// reference: out[h][e] for the last position's query heads.
double RunCase(const Kernels& kernels, TensorType type, const Layout& lay, int n_ctx,
               std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  SessionState s;
  KvCache& kv = s.kv;
  kv.type = type;
  kv.n_layer = 1;
  kv.n_ctx = n_ctx;
  kv.k_width = lay.k_width;
  kv.v_width = lay.v_width;
  kv.k_row_bytes = KvRowBytes(type, lay.k_width);
  kv.v_row_bytes = KvRowBytes(type, lay.v_width);
  kv.k.resize(kv.k_row_bytes * n_ctx);
  kv.v.resize(kv.v_row_bytes * n_ctx);
  std::vector<float> row(std::max(lay.k_width, lay.v_width));
  for (int p = 0; p < n_ctx; ++p) {
    for (std::int64_t e = 0; e < lay.k_width; ++e) row[e] = normal(rng);
    StoreKvRow(type, row.data(), kv.KRow(0, p), lay.k_width);
    if (lay.v_width > 0) {
      for (std::int64_t e = 0; e < lay.v_width; ++e) row[e] = normal(rng);
      StoreKvRow(type, row.data(), kv.VRow(0, p), lay.v_width);
    }
  }
  std::vector<float> q(lay.n_head * lay.k_dim);
  for (float& v : q) v = normal(rng) * 0.3f;
  Workspace ws;
  ws.k = &kernels;
  ws.kv_type = type;
  ws.pool = std::make_unique<ThreadPool>(2);
  ws.rows.push_back({&s, n_ctx - 1, 0});
  ws.attn_scratch_stride = AttendScratchBytes(lay.k_dim, lay.v_dim);
  ws.attn_scratch.resize(ws.attn_scratch_stride * ws.pool->size());
  std::vector<float> out(lay.n_head * lay.v_dim);
  AttendArgs a;
  a.q = q.data();
  a.q_row = lay.n_head * lay.k_dim;
  a.q_head = lay.k_dim;
  a.n_head = lay.n_head;
  a.group = lay.group;
  a.k_dim = lay.k_dim;
  a.v_dim = lay.v_dim;
  a.k_off = lay.v_width > 0 ? lay.k_dim : 0;
  a.v_off = lay.v_width > 0 ? lay.v_dim : 0;
  a.v_in_k = lay.v_width == 0;
  a.scale = 1.0f / std::sqrt(static_cast<float>(lay.k_dim));
  a.out = out.data();
  a.out_row = lay.n_head * lay.v_dim;
  a.out_head = lay.v_dim;
  Attend(ws, 0, a);

  // Reference: dequantized cache, float query, two passes in double.
  std::vector<float> krow(lay.k_width), vrow(std::max<std::int64_t>(lay.v_width, 1));
  double worst = 0, vmax = 0;
  for (int h = 0; h < lay.n_head; ++h) {
    const int g = h / lay.group;
    std::vector<double> score(n_ctx);
    double m = -INFINITY;
    for (int p = 0; p < n_ctx; ++p) {
      DequantizeRow(type, kv.KRow(0, p), krow.data(), lay.k_width);
      double dot = 0;
      for (std::int64_t e = 0; e < lay.k_dim; ++e)
        dot += static_cast<double>(q[h * lay.k_dim + e]) * krow[a.k_off * g + e];
      score[p] = dot * a.scale;
      m = std::max(m, score[p]);
    }
    double sum = 0;
    for (int p = 0; p < n_ctx; ++p) sum += score[p] = std::exp(score[p] - m);
    std::vector<double> want(lay.v_dim, 0.0);
    for (int p = 0; p < n_ctx; ++p) {
      const float* v = krow.data();
      if (lay.v_width > 0) {
        DequantizeRow(type, kv.VRow(0, p), vrow.data(), lay.v_width);
        v = vrow.data() + a.v_off * g;
      } else {
        DequantizeRow(type, kv.KRow(0, p), krow.data(), lay.k_width);
      }
      for (std::int64_t e = 0; e < lay.v_dim; ++e) {
        want[e] += score[p] / sum * v[e];
        vmax = std::max(vmax, std::fabs(static_cast<double>(v[e])));
      }
    }
    for (std::int64_t e = 0; e < lay.v_dim; ++e)
      worst = std::max(worst, std::fabs(want[e] - out[h * lay.v_dim + e]));
  }
  return worst / vmax;
}

std::vector<const Kernels*> Tables() {
  std::vector<const Kernels*> t = {&ScalarKernels(), &ExactKernels()};
  if (Avx2Kernels()) t.push_back(Avx2Kernels());
  if (Avx512Kernels()) t.push_back(Avx512Kernels());
  if (NeonKernels()) t.push_back(NeonKernels());
  return t;
}

TEST(Attention, TiledOnlineSoftmaxMatchesTwoPassSoftmaxForGqa) {
  const Layout gqa{4, 2, 64, 64, 128, 128};
  for (const Kernels* k : Tables()) {
    for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0}) {
      const bool quantized_q = type == TensorType::kQ8_0 && !k->float_activations;
      for (int n_ctx : {1, 63, 64, 65, 200, 1100}) {
        SCOPED_TRACE(std::string(k->name) + " type " + std::to_string(static_cast<int>(type)) +
                     " n_ctx " + std::to_string(n_ctx));
        EXPECT_LE(RunCase(*k, type, gqa, n_ctx, 7 + n_ctx), quantized_q ? 2e-2 : 1e-4);
      }
    }
  }
}

TEST(Attention, TiledOnlineSoftmaxMatchesTwoPassSoftmaxForLatentCache) {
  // MLA: 4 heads share one cached row of [128 latent | 32 rope]; the latent part is the value.
  const Layout mla{4, 4, 160, 128, 160, 0};
  for (const Kernels* k : Tables()) {
    for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0}) {
      const bool quantized_q = type == TensorType::kQ8_0 && !k->float_activations;
      for (int n_ctx : {1, 64, 65, 300}) {
        SCOPED_TRACE(std::string(k->name) + " type " + std::to_string(static_cast<int>(type)) +
                     " n_ctx " + std::to_string(n_ctx));
        EXPECT_LE(RunCase(*k, type, mla, n_ctx, 11 + n_ctx), quantized_q ? 2e-2 : 1e-4);
      }
    }
  }
}

}  // namespace
}  // namespace airlock::engine::internal
