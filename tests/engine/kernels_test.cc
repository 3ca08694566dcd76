// Kernel tests: every SIMD table this CPU supports against the scalar reference (same quantized
// activations), and the scalar integer dot products against dequantize-then-float math.
#include "engine/kernels.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/internal/thread_pool.h"
#include "kernel_test_data.h"

namespace airlock::engine {
namespace {

using namespace test_data;  // NOLINT(build/namespaces): the shared random inputs

std::vector<const Kernels*> SimdTables() {
  std::vector<const Kernels*> t;
  if (Avx2Kernels()) t.push_back(Avx2Kernels());
  if (Avx512Kernels()) t.push_back(Avx512Kernels());
  if (NeonKernels()) t.push_back(NeonKernels());
  return t;
}

TEST(Fp16, RoundTripsEveryFiniteHalf) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) continue;  // NaN payloads
    ASSERT_EQ(Fp32ToFp16(Fp16ToFp32(static_cast<std::uint16_t>(h))), h) << std::hex << h;
  }
  EXPECT_EQ(Fp16ToFp32(0x3c00), 1.0f);
  EXPECT_EQ(Fp16ToFp32(0xc000), -2.0f);
  EXPECT_EQ(Fp32ToFp16(65520.0f), 0x7c00);            // rounds to infinity
  EXPECT_EQ(Fp32ToFp16(1.0f + 1.0f / 4096), 0x3c00);  // ties to even
  EXPECT_EQ(Fp16ToFp32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(Bf16ToFp32(Fp32ToBf16(3.0f)), 3.0f);
}

TEST(Dequantize, KnownBlocks) {
  // Q4_0: d = 0.5, nibbles: low = j % 16, high = 15 - j % 16.
  BlockQ4_0 b4{};
  b4.d = Fp32ToFp16(0.5f);
  for (int j = 0; j < 16; ++j) b4.qs[j] = static_cast<std::uint8_t>(j | (15 - j) << 4);
  float y[32];
  DequantizeRow(TensorType::kQ4_0, &b4, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f);
    EXPECT_EQ(y[j + 16], (15 - j - 8) * 0.5f);
  }
  // Q5_0: bit j of qh is the 5th bit of element j.
  BlockQ5_0 b5{};
  b5.d = Fp32ToFp16(1.0f);
  b5.qh[0] = 0x01;  // element 0
  b5.qh[2] = 0x02;  // element 17
  for (int j = 0; j < 16; ++j) b5.qs[j] = 0x33;
  DequantizeRow(TensorType::kQ5_0, &b5, y, 32);
  EXPECT_EQ(y[0], 3 + 16 - 16);
  EXPECT_EQ(y[1], 3 - 16);
  EXPECT_EQ(y[17], 3 + 16 - 16);
  EXPECT_EQ(y[16], 3 - 16);
  // Q8_0
  BlockQ8_0 b8{};
  b8.d = Fp32ToFp16(0.25f);
  for (int j = 0; j < 32; ++j) b8.qs[j] = static_cast<std::int8_t>(j - 16);
  DequantizeRow(TensorType::kQ8_0, &b8, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], (j - 16) * 0.25f);
  // Q6_K: all quants 33 (stored +32 -> 1), scales 1..16, d = 1.
  BlockQ6_K b6{};
  for (auto& v : b6.ql) v = 0x11;
  for (auto& v : b6.qh) v = 0xaa;  // each 2-bit field = 2 -> +32
  for (int g = 0; g < 16; ++g) b6.scales[g] = static_cast<std::int8_t>(g + 1);
  b6.d = Fp32ToFp16(1.0f);
  float yk[256];
  DequantizeRow(TensorType::kQ6_K, &b6, yk, 256);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(yk[j], (j / 16 + 1) * 1.0f) << j;
}

class KernelTypeTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(KernelTypeTest, ScalarDotMatchesDequantizedFloatMath) {
  const TensorType type = GetParam();
  const TensorTypeInfo* info = GetTensorTypeInfo(static_cast<std::uint32_t>(type));
  std::mt19937 rng(42 + static_cast<int>(type));
  const std::int64_t n = 512;
  const int rows = 5;
  auto w = RandomRows(type, rows, n, rng);
  auto x = RandomFloats(n, rng);
  const std::size_t rb = w.size() / rows;
  const Kernels& scalar = ScalarKernels();
  auto a = Quantize(scalar, info->act, x);
  std::vector<float> got(rows), exact(rows);
  scalar.dot[static_cast<int>(type)](n, w.data(), rb, rows, a.data(), got.data());
  ExactKernels().dot[static_cast<int>(type)](n, w.data(), rb, rows, x.data(), exact.data());
  for (int r = 0; r < rows; ++r) {
    const double scale = AbsDotScale(type, w.data() + r * rb, x);
    // 8-bit activations: each product is off by at most 1/254 of the block's largest |x|.
    const double tol = info->act == ActFormat::kF32 ? 1e-5 * scale + 1e-6 : 0.02 * scale + 1e-4;
    EXPECT_NEAR(got[r], exact[r], tol) << info->name << " row " << r;
  }
}

TEST_P(KernelTypeTest, SimdMatchesScalar) {
  const TensorType type = GetParam();
  const TensorTypeInfo* info = GetTensorTypeInfo(static_cast<std::uint32_t>(type));
  auto tables = SimdTables();
  if (tables.empty()) GTEST_SKIP() << "this CPU has no SIMD kernel table";
  for (std::int64_t n : {256, 768, 2048}) {
    std::mt19937 rng(7 + static_cast<int>(n) + static_cast<int>(type));
    const int rows = 19;  // two groups of 8 rows (the SIMD kernels' unit) and a 3-row tail
    auto w = RandomRows(type, rows, n, rng);
    auto x = RandomFloats(n, rng);
    const std::size_t rb = w.size() / rows;
    auto a = Quantize(ScalarKernels(), info->act, x);
    std::vector<float> want(rows);
    ScalarKernels().dot[static_cast<int>(type)](n, w.data(), rb, rows, a.data(), want.data());
    for (const Kernels* k : tables) {
      // Same activation bytes from the table's own quantizer.
      auto a_simd = Quantize(*k, info->act, x);
      ASSERT_EQ(a_simd, a) << k->name << " quantizer differs for " << info->name;
      std::vector<float> got(rows);
      k->dot[static_cast<int>(type)](n, w.data(), rb, rows, a.data(), got.data());
      for (int r = 0; r < rows; ++r) {
        const double scale = AbsDotScale(type, w.data() + r * rb, x);
        EXPECT_NEAR(got[r], want[r], 2e-6 * scale + 1e-6)
            << k->name << " " << info->name << " n=" << n << " row " << r;
      }
      // A call starting at a multiple of 8 rows (as MatMul's row chunks do) gives bit-identical
      // numbers, so results never depend on the thread count; one row at a time (the tail path
      // of the 8-row kernels) agrees within rounding.
      std::vector<float> from8(rows - 8);
      k->dot[static_cast<int>(type)](n, w.data() + 8 * rb, rb, rows - 8, a.data(), from8.data());
      for (int r = 8; r < rows; ++r)
        EXPECT_EQ(from8[r - 8], got[r]) << k->name << " " << info->name;
      for (int r = 0; r < rows; ++r) {
        float one;
        k->dot[static_cast<int>(type)](n, w.data() + r * rb, rb, 1, a.data(), &one);
        const double scale = AbsDotScale(type, w.data() + r * rb, x);
        EXPECT_NEAR(one, got[r], 2e-6 * scale + 1e-6) << k->name << " " << info->name;
      }
    }
  }
}

