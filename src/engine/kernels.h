// Numeric kernels of the inference engine: ggml tensor types (block layouts), activation
// quantization, dequantization, dot products and the attention tile kernels, with a scalar
// reference implementation that is always built and SIMD implementations (AVX2/FMA/F16C, AVX-512
// VNNI on x86-64; NEON, with an ARMv8.2 dotprod variant, on AArch64; NEON attention uses the
// scalar tile kernels) chosen at run time.
// A weight row of type T is dotted with an activation row in T's activation format: F32 for
// float weights, blocks of 32 int8 (Q8x32) for the 32-element quants, blocks of 256 int8 with
// 16-element sums (Q8K) for the K-quants, mirroring ggml's vec_dot_type. Kernel tables are
// immutable after start-up; every function is thread-safe on disjoint outputs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "formats/ggml_types.h"

namespace airlock::engine {

// ggml type ids, as stored in GGUF tensor infos (one definition, shared with the parser). The
// engine computes with F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K-Q6_K
// (GetTensorTypeInfo); their ids are below kMaxTensorTypeId, the size of the kernel tables.
using TensorType = formats::gguf::GgmlType;
inline constexpr std::uint32_t kMaxTensorTypeId = 31;

// Activation formats (what an input row is converted to before the dot products).
enum class ActFormat : std::uint8_t { kF32 = 0, kQ8x32 = 1, kQ8K = 2 };
inline constexpr int kActFormatCount = 3;

struct TensorTypeInfo {
  const char* name;
  std::uint32_t block_elems;
  std::uint32_t block_bytes;
  ActFormat act;
};

// Traits of a supported weight type; nullptr for any other id.
const TensorTypeInfo* GetTensorTypeInfo(std::uint32_t type_id);

// ---- block layouts (little-endian, packed; sizes as in ggml) ----
inline constexpr int kQK = 32;    // elements per block of the 32-element quants
inline constexpr int kQKK = 256;  // elements per K-quant super-block

struct BlockQ4_0 {
  std::uint16_t d;
  std::uint8_t qs[16];
};
struct BlockQ4_1 {
  std::uint16_t d, m;
  std::uint8_t qs[16];
};
struct BlockQ5_0 {
  std::uint16_t d;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
struct BlockQ5_1 {
  std::uint16_t d, m;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
struct BlockQ8_0 {
  std::uint16_t d;
  std::int8_t qs[32];
};
struct BlockQ2_K {
  std::uint8_t scales[16];
  std::uint8_t qs[64];
  std::uint16_t d, dmin;
};
struct BlockQ3_K {
  std::uint8_t hmask[32];
  std::uint8_t qs[64];
  std::uint8_t scales[12];
  std::uint16_t d;
};
struct BlockQ4_K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[128];
};
struct BlockQ5_K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[32];
  std::uint8_t qs[128];
};
struct BlockQ6_K {
  std::uint8_t ql[128];
  std::uint8_t qh[64];
  std::int8_t scales[16];
  std::uint16_t d;
};
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84 &&
              sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 &&
              sizeof(BlockQ6_K) == 210);

// Activation blocks. d is rounded to fp16 precision as ggml does; sum = sum(qs).
struct ActQ8x32 {
  float d;
  std::int32_t sum;
  std::int8_t qs[32];
};
struct ActQ8K {
  float d;
  std::int8_t qs[256];
  std::int16_t bsums[16];
};

// Bytes of one activation row of `n` elements in `format` (n a multiple of the block size).
std::size_t ActRowBytes(ActFormat format, std::int64_t n);

float Fp16ToFp32(std::uint16_t h);
std::uint16_t Fp32ToFp16(float f);  // round to nearest even
float Bf16ToFp32(std::uint16_t h);
std::uint16_t Fp32ToBf16(float f);  // round to nearest even

// Converts `n` elements of a row of `type` to float (scalar; used for embeddings and tests).
void DequantizeRow(TensorType type, const void* src, float* dst, std::int64_t n);
// Converts `n` floats (a multiple of 32) to Q8_0 blocks as ggml's reference quantizer does:
// d = max|x| / 127 (stored as fp16), q = round(x / d).
void QuantizeRowQ8_0(const float* src, void* dst, std::int64_t n);

// out[r] = dot(row r of w, act) for r < nrows; rows are `row_bytes` apart; n = row length.
using DotRowsFn = void (*)(std::int64_t n, const void* w, std::size_t row_bytes, int nrows,
                           const void* act, float* out);
// Converts a float row into an activation row.
using QuantizeActFn = void (*)(const float* x, void* out, std::int64_t n);
// out[t * ldo + r] = dot(row r of w, activation row t) for r < nrows, t < ntok; activation rows
// are `act_stride` bytes apart. Lets SIMD code unpack a weight block once for several tokens.
using DotTileFn = void (*)(std::int64_t n, const void* w, std::size_t row_bytes, int nrows,
                           const void* act, std::size_t act_stride, int ntok, float* out,
                           std::size_t ldo);

