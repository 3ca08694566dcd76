// AVX2/FMA/F16C kernels. This file is compiled with -mavx2 -mfma -mf16c (see CMakeLists.txt) and
// only called after a run-time CPU check, so it must not define or instantiate inline functions
// shared with other translation units: everything here has internal linkage.
#include "engine/kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>
#include <utility>

namespace airlock::engine {
namespace {

inline float HalfToFloat(std::uint16_t h) { return _cvtsh_ss(h); }

inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Sum of products of 32 signed bytes, as 8 int32 lanes. maddubs needs an unsigned left operand,
// so the sign of x is moved onto y.
inline __m256i DotI8(__m256i x, __m256i y) {
  const __m256i ax = _mm256_sign_epi8(x, x);
  const __m256i sy = _mm256_sign_epi8(y, x);
  const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

template <typename Block, typename Unpack>
void DotRows32(std::int64_t n, const void* w, std::size_t row_bytes, int nrows, const void* act,
               float* out, Unpack unpack) {
  const auto* a = static_cast<const ActQ8x32*>(act);
  const std::int64_t nb = n / kQK;
  for (int r = 0; r < nrows; ++r) {
    const auto* row = reinterpret_cast<const Block*>(static_cast<const char*>(w) + r * row_bytes);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    std::int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
      const __m256i q0 = unpack(row[b]);
      const __m256i q1 = unpack(row[b + 1]);
      const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
      const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b + 1].qs));
      const __m256 s0 = _mm256_cvtepi32_ps(DotI8(q0, y0));
      const __m256 s1 = _mm256_cvtepi32_ps(DotI8(q1, y1));
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(HalfToFloat(row[b].d) * a[b].d), s0, acc0);
      acc1 = _mm256_fmadd_ps(_mm256_set1_ps(HalfToFloat(row[b + 1].d) * a[b + 1].d), s1, acc1);
    }
    for (; b < nb; ++b) {
      const __m256i q0 = unpack(row[b]);
      const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(HalfToFloat(row[b].d) * a[b].d),
                             _mm256_cvtepi32_ps(DotI8(q0, y0)), acc0);
    }
    out[r] = HorizontalSum(_mm256_add_ps(acc0, acc1));
  }
}

void DotQ8_0(std::int64_t n, const void* w, std::size_t rb, int nr, const void* a, float* o) {
  DotRows32<BlockQ8_0>(n, w, rb, nr, a, o, [](const BlockQ8_0& b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
  });
}

// ---- activation quantizers (byte-identical to the scalar ones: same float operations, ties to
// even like nearbyint, saturating packs equal the scalar clamp) ----

// 8 int32 -> 8 int8 (saturating), in order, in the low 8 bytes.
inline std::uint64_t PackInt32ToInt8(__m256i v) {
  const __m256i w16 = _mm256_packs_epi32(v, v);     // per 128-bit half: v0-3 v0-3 | v4-7 v4-7
  const __m256i w8 = _mm256_packs_epi16(w16, w16);  // bytes 0-3 = v0-3 | bytes 16-19 = v4-7
  const __m128i lo = _mm256_castsi256_si128(w8), hi = _mm256_extracti128_si256(w8, 1);
  return static_cast<std::uint32_t>(_mm_cvtsi128_si32(lo)) |
         static_cast<std::uint64_t>(static_cast<std::uint32_t>(_mm_cvtsi128_si32(hi))) << 32;
}

inline float HorizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline int HorizontalSumI32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

inline __m256i RoundToInt(__m256 v) {
  return _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// |x|, with the maximum taken so that a NaN is ignored as std::fmax / `ax > amax` ignore it.
inline __m256 AbsMax(__m256 acc, __m256 x) {
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  return _mm256_max_ps(ax, acc);  // the second operand wins when either is NaN
}

void QuantizeQ8x32(const float* x, void* out, std::int64_t n) {
  auto* blocks = static_cast<ActQ8x32*>(out);
  for (std::int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    __m256 v[4];
    __m256 amax_v = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      amax_v = AbsMax(amax_v, v[i]);
    }
    const float amax = HorizontalMax(amax_v);
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    __m256i sum = _mm256_setzero_si256();
    for (int i = 0; i < 4; ++i) {
      const __m256i q = RoundToInt(_mm256_mul_ps(v[i], _mm256_set1_ps(id)));
      sum = _mm256_add_epi32(sum, q);
      const std::uint64_t bytes = PackInt32ToInt8(q);
      __builtin_memcpy(blocks[b].qs + 8 * i, &bytes, 8);
    }
    blocks[b].d = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    blocks[b].sum = HorizontalSumI32(sum);
  }
}