TEST_P(KernelTypeTest, TileMatchesDotPerToken) {
  const TensorType type = GetParam();
  const TensorTypeInfo* info = GetTensorTypeInfo(static_cast<std::uint32_t>(type));
  int tested = 0;
  for (const Kernels* k : SimdTables()) {
    if (k->tile[static_cast<int>(type)] == nullptr) continue;
    ++tested;
    std::mt19937 rng(99 + static_cast<int>(type));
    const std::int64_t n = 512;
    // Two 16-row groups (AVX-512 prompt tiles of the 32-element quants), then a 5-row tail in a
    // partial eight-row group; 11 tokens: not a multiple of the 4/8-token groups.
    const int rows = 37, ntok = 11;
    auto w = RandomRows(type, rows, n, rng);
    const std::size_t rb = w.size() / rows;
    const std::size_t stride = ActRowBytes(info->act, n);
    std::vector<std::uint8_t> acts(stride * ntok);
    std::vector<double> scales(rows * ntok);
    for (int t = 0; t < ntok; ++t) {
      auto x = RandomFloats(n, rng);
      auto a = Quantize(*k, info->act, x);
      std::memcpy(acts.data() + t * stride, a.data(), stride);
      for (int r = 0; r < rows; ++r) scales[t * rows + r] = AbsDotScale(type, w.data() + r * rb, x);
    }
    const std::size_t ldo = rows + 3;
    std::vector<float> tiled(ntok * ldo, -1.0f);
    k->tile[static_cast<int>(type)](n, w.data(), rb, rows, acts.data(), stride, ntok, tiled.data(),
                                    ldo);
    for (int t = 0; t < ntok; ++t) {
      std::vector<float> want(rows);
      k->dot[static_cast<int>(type)](n, w.data(), rb, rows, acts.data() + t * stride, want.data());
      for (int r = 0; r < rows; ++r) {
        EXPECT_NEAR(tiled[t * ldo + r], want[r], 2e-6 * scales[t * rows + r] + 1e-6)
            << k->name << " " << info->name << " token " << t << " row " << r;
      }
      for (std::size_t r = rows; r < ldo; ++r) EXPECT_EQ(tiled[t * ldo + r], -1.0f);  // untouched
    }
  }
  if (tested == 0) GTEST_SKIP() << "no tile kernel for this type on this CPU";
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KernelTypeTest, ::testing::ValuesIn(kAllTypes),
                         [](const ::testing::TestParamInfo<TensorType>& p) {
                           return std::string(
                               GetTensorTypeInfo(static_cast<std::uint32_t>(p.param))->name);
                         });

TEST(Quantize, Q8KMatchesDefinition) {
  std::mt19937 rng(3);
  auto x = RandomFloats(512, rng);
  auto bytes = Quantize(ScalarKernels(), ActFormat::kQ8K, x);
  const auto* blocks = reinterpret_cast<const ActQ8K*>(bytes.data());
  for (int b = 0; b < 2; ++b) {
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += blocks[b].qs[g * 16 + j];
      EXPECT_EQ(s, blocks[b].bsums[g]);
    }
    for (int j = 0; j < 256; ++j) {
      EXPECT_NEAR(blocks[b].d * blocks[b].qs[j], x[b * 256 + j],
                  std::fabs(blocks[b].d) * 0.5f + 1e-6);
    }
  }
}

TEST(Kernels, BestTableIsComplete) {
  const Kernels& k = BestKernels();
  for (TensorType t : kAllTypes) EXPECT_NE(k.dot[static_cast<int>(t)], nullptr);
  for (int f = 0; f < kActFormatCount; ++f) EXPECT_NE(k.quantize[f], nullptr);
  for (TensorType t : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0})
    EXPECT_NE(k.kv_to_float[static_cast<int>(t)], nullptr);
  EXPECT_NE(k.attn_scores, nullptr);
  EXPECT_NE(k.attn_softmax, nullptr);
  EXPECT_NE(k.attn_accumulate, nullptr);
  EXPECT_NE(k.attn_accumulate_rows, nullptr);
  EXPECT_NE(k.attn_accumulate_rows_f16, nullptr);
}

// ---- attention tiles ----

