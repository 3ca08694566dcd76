// The tiled attention kernel (engine/blocks/attention.h) against a plain two-pass softmax written
// here: random queries and a random KV cache in each cache type (F32, F16, Q8_0), context lengths
// below, at and across the tile size (1, 63, 64, 65, 200, 1000, 1100 positions, and past the
// split-K threshold), GQA (two and seven query heads per cached head) and the MLA layout (values
// are the first part of each key row), on every kernel table this CPU runs. Besides a lone last
// row (decode; split over key ranges when the context is long), a prompt chunk of several rows
// that starts mid-cache checks the causal mask: each row sees the keys up to its own position.
//
// The reference uses the cache's stored values (dequantized) and the float query, in double. The
// kernel converts each tile of the cache to float and computes in float with float queries for
// every cache type, so the tolerance is 1e-4 of max |value| throughout.
#include "engine/blocks/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/internal/workspace.h"
#include "engine/kernels.h"

namespace airlock::engine::internal {
namespace {

// The output of the last RunCase (to compare runs with each other).
std::vector<float>& last_output() {
  static std::vector<float> out;
  return out;
}

struct Layout {
  int n_head, group;
  std::int64_t k_dim, v_dim, k_width, v_width;  // v_width 0: MLA (values inside the key rows)
};

// Fills a one-layer cache of `n_ctx` positions with random rows, attends with the last `n_rows`
// positions (a chunk starting at n_ctx - n_rows) and returns the worst difference from the
// reference over every row and head, relative to max |value|.
double RunCase(const Kernels& kernels, TensorType type, const Layout& lay, int n_ctx,
               std::uint32_t seed, int n_rows = 1, int threads = 2) {
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
  const std::int64_t q_row = lay.n_head * lay.k_dim, out_row = lay.n_head * lay.v_dim;
  std::vector<float> q(n_rows * q_row);
  for (float& v : q) v = normal(rng) * 0.3f;
  Workspace ws;
  ws.k = &kernels;
  ws.kv_type = type;
  ws.pool = std::make_unique<ThreadPool>(threads);
  ws.max_rows = n_rows;
  for (int r = 0; r < n_rows; ++r) ws.rows.push_back({&s, n_ctx - n_rows + r, 0});
  ReserveAttention(ws, lay.k_dim, lay.v_dim, lay.n_head, lay.group);
  std::vector<float> out(n_rows * out_row, NAN);
  AttendArgs a;
  a.q = q.data();
  a.q_row = q_row;
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
  a.out_row = out_row;
  a.out_head = lay.v_dim;
  Attend(ws, 0, a);
  last_output() = out;

  // Reference: dequantized cache, float query, two passes in double, keys 0..pos of each row.
  std::vector<float> krow(lay.k_width), vrow(std::max<std::int64_t>(lay.v_width, 1));
  double worst = 0, vmax = 0;
  for (int r = 0; r < n_rows; ++r) {
    const int pos = n_ctx - n_rows + r;
    for (int h = 0; h < lay.n_head; ++h) {
      const int g = h / lay.group;
      const float* qh = q.data() + r * q_row + h * lay.k_dim;
      std::vector<double> score(pos + 1);
      double m = -INFINITY;
      for (int p = 0; p <= pos; ++p) {
        DequantizeRow(type, kv.KRow(0, p), krow.data(), lay.k_width);
        double dot = 0;
        for (std::int64_t e = 0; e < lay.k_dim; ++e)
          dot += static_cast<double>(qh[e]) * krow[a.k_off * g + e];
        score[p] = dot * a.scale;
        m = std::max(m, score[p]);
      }
      double sum = 0;
      for (int p = 0; p <= pos; ++p) sum += score[p] = std::exp(score[p] - m);
      std::vector<double> want(lay.v_dim, 0.0);
      for (int p = 0; p <= pos; ++p) {
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
      for (std::int64_t e = 0; e < lay.v_dim; ++e) {
        const double got = out[r * out_row + h * lay.v_dim + e];
        worst = std::max(worst, std::isfinite(got) ? std::fabs(want[e] - got) : INFINITY);
      }
    }
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
      for (int n_ctx : {1, 63, 64, 65, 200, 1000, 1100}) {
        SCOPED_TRACE(std::string(k->name) + " type " + std::to_string(static_cast<int>(type)) +
                     " n_ctx " + std::to_string(n_ctx));
        EXPECT_LE(RunCase(*k, type, gqa, n_ctx, 7 + n_ctx), 1e-4);
      }
    }
  }
}

TEST(Attention, TiledOnlineSoftmaxMatchesTwoPassSoftmaxForLatentCache) {
  // MLA: 4 heads share one cached row of [128 latent | 32 rope]; the latent part is the value.
  const Layout mla{4, 4, 160, 128, 160, 0};
  for (const Kernels* k : Tables()) {
    for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0}) {
      for (int n_ctx : {1, 64, 65, 300, 1000}) {
        SCOPED_TRACE(std::string(k->name) + " type " + std::to_string(static_cast<int>(type)) +
                     " n_ctx " + std::to_string(n_ctx));
        EXPECT_LE(RunCase(*k, type, mla, n_ctx, 11 + n_ctx), 1e-4);
      }
    }
  }
}