void QuantizeQ8K(const float* x, void* out, std::int64_t n) {
  auto* blocks = static_cast<ActQ8K*>(out);
  for (std::int64_t b = 0; b < n / kQKK; ++b) {
    const float* xb = x + b * kQKK;
    ActQ8K& blk = blocks[b];
    __m256 amax_v = _mm256_setzero_ps();
    for (int i = 0; i < 32; ++i) amax_v = AbsMax(amax_v, _mm256_loadu_ps(xb + 8 * i));
    const float amax = HorizontalMax(amax_v);
    if (amax == 0) {
      std::memset(&blk, 0, sizeof(blk));
      continue;
    }
    // The signed value of the first element with the largest magnitude (the scalar scan keeps
    // the first on ties, and the sign matters).
    float max = 0;
    const __m256 target = _mm256_set1_ps(amax);
    for (int i = 0; i < 32; ++i) {
      const __m256 xv = _mm256_loadu_ps(xb + 8 * i);
      const int hit = _mm256_movemask_ps(
          _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), xv), target, _CMP_EQ_OQ));
      if (hit != 0) {
        max = xb[8 * i + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    for (int g = 0; g < 16; ++g) {
      const __m256i q0 =
          RoundToInt(_mm256_mul_ps(_mm256_loadu_ps(xb + 16 * g), _mm256_set1_ps(iscale)));
      const __m256i q1 =
          RoundToInt(_mm256_mul_ps(_mm256_loadu_ps(xb + 16 * g + 8), _mm256_set1_ps(iscale)));
      const std::uint64_t b0 = PackInt32ToInt8(q0), b1 = PackInt32ToInt8(q1);
      __builtin_memcpy(blk.qs + 16 * g, &b0, 8);
      __builtin_memcpy(blk.qs + 16 * g + 8, &b1, 8);
    }
    // Sums of the stored bytes (a 128 was clamped to 127 there, as in the scalar code).
    for (int g = 0; g < 16; ++g) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs + 16 * g));
      const __m256i sum = _mm256_add_epi32(_mm256_cvtepi8_epi32(bytes),
                                           _mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8)));
      blk.bsums[g] = static_cast<std::int16_t>(HorizontalSumI32(sum));
    }
    blk.d = 1.0f / iscale;
  }
}

// ---- ISA hooks of x86_quant_kernels.inc (no VNNI: vpmaddubsw + vpmaddwd) ----
inline __m256i DotBytePairs(__m256i acc, __m256i u0, __m256i y0, __m256i u1, __m256i y1) {
  // Quants below 32: each vpmaddubsw pair is at most 2 * 31 * 127, two of them fit in int16.
  const __m256i pairs =
      _mm256_add_epi16(_mm256_maddubs_epi16(u0, y0), _mm256_maddubs_epi16(u1, y1));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}
inline __m256i DotWords(__m256i acc, __m256i a, __m256i b) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
}
inline __m256i SelectBytes(__m256i bytes, __m256i bits, __m256i value) {
  const __m256i hit = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bits), bits);
  return _mm256_and_si256(hit, value);
}

#include "engine/internal/x86_quant_kernels.inc"

void DotF32(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* x = static_cast<const float*>(act);
  for (int r = 0; r < nr; ++r) {
    const float* row = reinterpret_cast<const float*>(static_cast<const char*>(w) + r * rb);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(x + i), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
    }
    float sum = HorizontalSum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) sum += row[i] * x[i];
    out[r] = sum;
  }
}

inline __m256 LoadF16(const std::uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 LoadBF16(const std::uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

template <bool kBf16>
void DotHalf(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* x = static_cast<const float*>(act);
  for (int r = 0; r < nr; ++r) {
    const auto* row = reinterpret_cast<const std::uint16_t*>(static_cast<const char*>(w) + r * rb);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m256 w0 = kBf16 ? LoadBF16(row + i) : LoadF16(row + i);
      const __m256 w1 = kBf16 ? LoadBF16(row + i + 8) : LoadF16(row + i + 8);
      acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), acc0);
      acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), acc1);
    }
    float sum = HorizontalSum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) {
      const float wv = kBf16 ? Bf16ToFp32(row[i]) : HalfToFloat(row[i]);
      sum += wv * x[i];
    }
    out[r] = sum;
  }
}

// ---- attention tiles ----

void KvToFloatF32(std::int64_t n, const void* row, float* out) {
  std::memcpy(out, row, static_cast<std::size_t>(n) * sizeof(float));
}

