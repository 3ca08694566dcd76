// AVX2/FMA/F16C kernels. This file is compiled with -mavx2 -mfma -mf16c (see CMakeLists.txt) and
// only called after a run-time CPU check, so it must not define or instantiate inline functions
// shared with other translation units: everything here has internal linkage.
#include "engine/internal/kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
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

inline int HorizontalSumI32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Sum of products of 32 signed bytes, as 8 int32 lanes. maddubs needs an unsigned left operand,
// so the sign of x is moved onto y.
inline __m256i DotI8(__m256i x, __m256i y) {
  const __m256i ax = _mm256_sign_epi8(x, x);
  const __m256i sy = _mm256_sign_epi8(y, x);
  const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// 16 bytes of packed nibbles -> 32 bytes: low nibbles first, then high nibbles (ggml order).
inline __m256i UnpackNibbles(const std::uint8_t* p) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(packed, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
  return _mm256_set_m128i(hi, lo);
}

// Byte i = 0xff when bit i of `bits` is set.
inline __m256i ExpandBits(std::uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL, 0x0101010101010101LL, 0));
  const __m256i select = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
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

void DotQ4_0(std::int64_t n, const void* w, std::size_t rb, int nr, const void* a, float* o) {
  DotRows32<BlockQ4_0>(n, w, rb, nr, a, o, [](const BlockQ4_0& b) {
    return _mm256_sub_epi8(UnpackNibbles(b.qs), _mm256_set1_epi8(8));
  });
}

void DotQ5_0(std::int64_t n, const void* w, std::size_t rb, int nr, const void* a, float* o) {
  DotRows32<BlockQ5_0>(n, w, rb, nr, a, o, [](const BlockQ5_0& b) {
    std::uint32_t qh =
        static_cast<std::uint32_t>(b.qh[0]) | static_cast<std::uint32_t>(b.qh[1]) << 8 |
        static_cast<std::uint32_t>(b.qh[2]) << 16 | static_cast<std::uint32_t>(b.qh[3]) << 24;
    const __m256i high = _mm256_and_si256(ExpandBits(qh), _mm256_set1_epi8(0x10));
    return _mm256_sub_epi8(_mm256_or_si256(UnpackNibbles(b.qs), high), _mm256_set1_epi8(16));
  });
}

void DotQ4_K(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* a = static_cast<const ActQ8K*>(act);
  const std::int64_t nb = n / kQKK;
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  for (int r = 0; r < nr; ++r) {
    const auto* row = reinterpret_cast<const BlockQ4_K*>(static_cast<const char*>(w) + r * rb);
    __m256 acc = _mm256_setzero_ps();
    float min_acc = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      const BlockQ4_K& x = row[b];
      const ActQ8K& y = a[b];
      // Unpack the 8 six-bit scales and mins.
      std::uint8_t sc[8], mn[8];
      for (int j = 0; j < 4; ++j) {
        sc[j] = x.scales[j] & 63;
        mn[j] = x.scales[j + 4] & 63;
        sc[j + 4] = static_cast<std::uint8_t>((x.scales[j + 8] & 0xf) | ((x.scales[j] >> 6) << 4));
        mn[j + 4] =
            static_cast<std::uint8_t>((x.scales[j + 8] >> 4) | ((x.scales[j + 4] >> 6) << 4));
      }
      int min_sum = 0;
      for (int j = 0; j < 8; ++j) min_sum += mn[j] * (y.bsums[2 * j] + y.bsums[2 * j + 1]);
      min_acc += HalfToFloat(x.dmin) * y.d * static_cast<float>(min_sum);
      __m256i sumi = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
        const __m256i lo = _mm256_and_si256(q, low_mask);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low_mask);
        const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.qs + 64 * c));
        const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.qs + 64 * c + 32));
        const __m256i p0 =
            _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sc[2 * c]));
        const __m256i p1 =
            _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sc[2 * c + 1]));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
      }
      acc = _mm256_fmadd_ps(_mm256_set1_ps(HalfToFloat(x.d) * y.d), _mm256_cvtepi32_ps(sumi), acc);
    }
    out[r] = HorizontalSum(acc) - min_acc;
  }
}

// Two groups of 16 int16 scales: lanes 0-7 get s0, lanes 8-15 get s1 (maddubs output order).
inline __m256i PairScale(int s0, int s1) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(s1)),
                          _mm_set1_epi16(static_cast<short>(s0)));
}

void DotQ6_K(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* a = static_cast<const ActQ8K*>(act);
  const std::int64_t nb = n / kQKK;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int r = 0; r < nr; ++r) {
    const auto* row = reinterpret_cast<const BlockQ6_K*>(static_cast<const char*>(w) + r * rb);
    float acc = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      const BlockQ6_K& x = row[b];
      const ActQ8K& y = a[b];
      int offset_sum = 0;  // quants are stored +32: subtract 32 * scale * sum(y) per group
      for (int g = 0; g < 16; ++g) offset_sum += x.scales[g] * y.bsums[g];
      __m256i sumi = _mm256_setzero_si256();
      for (int half = 0; half < 2; ++half) {
        const std::uint8_t* ql = x.ql + 64 * half;
        const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
        const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * half));
        const __m256i q0 =
            _mm256_or_si256(_mm256_and_si256(l0, m4),
                            _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x03)), 4));
        const __m256i q1 =
            _mm256_or_si256(_mm256_and_si256(l1, m4),
                            _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x0c)), 2));
        const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                           _mm256_and_si256(h, _mm256_set1_epi8(0x30)));
        const __m256i q3 = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
            _mm256_srli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(static_cast<char>(0xc0))), 2));
        const std::int8_t* ys = y.qs + 128 * half;
        const std::int8_t* sc = x.scales + 8 * half;
        const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ys));
        const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ys + 32));
        const __m256i y2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ys + 64));
        const __m256i y3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ys + 96));
        sumi = _mm256_add_epi32(
            sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q0, y0), PairScale(sc[0], sc[1])));
        sumi = _mm256_add_epi32(
            sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q1, y1), PairScale(sc[2], sc[3])));
        sumi = _mm256_add_epi32(
            sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q2, y2), PairScale(sc[4], sc[5])));
        sumi = _mm256_add_epi32(
            sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q3, y3), PairScale(sc[6], sc[7])));
      }
      const float total = static_cast<float>(HorizontalSumI32(sumi) - 32 * offset_sum);
      acc += HalfToFloat(x.d) * y.d * total;
    }
    out[r] = acc;
  }
}

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

}  // namespace

namespace internal {
bool Avx2Compiled() { return true; }
void FillAvx2Kernels(Kernels* k) {
  k->name = "avx2";
  k->dot[static_cast<int>(TensorType::kF32)] = DotF32;
  k->dot[static_cast<int>(TensorType::kF16)] = DotHalf<false>;
  k->dot[static_cast<int>(TensorType::kBF16)] = DotHalf<true>;
  k->dot[static_cast<int>(TensorType::kQ8_0)] = DotQ8_0;
  k->dot[static_cast<int>(TensorType::kQ4_0)] = DotQ4_0;
  k->dot[static_cast<int>(TensorType::kQ5_0)] = DotQ5_0;
  k->dot[static_cast<int>(TensorType::kQ4_K)] = DotQ4_K;
  k->dot[static_cast<int>(TensorType::kQ6_K)] = DotQ6_K;
}
}  // namespace internal
}  // namespace airlock::engine

#else  // not compiled for AVX2

namespace airlock::engine::internal {
bool Avx2Compiled() { return false; }
void FillAvx2Kernels(Kernels*) {}
}  // namespace airlock::engine::internal

#endif
