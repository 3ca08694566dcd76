// AVX-512 VNNI kernels (256-bit vectors with vpdpbusd, AVX512VL) for the hottest types, plus
// "tile" kernels for batches (prompt processing): each weight block is unpacked once and dotted
// with up to four activation rows. Compiled with the matching -m flags (see CMakeLists.txt) and
// only called after a run-time CPU check; everything here has internal linkage.
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

// kRows weight rows x kTok tokens per step: the activation block and its offset correction are
// loaded once for both rows, the weight block unpacked once for all tokens.
template <typename Block, typename Unpack, int kRows>
void TileStep32(std::int64_t nb, const Block* const* rows, const ActQ8x32* const* a, int nt,
                float* out, std::size_t ldo) {
  constexpr int kTok = 8;
  __m256 acc[kRows][kTok];
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTok; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  for (std::int64_t b = 0; b < nb; ++b) {
    __m256i u[kRows];
    __m256 dw[kRows];
    for (int r = 0; r < kRows; ++r) {
      u[r] = Unpack::Get(rows[r][b]);
      dw[r] = _mm256_set1_ps(HalfToFloat(rows[r][b].d));
    }
    for (int t = 0; t < kTok; ++t) {
      const ActQ8x32& y = a[t][b];
      const __m256i yv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.qs));
      const __m256i corr = _mm256_zextsi128_si256(_mm_cvtsi32_si128(Unpack::kOffset * y.sum));
      const __m256 da = _mm256_set1_ps(y.d);
      for (int r = 0; r < kRows; ++r) {
        const __m256i dot =
            _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u[r], yv), corr);
        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], da), _mm256_cvtepi32_ps(dot), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < nt; ++t) out[t * ldo + r] = HorizontalSum(acc[r][t]);
  }
}

template <typename Block, typename Unpack>
void TileRows32(std::int64_t n, const void* w, std::size_t row_bytes, int nrows, const void* act,
                std::size_t act_stride, int ntok, float* out, std::size_t ldo) {
  constexpr int kTok = 8;
  const std::int64_t nb = n / kQK;
  for (int t0 = 0; t0 < ntok; t0 += kTok) {
    const int nt = ntok - t0 < kTok ? ntok - t0 : kTok;
    const ActQ8x32* a[kTok];
    for (int t = 0; t < kTok; ++t) {
      a[t] = reinterpret_cast<const ActQ8x32*>(static_cast<const char*>(act) +
                                               (t0 + (t < nt ? t : 0)) * act_stride);
    }
    int r = 0;
    for (; r + 2 <= nrows; r += 2) {
      const Block* rows[2] = {
          reinterpret_cast<const Block*>(static_cast<const char*>(w) + r * row_bytes),
          reinterpret_cast<const Block*>(static_cast<const char*>(w) + (r + 1) * row_bytes)};
      TileStep32<Block, Unpack, 2>(nb, rows, a, nt, out + t0 * ldo + r, ldo);
    }
    for (; r < nrows; ++r) {
      const Block* rows[1] = {
          reinterpret_cast<const Block*>(static_cast<const char*>(w) + r * row_bytes)};
      TileStep32<Block, Unpack, 1>(nb, rows, a, nt, out + t0 * ldo + r, ldo);
    }
  }
}

// ---- K-quants: one super-block unpacked to 8 vectors of 32 unsigned quants + int16 scales ----

struct UnpackedQ4K {
  __m256i q[8];  // 32 quants each (0..15), sub-block s = vector s
  std::int16_t sc[8], mn[8];
  float d, dmin;
};

inline void UnpackQ4K(const BlockQ4_K& x, UnpackedQ4K* u) {
  for (int j = 0; j < 4; ++j) {
    u->sc[j] = x.scales[j] & 63;
    u->mn[j] = x.scales[j + 4] & 63;
    u->sc[j + 4] = static_cast<std::int16_t>((x.scales[j + 8] & 0xf) | ((x.scales[j] >> 6) << 4));
    u->mn[j + 4] =
        static_cast<std::int16_t>((x.scales[j + 8] >> 4) | ((x.scales[j + 4] >> 6) << 4));
  }
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int c = 0; c < 4; ++c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
    u->q[2 * c] = _mm256_and_si256(q, m4);
    u->q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
  }
  u->d = HalfToFloat(x.d);
  u->dmin = HalfToFloat(x.dmin);
}

// Dot of an unpacked Q4_K super-block with an activation block (scaled float result).
inline float Q4KBlockDot(const UnpackedQ4K& u, const ActQ8K& y) {
  __m256i sumi = _mm256_setzero_si256();
  int min_sum = 0;
  for (int s = 0; s < 8; ++s) {
    const __m256i yv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.qs + 32 * s));
    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u.q[s], yv);
    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, _mm256_set1_epi32(u.sc[s])));
    min_sum += u.mn[s] * (y.bsums[2 * s] + y.bsums[2 * s + 1]);
  }
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sumi), _mm256_extracti128_si256(sumi, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
  return y.d *
         (u.d * static_cast<float>(_mm_cvtsi128_si32(s4)) - u.dmin * static_cast<float>(min_sum));
}

