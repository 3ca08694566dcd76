// AVX-512 VNNI kernels (256-bit vectors with vpdpbusd/vpdpwssd, AVX512VL): the shared quantized
// kernels of x86_quant_kernels.inc with VNNI hooks, Q8_0 in eight-row groups, and "tile" kernels
// for batches (prompt processing) that unpack each weight block once for several tokens. Compiled
// with the matching -m flags (see CMakeLists.txt) and only called after a run-time CPU check;
// everything here has internal linkage.
#include "engine/internal/kernels.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include <immintrin.h>

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

inline __m256i UnpackNibbles(const std::uint8_t* p) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(packed, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
  return _mm256_set_m128i(hi, lo);
}

// Byte i = 0xff when bit i of `bits` is set (AVX-512BW mask to vector).
inline __m256i ExpandBits(std::uint32_t bits) { return _mm256_movm_epi8(bits); }

// Weight block -> 32 unsigned bytes u with q = u - kOffset.
struct UnpackQ8_0 {
  static constexpr int kOffset = 128;
  static __m256i Get(const BlockQ8_0& b) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};
struct UnpackQ4_0 {
  static constexpr int kOffset = 8;
  static __m256i Get(const BlockQ4_0& b) { return UnpackNibbles(b.qs); }
};
struct UnpackQ5_0 {
  static constexpr int kOffset = 16;
  static __m256i Get(const BlockQ5_0& b) {
    std::uint32_t qh;
    __builtin_memcpy(&qh, b.qh, 4);
    const __m256i high = _mm256_and_si256(ExpandBits(qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(UnpackNibbles(b.qs), high);
  }
};

// Exact integer dot of (u - offset) with the activation block: vpdpbusd, then the offset times
// the activation sum taken off lane 0.
template <int kOffset>
inline __m256i BlockDot(__m256i u, const ActQ8x32& a) {
  const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs));
  const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y);
  return _mm256_sub_epi32(dot, _mm256_zextsi128_si256(_mm_cvtsi32_si128(kOffset * a.sum)));
}

template <typename Block, typename Unpack>
void DotRows32(std::int64_t n, const void* w, std::size_t row_bytes, int nrows, const void* act,
               float* out) {
  const auto* a = static_cast<const ActQ8x32*>(act);
  const std::int64_t nb = n / kQK;
  for (int r = 0; r < nrows; ++r) {
    const auto* row = reinterpret_cast<const Block*>(static_cast<const char*>(w) + r * row_bytes);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    std::int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
      const __m256i d0 = BlockDot<Unpack::kOffset>(Unpack::Get(row[b]), a[b]);
      const __m256i d1 = BlockDot<Unpack::kOffset>(Unpack::Get(row[b + 1]), a[b + 1]);
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(HalfToFloat(row[b].d) * a[b].d), _mm256_cvtepi32_ps(d0),
                             acc0);
      acc1 = _mm256_fmadd_ps(_mm256_set1_ps(HalfToFloat(row[b + 1].d) * a[b + 1].d),
                             _mm256_cvtepi32_ps(d1), acc1);
    }
    for (; b < nb; ++b) {
      const __m256i d0 = BlockDot<Unpack::kOffset>(Unpack::Get(row[b]), a[b]);
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(HalfToFloat(row[b].d) * a[b].d), _mm256_cvtepi32_ps(d0),
                             acc0);
    }
    out[r] = HorizontalSum(_mm256_add_ps(acc0, acc1));
  }
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
    g->d = LoadScales8(rows, b);
  }
};

// F16 weights x F32 activations for batches: kRows rows x 4 tokens per step, so each converted
// weight slice feeds 4 FMAs and each activation load feeds kRows.
template <int kRows>
void TileStepF16(std::int64_t n, const std::uint16_t* const* rows, const float* const* x, int nt,
                 float* out, std::size_t ldo) {
  constexpr int kTok = 4;
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
    int r = 0;
    for (; r + 4 <= nr; r += 4) {
      const std::uint16_t* rows[4] = {row_ptr(r), row_ptr(r + 1), row_ptr(r + 2), row_ptr(r + 3)};
      TileStepF16<4>(n, rows, x, nt, out + t0 * ldo + r, ldo);
    }
    for (; r < nr; ++r) {
      const std::uint16_t* rows[1] = {row_ptr(r)};
      TileStepF16<1>(n, rows, x, nt, out + t0 * ldo + r, ldo);
    }
  }
}

}  // namespace

namespace internal {
bool Avx512Compiled() { return true; }
void FillAvx512Kernels(Kernels* k) {
  k->name = "avx512vnni";
  k->dot[static_cast<int>(TensorType::kQ8_0)] =
      DotRowsGroup8<Q8_0Group, DotRows32<BlockQ8_0, UnpackQ8_0>>;
  k->dot[static_cast<int>(TensorType::kQ4_0)] =
      DotRowsGroup8<Q4_0Group, DotRows32<BlockQ4_0, UnpackQ4_0>>;
  k->dot[static_cast<int>(TensorType::kQ5_0)] =
      DotRowsGroup8<Q5_0Group, DotRows32<BlockQ5_0, UnpackQ5_0>>;
  k->dot[static_cast<int>(TensorType::kQ2_K)] = DotRowsK<Q2KTraits>;
  k->dot[static_cast<int>(TensorType::kQ3_K)] = DotRowsK<Q3KTraits>;
  k->dot[static_cast<int>(TensorType::kQ4_K)] = DotRowsK<Q4KTraits>;
  k->dot[static_cast<int>(TensorType::kQ5_K)] = DotRowsK<Q5KTraits>;
  k->dot[static_cast<int>(TensorType::kQ6_K)] = DotRowsK<Q6KTraits>;
  k->tile[static_cast<int>(TensorType::kQ8_0)] =
      TileRowsGroup8<Q8_0Group, DotRows32<BlockQ8_0, UnpackQ8_0>>;
  k->tile[static_cast<int>(TensorType::kQ4_0)] =
      TileRowsGroup8<Q4_0Group, DotRows32<BlockQ4_0, UnpackQ4_0>>;
  k->tile[static_cast<int>(TensorType::kQ5_0)] =
      TileRowsGroup8<Q5_0Group, DotRows32<BlockQ5_0, UnpackQ5_0>>;
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
