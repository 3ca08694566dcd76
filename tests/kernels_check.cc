// Self-checking comparison of every SIMD kernel table this CPU can run (AVX2, AVX-512, NEON and
// its dotprod variant) against the scalar reference, without GoogleTest so that it also builds
// for other architectures from the kernel sources alone (AIRLOCK_KERNELS_ONLY, used by
// scripts/check-neon.sh under qemu). It runs the comparisons of tests/engine/kernels_test.cc's
// SimdMatchesScalar and TileMatchesDotPerToken, plus quantizer edge cases, prints one line per
// table and exits 1 on any mismatch.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels.h"
#include "kernel_test_data.h"

namespace airlock::engine {
namespace {

int failures = 0;

void Fail(const std::string& what) {
  if (++failures <= 20) std::fprintf(stderr, "MISMATCH %s\n", what.c_str());
}

using namespace test_data;  // NOLINT(build/namespaces): the shared random inputs

bool Near(double got, double want, double tol) { return std::fabs(got - want) <= tol; }

struct Counts {
  int types = 0;      // weight types whose dot differs from the scalar entry
  long compared = 0;  // dot results compared with the scalar reference
  long tiles = 0;     // tile results compared with per-token dots
  int quantized = 0;  // activation rows whose bytes were compared
};

// Quantizer output must be byte-identical to the scalar one, including awkward inputs.
void CheckQuantizers(const Kernels& k, Counts* c) {
  std::mt19937 rng(11);
  std::vector<std::vector<float>> inputs;
  for (std::int64_t n : {256, 768, 2048}) inputs.push_back(RandomFloats(n, rng));
  std::vector<float> edge(512, 0.0f);  // block 0: all zero
  for (int j = 256; j < 512; ++j) edge[j] = static_cast<float>((j % 9) - 4) * 0.5f;  // ties
  edge[300] = 7.0f;
  edge[301] = -7.0f;  // equal magnitudes: the first one's sign wins
  inputs.push_back(edge);
  for (const auto& x : inputs) {
    for (ActFormat f : {ActFormat::kF32, ActFormat::kQ8x32, ActFormat::kQ8K}) {
      ++c->quantized;
      if (Quantize(k, f, x) != Quantize(ScalarKernels(), f, x)) {
        Fail(std::string(k.name) + " quantizer " + std::to_string(static_cast<int>(f)) +
             " n=" + std::to_string(x.size()));
      }
    }
  }
}

void CheckDots(const Kernels& k, TensorType type, Counts* c) {
  const TensorTypeInfo* info = GetTensorTypeInfo(static_cast<std::uint32_t>(type));
  const DotRowsFn dot = k.dot[static_cast<int>(type)];
  const DotRowsFn ref = ScalarKernels().dot[static_cast<int>(type)];
  if (dot == nullptr) return Fail(std::string(k.name) + " has no " + info->name + " kernel");
  if (dot != ref) ++c->types;
  for (std::int64_t n : {256, 768, 2048}) {
    std::mt19937 rng(7 + static_cast<int>(n) + static_cast<int>(type));
    const int rows = 19;  // two groups of 8 rows and a 3-row tail
    auto w = RandomRows(type, rows, n, rng);
    auto x = RandomFloats(n, rng);
    const std::size_t rb = w.size() / rows;
    auto a = Quantize(ScalarKernels(), info->act, x);
    std::vector<float> want(rows), got(rows), from8(rows - 8);
    ref(n, w.data(), rb, rows, a.data(), want.data());
    dot(n, w.data(), rb, rows, a.data(), got.data());
    dot(n, w.data() + 8 * rb, rb, rows - 8, a.data(), from8.data());
    const std::string where = std::string(k.name) + " " + info->name + " n=" + std::to_string(n);
    for (int r = 0; r < rows; ++r) {
      const double tol = 2e-6 * AbsDotScale(type, w.data() + r * rb, x) + 1e-6;
      ++c->compared;
      if (!Near(got[r], want[r], tol)) {
        Fail(where + " row " + std::to_string(r) + ": " + std::to_string(got[r]) + " vs scalar " +
             std::to_string(want[r]));
      }
      // Rows from a call starting at row 8 are bit-identical (results never depend on how
      // MatMul splits rows between threads); one row at a time agrees within rounding.
      if (r >= 8 && from8[r - 8] != got[r]) Fail(where + " row " + std::to_string(r) + " from 8");
      float one;
      dot(n, w.data() + r * rb, rb, 1, a.data(), &one);
      if (!Near(one, got[r], tol)) Fail(where + " row " + std::to_string(r) + " alone");
    }
  }
}

void CheckTile(const Kernels& k, TensorType type, Counts* c) {
  const DotTileFn tile = k.tile[static_cast<int>(type)];
  if (tile == nullptr) return;
  const TensorTypeInfo* info = GetTensorTypeInfo(static_cast<std::uint32_t>(type));
  std::mt19937 rng(99 + static_cast<int>(type));
  const std::int64_t n = 512;
  // Two 16-row groups (AVX-512 prompt tiles), then a 5-row tail in a partial eight-row group; 11
  // tokens: not a multiple of the 4/8-token groups.
  const int rows = 37, ntok = 11;
  auto w = RandomRows(type, rows, n, rng);
  const std::size_t rb = w.size() / rows;
  const std::size_t stride = ActRowBytes(info->act, n);
  std::vector<std::uint8_t> acts(stride * ntok);
  std::vector<double> scales(rows * ntok);
  for (int t = 0; t < ntok; ++t) {
    auto x = RandomFloats(n, rng);
    auto a = Quantize(k, info->act, x);
    std::memcpy(acts.data() + t * stride, a.data(), stride);
    for (int r = 0; r < rows; ++r) scales[t * rows + r] = AbsDotScale(type, w.data() + r * rb, x);
  }
  const std::size_t ldo = rows + 3;
  std::vector<float> tiled(ntok * ldo, -1.0f);
  tile(n, w.data(), rb, rows, acts.data(), stride, ntok, tiled.data(), ldo);
  for (int t = 0; t < ntok; ++t) {
    std::vector<float> want(rows);
    k.dot[static_cast<int>(type)](n, w.data(), rb, rows, acts.data() + t * stride, want.data());
    for (int r = 0; r < rows; ++r) {
      ++c->tiles;
      if (!Near(tiled[t * ldo + r], want[r], 2e-6 * scales[t * rows + r] + 1e-6))
        Fail(std::string(k.name) + " " + info->name + " tile token " + std::to_string(t));
    }
    for (std::size_t r = rows; r < ldo; ++r) {
      if (tiled[t * ldo + r] != -1.0f) Fail(std::string(k.name) + " tile wrote past nrows");
    }
  }
}

int Run() {
  std::vector<const Kernels*> tables;
  if (Avx2Kernels()) tables.push_back(Avx2Kernels());
  if (Avx512Kernels()) tables.push_back(Avx512Kernels());
  // Both NEON variants where the CPU allows, whichever NeonKernels() picked.
  static Kernels neon_base = ScalarKernels(), neon_dot = ScalarKernels();
  if (internal::NeonCompiled()) {
    internal::FillNeonKernels(&neon_base, false);
    tables.push_back(&neon_base);
    if (internal::NeonDotprodSupported()) {
      internal::FillNeonKernels(&neon_dot, true);
      tables.push_back(&neon_dot);
    }
    const char* want = internal::NeonDotprodSupported() ? "neon-dotprod" : "neon";
    if (NeonKernels() == nullptr || std::strcmp(NeonKernels()->name, want) != 0)
      Fail(std::string("NeonKernels() is not the ") + want + " table");
  }
  std::printf("kernels_check: best table %s\n", BestKernels().name);
  if (tables.empty()) {
    std::printf("kernels_check: this CPU has no SIMD kernel table; nothing to compare\n");
    return 0;
  }
  for (const Kernels* k : tables) {
    Counts c;
    CheckQuantizers(*k, &c);
    for (TensorType type : kAllTypes) {
      CheckDots(*k, type, &c);
      CheckTile(*k, type, &c);
    }
    std::printf(
        "kernels_check: %-13s %2d own dot kernels of %zu types; %ld rows vs scalar (n = 256, 768, "
        "2048; 19 rows each); %ld tile results; %d activation rows byte-compared\n",
        k->name, c.types, std::size(kAllTypes), c.compared, c.tiles, c.quantized);
  }
  if (failures > 0) {
    std::printf("kernels_check: FAILED (%d mismatches)\n", failures);
    return 1;
  }
  std::printf("kernels_check: OK\n");
  return 0;
}

}  // namespace
}  // namespace airlock::engine

int main() { return airlock::engine::Run(); }