// One attention tile step (scores, online softmax, accumulation) on `nq` lanes whose first
// `same` lanes get fixed inputs and the rest random ones; returns [s | m | l | ot] of those lanes.
struct TileOut {
  std::vector<float> s, m, l, ot;
};
TileOut RunTile(const Kernels& k, int nq, int same, std::uint32_t seed) {
  constexpr int kNk = 61, kDim = 64, kDv = 36;
  const int ld = (nq + 15) / 16 * 16;
  std::mt19937 fixed(1234), rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> keys(kNk * kDim), values(kNk * kDv);
  for (float& v : keys) v = normal(fixed);
  for (float& v : values) v = normal(fixed);
  std::vector<float> qt(kDim * ld, 0.0f), s(kNk * ld), m(ld), l(ld), corr(ld), ot(kDv * ld);
  std::vector<int> lim(ld);
  for (int q = 0; q < ld; ++q) {
    auto& gen = q < same ? fixed : rng;
    for (int d = 0; d < kDim; ++d) qt[d * ld + q] = q < nq ? normal(gen) * 0.3f : 0.0f;
    m[q] = normal(gen);  // a running maximum from earlier tiles, sometimes above this tile's
    l[q] = 1.0f + std::fabs(normal(gen));
    for (int e = 0; e < kDv; ++e) ot[e * ld + q] = normal(gen);
    lim[q] = q < nq ? (q * 7) % (kNk + 1) : kNk;  // 0 (a row before the tile) up to every key
  }
  k.attn_scores(kNk, kDim, keys.data(), kDim, qt.data(), nq, ld, s.data());
  k.attn_softmax(kNk, lim.data(), nq, ld, s.data(), m.data(), l.data(), corr.data());
  k.attn_accumulate(kNk, kDv, values.data(), kDv, s.data(), corr.data(), nq, ld, ot.data());
  TileOut out;
  for (int q = 0; q < same; ++q) {
    for (int j = 0; j < kNk; ++j) out.s.push_back(s[j * ld + q]);
    out.m.push_back(m[q]);
    out.l.push_back(l[q]);
    for (int e = 0; e < kDv; ++e) out.ot.push_back(ot[e * ld + q]);
  }
  return out;
}

TEST(AttentionTiles, SimdMatchesScalar) {
  for (const Kernels* k : SimdTables()) {
    for (int nq : {1, 7, 16, 23, 112}) {
      SCOPED_TRACE(std::string(k->name) + " nq " + std::to_string(nq));
      const TileOut want = RunTile(ScalarKernels(), nq, nq, 5);
      const TileOut got = RunTile(*k, nq, nq, 5);
      for (std::size_t i = 0; i < want.s.size(); ++i) EXPECT_NEAR(got.s[i], want.s[i], 1e-5);
      for (std::size_t i = 0; i < want.m.size(); ++i) {
        EXPECT_NEAR(got.m[i], want.m[i], 1e-5);
        EXPECT_NEAR(got.l[i], want.l[i], 1e-4 * want.l[i]);
      }
      for (std::size_t i = 0; i < want.ot.size(); ++i) EXPECT_NEAR(got.ot[i], want.ot[i], 1e-4);
    }
  }
}

TEST(AttentionTiles, LaneResultsDoNotDependOnOtherLanes) {
  // Seven lanes (a decode row of Qwen's GQA group) alone, and as the first lanes of wider tiles
  // whose other lanes differ: bit-identical, on every table (AVX-512 uses an 8-lane vector for
  // the short tile and 16-lane vectors for the wide ones).
  std::vector<const Kernels*> tables = SimdTables();
  tables.push_back(&ScalarKernels());
  for (const Kernels* k : tables) {
    const TileOut alone = RunTile(*k, 7, 7, 1);
    for (int nq : {8, 16, 23, 64, 112}) {
      SCOPED_TRACE(std::string(k->name) + " nq " + std::to_string(nq));
      const TileOut wide = RunTile(*k, nq, 7, 2 + nq);
      EXPECT_EQ(alone.s, wide.s);
      EXPECT_EQ(alone.m, wide.m);
      EXPECT_EQ(alone.l, wide.l);
      EXPECT_EQ(alone.ot, wide.ot);
    }
  }
}

TEST(AttentionTiles, AccumulateRowsMatchesTransposedAccumulate) {
  // The decode layout (values in lanes) against the scalar transposed accumulation, for query
  // counts below, at and above a register block and value widths with and without a tail.
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<const Kernels*> tables = SimdTables();
  tables.push_back(&ScalarKernels());
  for (const Kernels* k : tables) {
    for (int nq : {1, 7, 13, 16}) {
      for (int dv : {36, 64, 512}) {
        SCOPED_TRACE(std::string(k->name) + " nq " + std::to_string(nq) + " dv " +
                     std::to_string(dv));
        constexpr int kNk = 45, ld = 16;
        std::vector<float> v(kNk * dv), p(kNk * ld), corr(ld), ot(dv * ld), o(nq * dv);
        for (float& x : v) x = normal(rng);
        for (float& x : p) x = std::fabs(normal(rng));
        for (float& x : corr) x = std::fabs(normal(rng));
        for (int q = 0; q < nq; ++q) {
          for (int e = 0; e < dv; ++e) o[q * dv + e] = ot[e * ld + q] = normal(rng);
        }
        ScalarKernels().attn_accumulate(kNk, dv, v.data(), dv, p.data(), corr.data(), nq, ld,
                                        ot.data());
        k->attn_accumulate_rows(kNk, dv, v.data(), dv, p.data(), ld, corr.data(), nq, o.data(), dv);
        for (int q = 0; q < nq; ++q) {
          for (int e = 0; e < dv; ++e) EXPECT_NEAR(o[q * dv + e], ot[e * ld + q], 1e-4);
        }
      }
    }
  }
}