void TileQ4_K(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
              std::size_t act_stride, int ntok, float* out, std::size_t ldo) {
  const std::int64_t nb = n / kQKK;
  for (int r = 0; r < nr; ++r) {
    const auto* row = reinterpret_cast<const BlockQ4_K*>(static_cast<const char*>(w) + r * rb);
    for (int t = 0; t < ntok; ++t) out[t * ldo + r] = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      UnpackedQ4K u;
      UnpackQ4K(row[b], &u);
      for (int t = 0; t < ntok; ++t) {
        const auto* a =
            reinterpret_cast<const ActQ8K*>(static_cast<const char*>(act) + t * act_stride);
        out[t * ldo + r] += Q4KBlockDot(u, a[b]);
      }
    }
  }
}

struct UnpackedQ6K {
  __m256i q[8];      // unsigned 0..63 (stored +32); vector v covers groups 2v, 2v+1
  __m256i scale[8];  // per vector: 8 int32 lanes; lanes 0-3 group 2v... (see Q6KBlockDot)
  std::int8_t sc[16];
  float d;
};

inline void UnpackQ6K(const BlockQ6_K& x, UnpackedQ6K* u) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int half = 0; half < 2; ++half) {
    const std::uint8_t* ql = x.ql + 64 * half;
    const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
    const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * half));
    u->q[4 * half + 0] =
        _mm256_or_si256(_mm256_and_si256(l0, m4),
                        _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x03)), 4));
    u->q[4 * half + 1] =
        _mm256_or_si256(_mm256_and_si256(l1, m4),
                        _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x0c)), 2));
    u->q[4 * half + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                         _mm256_and_si256(h, _mm256_set1_epi8(0x30)));
    u->q[4 * half + 3] = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
        _mm256_srli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(static_cast<char>(0xc0))), 2));
  }
  for (int v = 0; v < 8; ++v) {
    // dpbusd lane k sums bytes 4k..4k+3: lanes 0-3 are group 2v, lanes 4-7 group 2v+1.
    u->scale[v] =
        _mm256_set_m128i(_mm_set1_epi32(x.scales[2 * v + 1]), _mm_set1_epi32(x.scales[2 * v]));
  }
  for (int g = 0; g < 16; ++g) u->sc[g] = x.scales[g];
  u->d = HalfToFloat(x.d);
}

inline float Q6KBlockDot(const UnpackedQ6K& u, const ActQ8K& y) {
  __m256i sumi = _mm256_setzero_si256();
  int offset_sum = 0;
  for (int g = 0; g < 16; ++g) offset_sum += u.sc[g] * y.bsums[g];
  for (int v = 0; v < 8; ++v) {
    // Vector v of the unpacked block holds elements 32v..32v+31 in block order.
    const int half = v / 4, part = v % 4;
    const __m256i yv =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.qs + 128 * half + 32 * part));
    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u.q[v], yv);
    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, u.scale[v]));
  }
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sumi), _mm256_extracti128_si256(sumi, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
  return u.d * y.d * static_cast<float>(_mm_cvtsi128_si32(s4) - 32 * offset_sum);
}

void DotQ6_K(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* a = static_cast<const ActQ8K*>(act);
  const std::int64_t nb = n / kQKK;
  for (int r = 0; r < nr; ++r) {
    const auto* row = reinterpret_cast<const BlockQ6_K*>(static_cast<const char*>(w) + r * rb);
    float sum = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      UnpackedQ6K u;
      UnpackQ6K(row[b], &u);
      sum += Q6KBlockDot(u, a[b]);
    }
    out[r] = sum;
  }
}

void TileQ6_K(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
              std::size_t act_stride, int ntok, float* out, std::size_t ldo) {
  const std::int64_t nb = n / kQKK;
  for (int r = 0; r < nr; ++r) {
    const auto* row = reinterpret_cast<const BlockQ6_K*>(static_cast<const char*>(w) + r * rb);
    for (int t = 0; t < ntok; ++t) out[t * ldo + r] = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      UnpackedQ6K u;
      UnpackQ6K(row[b], &u);
      for (int t = 0; t < ntok; ++t) {
        const auto* a =
            reinterpret_cast<const ActQ8K*>(static_cast<const char*>(act) + t * act_stride);
        out[t * ldo + r] += Q6KBlockDot(u, a[b]);
      }
    }
  }
}

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
  k->dot[static_cast<int>(TensorType::kQ8_0)] = DotRows32<BlockQ8_0, UnpackQ8_0>;
  k->dot[static_cast<int>(TensorType::kQ4_0)] = DotRows32<BlockQ4_0, UnpackQ4_0>;
  k->dot[static_cast<int>(TensorType::kQ5_0)] = DotRows32<BlockQ5_0, UnpackQ5_0>;
  k->dot[static_cast<int>(TensorType::kQ6_K)] = DotQ6_K;
  k->tile[static_cast<int>(TensorType::kQ8_0)] = TileRows32<BlockQ8_0, UnpackQ8_0>;
  k->tile[static_cast<int>(TensorType::kQ4_0)] = TileRows32<BlockQ4_0, UnpackQ4_0>;
  k->tile[static_cast<int>(TensorType::kQ5_0)] = TileRows32<BlockQ5_0, UnpackQ5_0>;
  k->tile[static_cast<int>(TensorType::kQ4_K)] = TileQ4_K;
  k->tile[static_cast<int>(TensorType::kQ6_K)] = TileQ6_K;
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
