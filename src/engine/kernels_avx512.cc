// AVX-512 VNNI kernels (256-bit vectors with vpdpbusd/vpdpwssd, AVX512VL): the shared quantized
// kernels of x86_quant_kernels.inc with VNNI hooks, Q8_0 in eight-row groups, and "tile" kernels
// for batches (prompt processing) that unpack each weight block once for several tokens. Compiled
// with the matching -m flags (see CMakeLists.txt) and only called after a run-time CPU check;
// everything here has internal linkage.
#include "engine/kernels.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include <immintrin.h>

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

// ---- ISA hooks of x86_quant_kernels.inc ----
inline __m256i DotBytePairs(__m256i acc, __m256i u0, __m256i y0, __m256i u1, __m256i y1) {
  return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(acc, u0, y0), u1, y1);
}
inline __m256i DotWords(__m256i acc, __m256i a, __m256i b) {
  return _mm256_dpwssd_epi32(acc, a, b);
}
inline __m256i SelectBytes(__m256i bytes, __m256i bits, __m256i value) {
  return _mm256_maskz_mov_epi8(_mm256_test_epi8_mask(bytes, bits), value);
}

#include "engine/internal/x86_quant_kernels.inc"

// Q8_0 in eight-row groups needs VNNI: its quants, stored +128 as unsigned bytes, would
// overflow vpmaddubsw's int16 pairs.
struct Q8_0Group {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 128;
  static constexpr bool kHasMin = false;
  static void Unpack(const Block* const* rows, std::int64_t b, Group8* g) {
    __m256i in[4], w[4];
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));  // int8 -> uint8 (+128)
    for (int half = 0; half < 2; ++half) {
      for (int j = 0; j < 4; ++j) {
        const auto* lo = reinterpret_cast<const std::uint8_t*>(rows[j][b].qs) + 16 * half;
        const auto* hi = reinterpret_cast<const std::uint8_t*>(rows[j + 4][b].qs) + 16 * half;
        in[j] = LoadPair(lo, hi);
      }
      Transpose4x4(in, w);
      for (int k = 0; k < 4; ++k) g->u[4 * half + k] = _mm256_xor_si256(w[k], flip);
    }
    g->d = LoadHalves8(rows, b, &Block::d);
  }
};

// F16 weights x F32 activations for batches: kRows rows x 4 tokens per step, so each converted
// weight slice feeds 4 FMAs and each activation load feeds kRows.
template <int kRows, int kTok>
void TileStepF16(std::int64_t n, const std::uint16_t* const* rows, const float* const* x, int nt,
                 float* out, std::size_t ldo) {
  __m256 acc[kRows][kTok];
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTok; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 wv[kRows];
    for (int r = 0; r < kRows; ++r) {
      wv[r] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + i)));
    }
    for (int t = 0; t < kTok; ++t) {
      const __m256 xv = _mm256_loadu_ps(x[t] + i);
      for (int r = 0; r < kRows; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < nt; ++t) {
      float s = HorizontalSum(acc[r][t]);
      for (std::int64_t k = i; k < n; ++k) s += HalfToFloat(rows[r][k]) * x[t][k];
      out[t * ldo + r] = s;
    }
  }
}

void TileF16(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
             std::size_t act_stride, int ntok, float* out, std::size_t ldo) {
  constexpr int kTok = 4;
  auto row_ptr = [&](int r) {
    return reinterpret_cast<const std::uint16_t*>(static_cast<const char*>(w) + r * rb);
  };
  for (int t0 = 0; t0 < ntok; t0 += kTok) {
    const int nt = ntok - t0 < kTok ? ntok - t0 : kTok;
    const float* x[kTok];
    for (int t = 0; t < kTok; ++t) {
      x[t] = reinterpret_cast<const float*>(static_cast<const char*>(act) +
                                            (t0 + (t < nt ? t : 0)) * act_stride);
    }
    // A step for exactly the nt tokens present: a batched decode step of 2 sessions must not
    // pay for 4 (the quantized tiles loop over nt the same way).
    auto step = [&]<int kRows>(const std::uint16_t* const* rows, float* o) {
      switch (nt) {
        case 1:
          TileStepF16<kRows, 1>(n, rows, x, nt, o, ldo);
          break;
        case 2:
          TileStepF16<kRows, 2>(n, rows, x, nt, o, ldo);
          break;
        case 3:
          TileStepF16<kRows, 3>(n, rows, x, nt, o, ldo);
          break;
        default:
          TileStepF16<kRows, 4>(n, rows, x, nt, o, ldo);
          break;
      }
    };
    int r = 0;
    for (; r + 4 <= nr; r += 4) {
      const std::uint16_t* rows[4] = {row_ptr(r), row_ptr(r + 1), row_ptr(r + 2), row_ptr(r + 3)};
      step.template operator()<4>(rows, out + t0 * ldo + r);
    }
    for (; r < nr; ++r) {
      const std::uint16_t* rows[1] = {row_ptr(r)};
      step.template operator()<1>(rows, out + t0 * ldo + r);
    }
  }
}

// ---- attention tiles: 16-lane vectors, an 8-lane vector for a short tail ----