TEST(AttentionTiles, AccumulateRowsFromF16ValuesEqualsFloatEntryOnConvertedValues) {
  // A decode row reads an F16 cache's values in place: the same sums as the float entry on the
  // converted values, bit for bit, with a row stride wider than the values (a head's slice of a
  // cache row), for query counts around a register block and value widths with a tail.
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<const Kernels*> tables = SimdTables();
  tables.push_back(&ScalarKernels());
  for (const Kernels* k : tables) {
    for (int nq : {1, 7, 12, 13, 16}) {
      for (int dv : {36, 64, 512}) {
        SCOPED_TRACE(std::string(k->name) + " nq " + std::to_string(nq) + " dv " +
                     std::to_string(dv));
        constexpr int kNk = 45, ld = 16;
        const int ldv = dv + 32;
        std::vector<std::uint16_t> v16(kNk * ldv);
        std::vector<float> v(kNk * ldv), p(kNk * ld), corr(ld), o(nq * dv);
        for (std::size_t i = 0; i < v16.size(); ++i) {
          v16[i] = Fp32ToFp16(normal(rng));
          v[i] = Fp16ToFp32(v16[i]);
        }
        for (float& x : p) x = std::fabs(normal(rng));
        for (float& x : corr) x = std::fabs(normal(rng));
        for (float& x : o) x = normal(rng);
        std::vector<float> want = o;
        k->attn_accumulate_rows(kNk, dv, v.data(), ldv, p.data(), ld, corr.data(), nq, want.data(),
                                dv);
        k->attn_accumulate_rows_f16(kNk, dv, v16.data(), ldv, p.data(), ld, corr.data(), nq,
                                    o.data(), dv);
        EXPECT_EQ(o, want);
      }
    }
  }
}

TEST(AttentionTiles, KvRowConversionMatchesDequantize) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> row(96), want(96), got(96);
  for (float& v : row) v = normal(rng);
  std::vector<std::uint8_t> stored(96 * 4);
  for (const Kernels* k : SimdTables()) {
    for (TensorType t : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0}) {
      SCOPED_TRACE(std::string(k->name) + " type " + std::to_string(static_cast<int>(t)));
      if (t == TensorType::kF32) std::memcpy(stored.data(), row.data(), 96 * 4);
      if (t == TensorType::kF16) {
        for (int e = 0; e < 96; ++e) {
          const std::uint16_t h = Fp32ToFp16(row[e]);
          std::memcpy(stored.data() + 2 * e, &h, 2);
        }
      }
      if (t == TensorType::kQ8_0) QuantizeRowQ8_0(row.data(), stored.data(), 96);
      DequantizeRow(t, stored.data(), want.data(), 96);
      k->kv_to_float[static_cast<int>(t)](96, stored.data(), got.data());
      EXPECT_EQ(got, want);
    }
  }
}

}  // namespace
}  // namespace airlock::engine

namespace {

// Back-to-back jobs of varying sizes: every task of every job runs exactly once, and Run never
// returns early or waits forever (a worker lagging on an old job once claimed a task of the next).
TEST(ThreadPoolTest, ManyBackToBackJobsRunEachTaskExactlyOnce) {
  for (int threads : {2, 3, 4}) {
    airlock::engine::ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits(64);
    for (int job = 0; job < 20000; ++job) {
      const int n = 1 + (job * 7) % 63;
      for (int i = 0; i < n; ++i) hits[i].store(0, std::memory_order_relaxed);
      auto fn = [&](int task, int) { hits[task].fetch_add(1, std::memory_order_relaxed); };
      pool.Run(n, fn);
      for (int i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "job " << job << " task " << i;
    }
  }
}

}  // namespace