void KvToFloatF16(std::int64_t n, const void* row, float* out) {
  const auto* r = static_cast<const std::uint16_t*>(row);
  std::int64_t e = 0;
  for (; e + 8 <= n; e += 8) {
    _mm256_storeu_ps(out + e,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + e))));
  }
  for (; e < n; ++e) out[e] = _cvtsh_ss(r[e]);
}

void KvToFloatQ8_0(std::int64_t n, const void* row, float* out) {
  const auto* blocks = static_cast<const BlockQ8_0*>(row);
  for (std::int64_t b = 0; b < n / kQK; ++b) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(blocks[b].d));
    for (int j = 0; j < kQK; j += 8) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blocks[b].qs + j));
      _mm256_storeu_ps(out + b * kQK + j,
                       _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8))));
    }
  }
}

constexpr int kAttnAccumulators = 12;  // of the 16 vector registers
#include "engine/internal/x86_attention_kernels.inc"

}  // namespace

namespace internal {
bool Avx2Compiled() { return true; }
void FillAvx2Kernels(Kernels* k) {
  k->name = "avx2";
  k->kv_to_float[static_cast<int>(TensorType::kF32)] = KvToFloatF32;
  k->kv_to_float[static_cast<int>(TensorType::kF16)] = KvToFloatF16;
  k->kv_to_float[static_cast<int>(TensorType::kQ8_0)] = KvToFloatQ8_0;
  k->attn_scores = AttnScoresX86<Vec8, Vec8>;
  k->attn_softmax = AttnSoftmaxX86<Vec8, Vec8>;
  k->attn_accumulate = AttnAccumulateX86<Vec8, Vec8>;
  k->attn_accumulate_rows = AttnAccumulateRowsX86<Vec8, float>;
  k->attn_accumulate_rows_f16 = AttnAccumulateRowsX86<Vec8, std::uint16_t>;
  k->quantize[static_cast<int>(ActFormat::kQ8x32)] = QuantizeQ8x32;
  k->quantize[static_cast<int>(ActFormat::kQ8K)] = QuantizeQ8K;
  k->dot[static_cast<int>(TensorType::kF32)] = DotF32;
  k->dot[static_cast<int>(TensorType::kF16)] = DotHalf<false>;
  k->dot[static_cast<int>(TensorType::kBF16)] = DotHalf<true>;
  k->dot[static_cast<int>(TensorType::kQ8_0)] = DotQ8_0;
  k->dot[static_cast<int>(TensorType::kQ4_0)] = DotRowsGroup8<Q4_0Group>;
  k->dot[static_cast<int>(TensorType::kQ5_0)] = DotRowsGroup8<Q5_0Group>;
  k->dot[static_cast<int>(TensorType::kQ4_1)] = DotRowsGroup8<Q4_1Group>;
  k->dot[static_cast<int>(TensorType::kQ5_1)] = DotRowsGroup8<Q5_1Group>;
  k->tile[static_cast<int>(TensorType::kQ4_0)] = TileRowsGroup8<Q4_0Group>;
  k->tile[static_cast<int>(TensorType::kQ5_0)] = TileRowsGroup8<Q5_0Group>;
  k->tile[static_cast<int>(TensorType::kQ4_1)] = TileRowsGroup8<Q4_1Group>;
  k->tile[static_cast<int>(TensorType::kQ5_1)] = TileRowsGroup8<Q5_1Group>;
  k->dot[static_cast<int>(TensorType::kQ2_K)] = DotRowsK<Q2KTraits>;
  k->dot[static_cast<int>(TensorType::kQ3_K)] = DotRowsK<Q3KTraits>;
  k->dot[static_cast<int>(TensorType::kQ4_K)] = DotRowsK<Q4KTraits>;
  k->dot[static_cast<int>(TensorType::kQ5_K)] = DotRowsK<Q5KTraits>;
  k->dot[static_cast<int>(TensorType::kQ6_K)] = DotRowsK<Q6KTraits>;
  k->tile[static_cast<int>(TensorType::kQ2_K)] = TileRowsK<Q2KTraits>;
  k->tile[static_cast<int>(TensorType::kQ3_K)] = TileRowsK<Q3KTraits>;
  k->tile[static_cast<int>(TensorType::kQ4_K)] = TileRowsK<Q4KTraits>;
  k->tile[static_cast<int>(TensorType::kQ5_K)] = TileRowsK<Q5KTraits>;
  k->tile[static_cast<int>(TensorType::kQ6_K)] = TileRowsK<Q6KTraits>;
}
}  // namespace internal
}  // namespace airlock::engine

#else  // not compiled for AVX2

namespace airlock::engine::internal {
bool Avx2Compiled() { return false; }
void FillAvx2Kernels(Kernels*) {}
}  // namespace airlock::engine::internal

#endif