// 16 float lanes; every operation, Exp included, is Vec8's lane by lane (bit-identical lanes).
struct Vec16 {
  using F = __m512;
  using I = __m512i;
  using M = __mmask16;
  static constexpr int kLanes = 16;
  // Full masks: GCC 12's unmasked forms of these intrinsics warn about their undefined source.
  static constexpr __mmask16 kAll = 0xffff;
  static F Load(const float* p) { return _mm512_loadu_ps(p); }
  static F LoadHalf(const std::uint16_t* p) {
    return _mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static void Store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F Set1(float x) { return _mm512_set1_ps(x); }
  static F Zero() { return _mm512_setzero_ps(); }
  static F Fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F Mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F Add(F a, F b) { return _mm512_add_ps(a, b); }
  static F Sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F Max(F a, F b) { return _mm512_maskz_max_ps(kAll, a, b); }
  static I LoadInt(const int* p) { return _mm512_loadu_si512(p); }
  static M Below(I lim, int j) { return _mm512_cmpgt_epi32_mask(lim, _mm512_set1_epi32(j)); }
  static M Equal(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static F Select(M m, F a, F b) { return _mm512_mask_blend_ps(m, b, a); }
  static F Exp(F x) {
    x = _mm512_maskz_min_ps(kAll, Max(x, Set1(-87.3f)), Set1(88.3f));
    const F n = _mm512_maskz_roundscale_ps(kAll, _mm512_mul_ps(x, Set1(1.44269504088896341f)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    F r = _mm512_fnmadd_ps(n, Set1(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, Set1(-2.12194440e-4f), r);
    F y = Set1(1.9875691500e-4f);
    y = Fma(y, r, Set1(1.3981999507e-3f));
    y = Fma(y, r, Set1(8.3334519073e-3f));
    y = Fma(y, r, Set1(4.1665795894e-2f));
    y = Fma(y, r, Set1(1.6666665459e-1f));
    y = Fma(y, r, Set1(5.0000001201e-1f));
    y = Fma(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, Set1(1.0f)));
    const __m512i bits = _mm512_maskz_slli_epi32(
        kAll, _mm512_add_epi32(_mm512_maskz_cvtps_epi32(kAll, n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
  }
};

constexpr int kAttnAccumulators = 24;  // of the 32 vector registers
#include "engine/internal/x86_attention_kernels.inc"

void KvToFloatF16x16(std::int64_t n, const void* row, float* out) {
  const auto* r = static_cast<const std::uint16_t*>(row);
  std::int64_t e = 0;
  for (; e + 16 <= n; e += 16) _mm512_storeu_ps(out + e, Vec16::LoadHalf(r + e));
  for (; e < n; ++e) out[e] = _cvtsh_ss(r[e]);
}

}  // namespace

namespace internal {
bool Avx512Compiled() { return true; }
void FillAvx512Kernels(Kernels* k) {
  k->name = "avx512vnni";
  k->attn_scores = AttnScoresX86<Vec16, Vec8>;
  k->attn_softmax = AttnSoftmaxX86<Vec16, Vec8>;
  k->attn_accumulate = AttnAccumulateX86<Vec16, Vec8>;
  k->kv_to_float[static_cast<int>(TensorType::kF16)] = KvToFloatF16x16;
  k->attn_accumulate_rows = AttnAccumulateRowsX86<Vec16, float>;
  k->attn_accumulate_rows_f16 = AttnAccumulateRowsX86<Vec16, std::uint16_t>;
  k->dot[static_cast<int>(TensorType::kQ8_0)] = DotRowsGroup8<Q8_0Group>;
  k->dot[static_cast<int>(TensorType::kQ4_0)] = DotRowsGroup8<Q4_0Group>;
  k->dot[static_cast<int>(TensorType::kQ5_0)] = DotRowsGroup8<Q5_0Group>;
  k->dot[static_cast<int>(TensorType::kQ4_1)] = DotRowsGroup8<Q4_1Group>;
  k->dot[static_cast<int>(TensorType::kQ5_1)] = DotRowsGroup8<Q5_1Group>;
  k->dot[static_cast<int>(TensorType::kQ2_K)] = DotRowsK<Q2KTraits>;
  k->dot[static_cast<int>(TensorType::kQ3_K)] = DotRowsK<Q3KTraits>;
  k->dot[static_cast<int>(TensorType::kQ4_K)] = DotRowsK<Q4KTraits>;
  k->dot[static_cast<int>(TensorType::kQ5_K)] = DotRowsK<Q5KTraits>;
  k->dot[static_cast<int>(TensorType::kQ6_K)] = DotRowsK<Q6KTraits>;
  k->tile[static_cast<int>(TensorType::kQ8_0)] = TileRowsGroup8<Q8_0Group>;
  k->tile[static_cast<int>(TensorType::kQ4_0)] = TileRowsGroup8<Q4_0Group>;
  k->tile[static_cast<int>(TensorType::kQ5_0)] = TileRowsGroup8<Q5_0Group>;
  k->tile[static_cast<int>(TensorType::kQ4_1)] = TileRowsGroup8<Q4_1Group>;
  k->tile[static_cast<int>(TensorType::kQ5_1)] = TileRowsGroup8<Q5_1Group>;
  k->tile[static_cast<int>(TensorType::kQ2_K)] = TileRowsK<Q2KTraits>;
  k->tile[static_cast<int>(TensorType::kQ3_K)] = TileRowsK<Q3KTraits>;
  k->tile[static_cast<int>(TensorType::kQ4_K)] = TileRowsK<Q4KTraits>;
  k->tile[static_cast<int>(TensorType::kQ5_K)] = TileRowsK<Q5KTraits>;
  k->tile[static_cast<int>(TensorType::kQ6_K)] = TileRowsK<Q6KTraits>;
  k->tile[static_cast<int>(TensorType::kF16)] = TileF16;
}
}  // namespace internal
}  // namespace airlock::engine

#else

namespace airlock::engine::internal {
bool Avx512Compiled() { return false; }
void FillAvx512Kernels(Kernels*) {}
}  // namespace airlock::engine::internal

#endif