// ---- attention tiles (engine/blocks/attention.cc) ----
// Attention runs on float tiles with the queries in lanes: a tile of `nq` queries (lanes, `ld`
// floats apart in every per-query array, ld a multiple of 16, the lanes from nq up to ld holding
// finite padding) against a tile of keys. Every kernel computes each lane the same way whatever
// nq is (the SIMD tables mix vector widths for the tail), so a query's result does not depend on
// which other queries share its tile.
//
// Converts `n` values of a KV cache row (F32, F16, Q8_0; n a multiple of 32 for Q8_0) to float.
using ToFloatRowFn = void (*)(std::int64_t n, const void* row, float* out);
// s[j * ld + q] = sum over d < dim, in order, of k[j * ldk + d] * qt[d * ld + q], for j < nk and
// q < nq: the scores of nk keys (rows of k) against the queries stored transposed (qt[dim][ld]).
using AttnScoresFn = void (*)(int nk, std::int64_t dim, const float* k, std::int64_t ldk,
                              const float* qt, int nq, std::int64_t ld, float* s);
// One online-softmax step over a tile of scores, per lane q < nq: key j < nk counts when
// j < lim[q]. The running maximum m[q] takes the tile's maximum, corr[q] = exp(m_old - m_new)
// (exactly 1 when the maximum did not move), s[j * ld + q] becomes exp(s - m_new) (0 for keys that
// do not count) and l[q] = l[q] * corr[q] + the sum of the tile's exp values, in key order.
using AttnSoftmaxFn = void (*)(int nk, const int* lim, int nq, std::int64_t ld, float* s, float* m,
                               float* l, float* corr);
// ot[e * ld + q] = ot[e * ld + q] * corr[q] + sum over j < nk, in order, of
// v[j * ldv + e] * p[j * ld + q], for e < dv and q < nq: the value accumulator, transposed.
using AttnAccumulateFn = void (*)(int nk, std::int64_t dv, const float* v, std::int64_t ldv,
                                  const float* p, const float* corr, int nq, std::int64_t ld,
                                  float* ot);

// The same accumulation with the accumulator in rows, o[q * ldo + e] (values in lanes): for a
// lone row (decode), whose few query heads would fill a fraction of a vector as lanes.
using AttnAccumulateRowsFn = void (*)(int nk, std::int64_t dv, const float* v, std::int64_t ldv,
                                      const float* p, std::int64_t ld, const float* corr, int nq,
                                      float* o, std::int64_t ldo);

// The same with the values as F16 rows (v[j * ldv + e], ldv in elements), converted as they are
// read: a decode row reads an F16 cache's values in place. The result is the float entry's on
// the converted values, bit for bit.
using AttnAccumulateRowsF16Fn = void (*)(int nk, std::int64_t dv, const std::uint16_t* v,
                                         std::int64_t ldv, const float* p, std::int64_t ld,
                                         const float* corr, int nq, float* o, std::int64_t ldo);

struct Kernels {
  const char* name = "";
  ToFloatRowFn kv_to_float[kMaxTensorTypeId] = {};  // F32, F16, Q8_0 (the KV cache types)
  AttnScoresFn attn_scores = nullptr;
  AttnSoftmaxFn attn_softmax = nullptr;
  AttnAccumulateFn attn_accumulate = nullptr;
  AttnAccumulateRowsFn attn_accumulate_rows = nullptr;
  AttnAccumulateRowsF16Fn attn_accumulate_rows_f16 = nullptr;
  DotRowsFn dot[kMaxTensorTypeId] = {};
  DotTileFn tile[kMaxTensorTypeId] = {};         // optional; MatMul falls back to dot per token
  QuantizeActFn quantize[kActFormatCount] = {};  // kF32 entry copies
  // Every weight type takes float activations (dot = dequantize, then float math).
  bool float_activations = false;
};

const Kernels& ScalarKernels();
// Dequantize-then-float kernels: the "exact math" reference llama.cpp's dequantized-F32 logits
// are compared with (slow; for tests).
const Kernels& ExactKernels();
// The AVX2 and AVX-512 tables, or nullptr when not compiled in or the CPU lacks the features.
const Kernels* Avx2Kernels();
const Kernels* Avx512Kernels();
// The NEON table (dotprod variant when the CPU has it), or nullptr when not built for AArch64.
const Kernels* NeonKernels();
// The fastest table for this CPU; AIRLOCK_ENGINE_KERNELS=scalar|avx2|avx512|neon overrides it.
const Kernels& BestKernels();

namespace internal {
// Fill `k` (pre-filled with the scalar table) with SIMD entries. Defined in the per-ISA files.
void FillAvx2Kernels(Kernels* k);
void FillAvx512Kernels(Kernels* k);
bool Avx2Compiled();
bool Avx512Compiled();
// NEON (kernels_neon.cc): `use_dotprod` picks the vdotq_s32 integer kernels, which need the
// ARMv8.2 dotprod extension (NeonDotprodSupported); otherwise baseline ARMv8-A only.
void FillNeonKernels(Kernels* k, bool use_dotprod);
bool NeonCompiled();
bool NeonDotprodSupported();
}  // namespace internal

}  // namespace airlock::engine
