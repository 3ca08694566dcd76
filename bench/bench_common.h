// Helpers shared by the engine benchmarks (engine_bench, moe_bench, kernel_bench): deterministic
// random tensor contents for generated GGUF models, CPU and wall clocks, the read-bandwidth sweep
// that the "fraction of bound" columns divide by, the int8 multiply-add peak that prompt figures
// are compared with, and comma lists. Header-only, internal linkage.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "engine/internal/thread_pool.h"
#include "engine/kernels.h"
#include "formats/gguf_writer.h"

namespace airlock::bench {
namespace {

namespace gguf = formats::gguf;
using Clock = std::chrono::steady_clock;

std::uint64_t Hash(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// Offsets of the fp16 scale fields inside a block, which get a fixed sane value.
std::vector<int> HalfFields(gguf::GgmlType t) {
  switch (t) {
    case gguf::GgmlType::kQ4_0:
    case gguf::GgmlType::kQ5_0:
    case gguf::GgmlType::kQ8_0:
      return {0};
    case gguf::GgmlType::kQ4_K:
      return {0, 2};
    case gguf::GgmlType::kQ6_K:
      return {208};
    default:
      return {};
  }
}

gguf::Writer::FillFn RandomFill(gguf::GgmlType type, std::uint64_t seed) {
  const auto* traits = gguf::GetTypeTraits(type);
  const std::uint32_t bb = traits->type_size;
  const auto fields = HalfFields(type);
  const std::uint16_t scale = engine::Fp32ToFp16(type == gguf::GgmlType::kQ4_K ? 0.002f : 0.004f);
  return [=](std::uint64_t offset, std::span<std::byte> out) {
    for (std::size_t i = 0; i < out.size(); ++i) {
      const std::uint64_t pos = offset + i;
      std::uint8_t v;
      if (type == gguf::GgmlType::kF16) {
        // Small normal-ish values: fp16 of a hashed value in [-0.05, 0.05).
        const std::uint64_t elem = pos / 2;
        const float f = (static_cast<float>(Hash(elem ^ seed) % 10000) - 5000.0f) * 1e-5f;
        const std::uint16_t h = engine::Fp32ToFp16(f);
        v = static_cast<std::uint8_t>(pos % 2 == 0 ? h & 0xff : h >> 8);
      } else {
        const std::uint32_t in_block = static_cast<std::uint32_t>(pos % bb);
        v = static_cast<std::uint8_t>(Hash(pos ^ seed));
        for (int f : fields) {
          if (in_block == static_cast<std::uint32_t>(f)) v = scale & 0xff;
          if (in_block == static_cast<std::uint32_t>(f) + 1) v = scale >> 8;
        }
      }
      out[i] = static_cast<std::byte>(v);
    }
  };
}

bool UseMoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// User + system CPU seconds of this process so far.
double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec * 1e-6;
}

// The 1-, 5- and 15-minute load averages ("2.10 1.95 1.80"), to report beside timings on a shared
// machine; "?" where /proc/loadavg cannot be read.
std::string LoadAverage() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return "?";
  char buf[64] = {};
  const bool ok = std::fgets(buf, sizeof(buf), f) != nullptr;
  std::fclose(f);
  if (!ok) return "?";
  std::string s(buf);
  std::size_t end = 0;
  for (int fields = 0; fields < 3 && end != std::string::npos; ++fields)
    end = s.find(' ', end + (fields ? 1 : 0));
  return s.substr(0, end);
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Read bandwidth in GB/s: `threads` threads summing disjoint halves of a 1 GiB buffer; best of 3.
// Sums 64-bit words in [begin, end) with 256-bit loads where the CPU has AVX2: plain scalar
// loads (this file is built for baseline x86-64) cannot saturate the memory bus on a modern core
// and would understate the bandwidth, flattering the "fraction of bound" column.
#if defined(__x86_64__)
__attribute__((target("avx2"))) std::uint64_t SumAvx2(const std::uint64_t* p, std::size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  std::uint64_t total = static_cast<std::uint64_t>(_mm256_extract_epi64(s, 0)) +
                        static_cast<std::uint64_t>(_mm256_extract_epi64(s, 1)) +
                        static_cast<std::uint64_t>(_mm256_extract_epi64(s, 2)) +
                        static_cast<std::uint64_t>(_mm256_extract_epi64(s, 3));
  for (; i < n; ++i) total += p[i];
  return total;
}
#endif

std::uint64_t SumWords(const std::uint64_t* p, std::size_t n) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return SumAvx2(p, n);
#endif
  std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

double MeasureReadBandwidth(int threads) {
  const std::size_t n = (1ull << 30) / sizeof(std::uint64_t);
  std::vector<std::uint64_t> buf(n);
  for (std::size_t i = 0; i < n; ++i) buf[i] = i;
  engine::ThreadPool pool(threads);
  std::vector<std::uint64_t> sums(threads * 8);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    auto task = [&](int t, int) {
      const std::size_t begin = n / threads * t, end = t == threads - 1 ? n : n / threads * (t + 1);
      sums[t * 8] = SumWords(buf.data() + begin, end - begin);
    };
    pool.Run(threads, task);
    best = std::max(
        best, static_cast<double>(n * sizeof(std::uint64_t)) / Seconds(t0, Clock::now()) / 1e9);
  }
  std::uint64_t total = 0;
  for (auto v : sums) total += v;
  if (total == 42) std::printf(" ");  // keep the sums observable
  return best;
}

#if defined(__x86_64__)
// Int8 multiply-add peak of one thread: independent accumulator chains (enough to cover the
// latency: 12 chains of 512-bit vpdpbusd measured 0.7x of 24 on this project's VM) of the
// instruction sequence an int8 product needs, u8 x s8 into int32, on registers only. AVX-512
// VNNI: one 512-bit vpdpbusd per 64 multiply-adds; AVX2: vpmaddubsw + vpmaddwd + vpaddd per 32.
constexpr int kPeakChainsVnni = 24;  // of the 32 vector registers
constexpr int kPeakChainsAvx2 = 12;  // of the 16

// The chain loops are unrolled so that the accumulators stay in registers (a loop over the
// array kept them in memory).
[[maybe_unused]] __attribute__((target("avx512f,avx512bw,avx512vnni"))) double Int8PeakVnni(
    long iters) {
  __m512i acc[kPeakChainsVnni];
#pragma GCC unroll 32
  for (int c = 0; c < kPeakChainsVnni; ++c) acc[c] = _mm512_set1_epi32(c);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-5);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 32
    for (int c = 0; c < kPeakChainsVnni; ++c) {
      acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
      __asm__ volatile("" : "+v"(acc[c]));  // keeps the chains from being folded
    }
  }
  __m512i sum = acc[0];
