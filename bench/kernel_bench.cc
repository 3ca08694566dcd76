// Kernel-level figures of the quantized matrix products, one thread, weights in L2 (the compute
// side of the decode and prompt bounds, free of memory bandwidth and of the rest of the engine):
//   dot:  a matrix-vector product of 64 rows of 2048 (decode), in GB of weights per CPU-second;
//         decode can reach the bandwidth bound only if this is well above the per-thread share
//         of engine_bench's read bandwidth.
//   tile: 16 rows x 8 tokens (a prompt tile, as MatMul hands it out), in G multiply-adds per
//         CPU-second and as a fraction of the int8 peak of one thread (bench_common.h).
// Per CPU-second (CLOCK_THREAD_CPUTIME_ID, best of 15) so that other processes on the machine
// change the figures little. Usage: kernel_bench [--tables avx2,avx512vnni] [--types Q4_K,...]
#include <time.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../tests/kernel_test_data.h"
// The shared helpers this bench does not use (model generation, the bandwidth sweep) are
// internal-linkage functions of the header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "bench_common.h"
#pragma GCC diagnostic pop
#include "engine/kernels.h"

using namespace airlock::bench;              // NOLINT(build/namespaces): the shared helpers
using namespace airlock::engine;             // NOLINT(build/namespaces)
using namespace airlock::engine::test_data;  // NOLINT(build/namespaces): random valid rows

namespace {

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Best CPU time of one call of `f` over 15 rounds of `calls` calls.
template <typename F>
double BestCpuSeconds(long calls, F f) {
  double best = 1e30;
  for (int round = 0; round < 15; ++round) {
    const double c0 = ThreadCpuSeconds();
    for (long i = 0; i < calls; ++i) f();
    best = std::min(best, (ThreadCpuSeconds() - c0) / static_cast<double>(calls));
  }
  return best;
}

const TensorTypeInfo* InfoByName(const std::string& name, TensorType* type) {
  for (TensorType t : kAllTypes) {
    const TensorTypeInfo* info = GetTensorTypeInfo(static_cast<std::uint32_t>(t));
    if (info != nullptr && name == info->name) {
      *type = t;
      return info;
    }
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tables = "avx2,avx512vnni", types = "Q4_K,Q5_K,Q6_K,Q4_0,Q8_0";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--tables") {
      tables = v;
    } else if (k == "--types") {
      types = v;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  double peak = 0;  // int8 multiply-adds per CPU-second of one thread
  const char* peak_what = "none";
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) {
    constexpr long kIters = 20'000'000;
    peak = kIters * kPeakChainsVnni * 64.0 / BestCpuSeconds(1, [] { Int8PeakVnni(kIters); });
    peak_what = "512-bit vpdpbusd";
  }
#endif
  std::printf(
      "kernel_bench: 1 thread, rows of 2048, weights in L2; int8 peak (%s): %.1f G/CPU-s\n\n",
      peak_what, peak / 1e9);
  std::printf(
      "| table | type | dot GB/CPU-s (64 rows) | tile G mul-add/CPU-s (16 rows x 8 tokens) | tile "
      "/ "
      "int8 peak |\n|---|---|---|---|---|\n");
  constexpr std::int64_t kCols = 2048;
  for (const std::string& table : Split(tables)) {
    const Kernels* k = table == "avx2"         ? Avx2Kernels()
                       : table == "avx512vnni" ? Avx512Kernels()
                                               : nullptr;
    if (table == "scalar") k = &ScalarKernels();
    if (k == nullptr) {
      std::printf("| %s | (not available on this CPU) | | | |\n", table.c_str());
      continue;
    }
    for (const std::string& name : Split(types)) {
      TensorType type;
      const TensorTypeInfo* info = InfoByName(name, &type);
      if (info == nullptr) {
        std::fprintf(stderr, "unknown type %s\n", name.c_str());
        return 2;
      }
      std::mt19937 rng(7);
      constexpr int kDotRows = 64, kTileRows = 16, kTokens = 8;
      const auto w = RandomRows(type, kDotRows, kCols, rng);
      const std::size_t rb = w.size() / kDotRows;
      std::vector<std::uint8_t> acts;
      for (int t = 0; t < kTokens; ++t) {
        const auto a = Quantize(ScalarKernels(), info->act, RandomFloats(kCols, rng));
        acts.insert(acts.end(), a.begin(), a.end());
      }
      const std::size_t stride = acts.size() / kTokens;
      std::vector<float> out(kDotRows * kTokens);
      const DotRowsFn dot = k->dot[static_cast<int>(type)];
      const DotTileFn tile = k->tile[static_cast<int>(type)];
      const double dot_s =
          BestCpuSeconds(500, [&] { dot(kCols, w.data(), rb, kDotRows, acts.data(), out.data()); });
      std::printf("| %s | %s | %.1f | ", k->name, info->name, w.size() / dot_s / 1e9);
      if (tile == nullptr) {
        std::printf("(no tile kernel) | |\n");
        continue;
      }
      const double tile_s = BestCpuSeconds(2000, [&] {
        tile(kCols, w.data(), rb, kTileRows, acts.data(), stride, kTokens, out.data(), kTileRows);
      });
      const double macs = static_cast<double>(kCols) * kTileRows * kTokens / tile_s;
      std::printf("%.1f | %.2f |\n", macs / 1e9, peak > 0 ? macs / peak : 0.0);
      std::fflush(stdout);
    }
  }
  return 0;
}