TEST(Attention, SevenQueryHeadsPerCachedHeadAsInQwen) {
  // Qwen2.5-0.5B's shape: 14 query heads on 2 cached heads of 64; lone rows past the split-K
  // threshold (512 keys) too.
  const Layout qwen{14, 7, 64, 64, 128, 128};
  for (const Kernels* k : Tables()) {
    for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0}) {
      for (int n_ctx : {1, 63, 64, 65, 513, 1000, 2100}) {
        SCOPED_TRACE(std::string(k->name) + " type " + std::to_string(static_cast<int>(type)) +
                     " n_ctx " + std::to_string(n_ctx));
        EXPECT_LE(RunCase(*k, type, qwen, n_ctx, 3 + n_ctx), 1e-4);
      }
    }
  }
}

TEST(Attention, PromptChunkStartingMidCacheIsCausal) {
  // Chunks of 1..40 rows ending at the last position: each row attends to the keys up to its own
  // position only (a row that saw a later key would differ from the reference by far more than
  // the tolerance: the keys are random).
  const Layout gqa{4, 2, 64, 64, 128, 128};
  const Layout qwen{14, 7, 64, 64, 128, 128};
  const Layout mla{4, 4, 160, 128, 160, 0};
  for (const Kernels* k : Tables()) {
    for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0}) {
      for (const auto& [n_ctx, n_rows] :
           std::vector<std::pair<int, int>>{{40, 40}, {65, 2}, {100, 37}, {1000, 19}, {130, 64}}) {
        SCOPED_TRACE(std::string(k->name) + " type " + std::to_string(static_cast<int>(type)) +
                     " n_ctx " + std::to_string(n_ctx) + " rows " + std::to_string(n_rows));
        EXPECT_LE(RunCase(*k, type, gqa, n_ctx, 5 + n_ctx, n_rows), 1e-4);
        EXPECT_LE(RunCase(*k, type, qwen, n_ctx, 6 + n_ctx, n_rows), 1e-4);
        EXPECT_LE(RunCase(*k, type, mla, n_ctx, 8 + n_ctx, n_rows), 1e-4);
      }
    }
  }
}

TEST(Attention, ResultsDoNotDependOnThreadCount) {
  // The blocks, key splits and the order of the split merge are fixed by the rows alone.
  const Layout qwen{14, 7, 64, 64, 128, 128};
  for (const Kernels* k : Tables()) {
    for (const auto& [n_ctx, n_rows] : std::vector<std::pair<int, int>>{{3000, 1}, {300, 50}}) {
      SCOPED_TRACE(std::string(k->name) + " n_ctx " + std::to_string(n_ctx));
      RunCase(*k, TensorType::kF16, qwen, n_ctx, 99, n_rows, 1);
      const std::vector<float> one = last_output();
      RunCase(*k, TensorType::kF16, qwen, n_ctx, 99, n_rows, 3);
      EXPECT_EQ(one, last_output());
    }
  }
}

}  // namespace
}  // namespace airlock::engine::internal
