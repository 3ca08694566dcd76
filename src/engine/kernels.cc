// Run-time selection of the kernel table.
#include "engine/internal/kernels.h"

#include <cstdlib>
#include <cstring>

namespace airlock::engine {

namespace {
bool CpuHasAvx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}
bool CpuHasAvx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return CpuHasAvx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}
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

const Kernels& BestKernels() {
  static const Kernels* best = []() {
    const char* want = std::getenv("AIRLOCK_ENGINE_KERNELS");
    if (want != nullptr && std::strcmp(want, "scalar") == 0) return &ScalarKernels();
    if (want != nullptr && std::strcmp(want, "avx2") == 0 && Avx2Kernels()) return Avx2Kernels();
    if (Avx512Kernels()) return Avx512Kernels();
    if (Avx2Kernels()) return Avx2Kernels();
    return &ScalarKernels();
  }();
  return *best;
}

}  // namespace airlock::engine
