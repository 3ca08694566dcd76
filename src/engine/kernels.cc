// Run-time selection of the kernel table.
#include "engine/kernels.h"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace airlock::engine {

namespace {

#if defined(__x86_64__) || defined(__i386__)
struct CpuFeatures {
  bool avx2 = false;    // AVX2 + FMA + F16C, with the OS saving YMM state
  bool avx512 = false;  // AVX-512 F/BW/VL + VNNI, with the OS saving ZMM state
};

// CPUID/XGETBV directly: compilers disagree on the feature names __builtin_cpu_supports knows.
CpuFeatures DetectCpu() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  unsigned xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6) != 0x6) return f;  // XMM and YMM state
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31), vnni = c & (1u << 11);
  f.avx2 = avx2 && fma && f16c;
  f.avx512 = f.avx2 && avx512f && avx512bw && avx512vl && vnni && (xcr0_lo & 0xe0) == 0xe0;
  return f;
}
#else
struct CpuFeatures {
  bool avx2 = false;
  bool avx512 = false;
};
CpuFeatures DetectCpu() { return {}; }
#endif

const CpuFeatures& Cpu() {
  static const CpuFeatures f = DetectCpu();
  return f;
}
bool CpuHasAvx2() { return Cpu().avx2; }
bool CpuHasAvx512() { return Cpu().avx512; }

}  // namespace

const Kernels* Avx2Kernels() {
  static const Kernels* table = []() -> const Kernels* {
    if (!internal::Avx2Compiled() || !CpuHasAvx2()) return nullptr;
    static Kernels k = ScalarKernels();
    internal::FillAvx2Kernels(&k);
    return &k;
  }();
  return table;
}

const Kernels* Avx512Kernels() {
  static const Kernels* table = []() -> const Kernels* {
    if (!internal::Avx512Compiled() || !CpuHasAvx512() || Avx2Kernels() == nullptr) return nullptr;
    static Kernels k = *Avx2Kernels();
    internal::FillAvx512Kernels(&k);
    return &k;
  }();
  return table;
}

const Kernels* NeonKernels() {
  static const Kernels* table = []() -> const Kernels* {
    if (!internal::NeonCompiled()) return nullptr;
    static Kernels k = ScalarKernels();
    internal::FillNeonKernels(&k, internal::NeonDotprodSupported());
    return &k;
  }();
  return table;
}

const Kernels& BestKernels() {
  static const Kernels* best = []() {
    const char* want = std::getenv("AIRLOCK_ENGINE_KERNELS");
    if (want != nullptr && std::strcmp(want, "scalar") == 0) return &ScalarKernels();
    if (want != nullptr && std::strcmp(want, "avx2") == 0 && Avx2Kernels()) return Avx2Kernels();
    if (want != nullptr && std::strcmp(want, "neon") == 0 && NeonKernels()) return NeonKernels();
    if (Avx512Kernels()) return Avx512Kernels();
    if (Avx2Kernels()) return Avx2Kernels();
    if (NeonKernels()) return NeonKernels();
    return &ScalarKernels();
  }();
  return *best;
}

}  // namespace airlock::engine