#pragma GCC unroll 32
  for (int c = 1; c < kPeakChainsVnni; ++c) sum = _mm512_add_epi32(sum, acc[c]);
  alignas(64) std::int32_t lanes[16];
  _mm512_store_si512(lanes, sum);
  return static_cast<double>(lanes[0]);
}

[[maybe_unused]] __attribute__((target("avx2"))) double Int8PeakAvx2(long iters) {
  __m256i acc[kPeakChainsAvx2];
#pragma GCC unroll 32
  for (int c = 0; c < kPeakChainsAvx2; ++c) acc[c] = _mm256_set1_epi32(c);
  const __m256i a = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 32
    for (int c = 0; c < kPeakChainsAvx2; ++c) {
      // The chain's own bytes as the signed operand, so nothing is loop-invariant.
      acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a, acc[c]), ones));
      __asm__ volatile("" : "+v"(acc[c]));
    }
  }
  __m256i sum = acc[0];
#pragma GCC unroll 32
  for (int c = 1; c < kPeakChainsAvx2; ++c) sum = _mm256_add_epi32(sum, acc[c]);
  return static_cast<double>(_mm256_extract_epi32(sum, 0));
}

// Int8 multiply-adds per second of `threads` threads running at once (best of 3), with the
// widest of the two sequences this CPU has; 0 without AVX2.
[[maybe_unused]] double MeasureInt8Peak(int threads, const char** what) {
  const bool vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
  if (!vnni && !__builtin_cpu_supports("avx2")) return 0;
  *what = vnni ? "512-bit vpdpbusd" : "256-bit vpmaddubsw+vpmaddwd";
  const double macs_per_step = vnni ? kPeakChainsVnni * 64.0 : kPeakChainsAvx2 * 32.0;
  const long iters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<std::thread> pool;
    std::vector<double> sink(threads);
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] { sink[t] = vnni ? Int8PeakVnni(iters) : Int8PeakAvx2(iters); });
    }
    for (auto& th : pool) th.join();
    best = std::max(best, threads * iters * macs_per_step / Seconds(t0, Clock::now()));
  }
  return best;
}
#else
[[maybe_unused]] double MeasureInt8Peak(int, const char**) { return 0; }
#endif

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace
}  // namespace airlock::bench
