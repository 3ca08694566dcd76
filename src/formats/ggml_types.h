// The ggml tensor type ids, as stored in GGUF tensor infos: one definition for the parser
// (formats/gguf.h, which adds each type's block size and name) and the engine's kernels
// (engine/kernels.h, which names it engine::TensorType). Header-only, with no dependencies, so
// that the kernel sources build on their own (scripts/check-neon.sh).
#pragma once

#include <cstdint>

namespace airlock::formats::gguf {

// ggml tensor types as stored in tensor infos (ids from ggml.h).
enum class GgmlType : std::uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kNVFP4 = 40,
  kQ1_0 = 41,
  kQ2_0 = 42,
};
inline constexpr std::uint32_t kGgmlTypeCount = 43;

}  // namespace airlock::formats::gguf
