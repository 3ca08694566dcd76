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

// ---- Eight rows at a time (Q4_0, Q8_0), in the file's own layout ----
// The 32-bit words of eight rows' blocks are transposed in registers so that int32 lane j of a
// vpdpbusd accumulates row j: then one instruction per 4 quants of 8 rows does the multiply-add,
// the eight fp16 scales convert in one instruction, and each row's result lands in its own lane
// (no horizontal sums). Weights stay memory-mapped; nothing is repacked.

// Eight rows of one block column: u[c] lane j = the 4 unsigned quants of row j that multiply
// activation bytes 4c..4c+3; the value is (u - kOffset) * d[j].
struct Group8 {
  __m256i u[8];
  __m256 d;
};

// Transposes 4x4 32-bit words within each 128-bit lane: w[k] lane j = word k of input j (rows
// 0-3 in the low half, 4-7 in the high half).
inline void Transpose4x4(const __m256i in[4], __m256i out[4]) {
  const __m256i t0 = _mm256_unpacklo_epi32(in[0], in[1]);
  const __m256i t1 = _mm256_unpackhi_epi32(in[0], in[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(in[2], in[3]);
  const __m256i t3 = _mm256_unpackhi_epi32(in[2], in[3]);
  out[0] = _mm256_unpacklo_epi64(t0, t2);
  out[1] = _mm256_unpackhi_epi64(t0, t2);
  out[2] = _mm256_unpacklo_epi64(t1, t3);
  out[3] = _mm256_unpackhi_epi64(t1, t3);
}

template <typename Block>
inline __m256 LoadScales8(const Block* const* rows, std::int64_t b) {
  __m128i h = _mm_cvtsi32_si128(rows[0][b].d);
  h = _mm_insert_epi16(h, rows[1][b].d, 1);
  h = _mm_insert_epi16(h, rows[2][b].d, 2);
  h = _mm_insert_epi16(h, rows[3][b].d, 3);
  h = _mm_insert_epi16(h, rows[4][b].d, 4);
  h = _mm_insert_epi16(h, rows[5][b].d, 5);
  h = _mm_insert_epi16(h, rows[6][b].d, 6);
  h = _mm_insert_epi16(h, rows[7][b].d, 7);
  return _mm256_cvtph_ps(h);
}

// 16 bytes of row j and row j + 4 side by side.
inline __m256i LoadPair(const std::uint8_t* lo, const std::uint8_t* hi) {
  return _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
}

struct Q4_0Group {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  // Byte k of a Q4_0 block holds quant k (low nibble) and quant k + 16 (high nibble).
  static void Unpack(const Block* const* rows, std::int64_t b, Group8* g) {
    UnpackNibbles(rows, b, g);
    g->d = LoadScales8(rows, b);
  }
  // The same 16 bytes of nibbles in Q4_0 and Q5_0 blocks.
  template <typename AnyBlock>
  static void UnpackNibbles(const AnyBlock* const* rows, std::int64_t b, Group8* g) {
    __m256i in[4], w[4];
    for (int j = 0; j < 4; ++j) in[j] = LoadPair(rows[j][b].qs, rows[j + 4][b].qs);
    Transpose4x4(in, w);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int k = 0; k < 4; ++k) {
      g->u[k] = _mm256_and_si256(w[k], m4);
      g->u[k + 4] = _mm256_and_si256(_mm256_srli_epi16(w[k], 4), m4);
    }
  }
};

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

struct Q5_0Group {
  using Block = BlockQ5_0;
  static constexpr int kOffset = 16;
  // Q4_0's nibbles plus a fifth bit: bit e of the block's 32-bit qh is bit 4 of quant e.
  static void Unpack(const Block* const* rows, std::int64_t b, Group8* g) {
    Q4_0Group::UnpackNibbles(rows, b, g);
    std::uint32_t qh[8];
    for (int j = 0; j < 8; ++j) __builtin_memcpy(&qh[j], rows[j][b].qh, 4);
    // Lane j = row j's qh, the same lane order as the transposed quants.
    const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
    // Byte 4j + i of each 128-bit half reads byte `k` of dword j when k is added.
    const __m256i dword_base = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12,
                                                0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    for (int c = 0; c < 8; ++c) {
      // Byte i of lane j of u[c] is quant 4c + i: its fifth bit is bit 4(c % 2) + i of byte c / 2.
      const __m256i bytes =
          _mm256_shuffle_epi8(high, _mm256_add_epi8(dword_base, _mm256_set1_epi8(c / 2)));
      const __m256i bits = _mm256_set1_epi32(static_cast<int>(0x08040201u << (4 * (c % 2))));
      const __mmask32 set = _mm256_test_epi8_mask(bytes, bits);
      g->u[c] = _mm256_or_si256(g->u[c], _mm256_maskz_mov_epi8(set, bit4));
    }
    g->d = LoadScales8(rows, b);
  }
};

template <int kOffset>
inline __m256 Group8Accumulate(const Group8& g, const ActQ8x32& y, __m256 acc) {
  __m256i sumi = _mm256_setzero_si256();
  for (int c = 0; c < 8; ++c) {
    std::int32_t word;
    __builtin_memcpy(&word, y.qs + 4 * c, 4);
    sumi = _mm256_dpbusd_epi32(sumi, g.u[c], _mm256_set1_epi32(word));
  }
  sumi = _mm256_sub_epi32(sumi, _mm256_set1_epi32(kOffset * y.sum));
  return _mm256_fmadd_ps(_mm256_mul_ps(g.d, _mm256_set1_ps(y.d)), _mm256_cvtepi32_ps(sumi), acc);
}

template <typename Block>
inline void RowPointers8(const void* w, std::size_t rb, int r, const Block** rows) {
  for (int j = 0; j < 8; ++j) {
    rows[j] = reinterpret_cast<const Block*>(static_cast<const char*>(w) + (r + j) * rb);
  }
}

// Eight rows read in lock-step are eight short streams that the hardware prefetcher does not
// follow (measured: 7 GB/s instead of 30 GB/s from DRAM for one thread). While one group is
// computed, the next group's bytes (just after it: rows are contiguous) are prefetched, a slice
// per block. Prefetching past the end of the matrix is harmless (prefetches never fault).
inline void PrefetchSlice(const char* next_group, std::size_t step, std::int64_t b) {
  const char* p = next_group + static_cast<std::size_t>(b) * step;
  for (std::size_t off = 0; off < step; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

template <typename G, typename Unpack>
void DotRowsGroup8(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
                   float* out) {
  using Block = typename G::Block;
  const auto* a = static_cast<const ActQ8x32*>(act);
  const std::int64_t nb = n / kQK;
  int r = 0;
  for (; r + 8 <= nr; r += 8) {
    const Block* rows[8];
    RowPointers8(w, rb, r, rows);
    const char* next_group = static_cast<const char*>(w) + (r + 8) * rb;
    __m256 acc = _mm256_setzero_ps();
    for (std::int64_t b = 0; b < nb; ++b) {
      PrefetchSlice(next_group, 8 * sizeof(Block), b);
      Group8 g;
      G::Unpack(rows, b, &g);
      acc = Group8Accumulate<G::kOffset>(g, a[b], acc);
    }
    _mm256_storeu_ps(out + r, acc);
  }
  if (r < nr) {
    DotRows32<Block, Unpack>(n, static_cast<const char*>(w) + r * rb, rb, nr - r, act, out + r);
  }
}

template <typename G, typename Unpack>
void TileRowsGroup8(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
                    std::size_t act_stride, int ntok, float* out, std::size_t ldo) {
  using Block = typename G::Block;
  constexpr int kTok = 8;
  const std::int64_t nb = n / kQK;
  const int nr8 = nr / 8 * 8;
  for (int t0 = 0; t0 < ntok; t0 += kTok) {
    const int nt = ntok - t0 < kTok ? ntok - t0 : kTok;
    const ActQ8x32* a[kTok];
    for (int t = 0; t < nt; ++t) {
      a[t] =
          reinterpret_cast<const ActQ8x32*>(static_cast<const char*>(act) + (t0 + t) * act_stride);
    }
    for (int r = 0; r < nr8; r += 8) {
      const Block* rows[8];
      RowPointers8(w, rb, r, rows);
      const char* next_group = static_cast<const char*>(w) + (r + 8) * rb;
      __m256 acc[kTok];
      for (int t = 0; t < kTok; ++t) acc[t] = _mm256_setzero_ps();
      for (std::int64_t b = 0; b < nb; ++b) {
        PrefetchSlice(next_group, 8 * sizeof(Block), b);
        Group8 g;
        G::Unpack(rows, b, &g);
        for (int t = 0; t < nt; ++t) acc[t] = Group8Accumulate<G::kOffset>(g, a[t][b], acc[t]);
      }
      for (int t = 0; t < nt; ++t) _mm256_storeu_ps(out + (t0 + t) * ldo + r, acc[t]);
    }
  }
  if (nr8 < nr) {
    TileRows32<Block, Unpack>(n, static_cast<const char*>(w) + nr8 * rb, rb, nr - nr8, act,
                              act_stride, ntok, out + nr8, ldo);
  }
}

// ---- K-quants ----
// A super-block is unpacked once into 8 vectors of 32 unsigned quants (vector v = elements
// 32v..32v+31) and 8 vectors of int16 scales; each activation block then costs two instructions
// per 32 quants: vpmaddubsw (pairs of u8 x s8 products into int16; no saturation: at most
// 2 * 63 * 127) and vpdpwssd (times the scale, accumulated into int32). Offsets and mins use the
// activation's 16-element sums (vpmaddwd). The float accumulators stay in registers across the
// whole row: one horizontal sum per row and token, not per block.

inline __m256i ScaleQuants(__m256i q, const std::int8_t* y, __m256i scale16, __m256i sumi) {
  const __m256i yv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y));
  return _mm256_dpwssd_epi32(sumi, _mm256_maddubs_epi16(q, yv), scale16);
}

inline __m256i LoadBsums(const ActQ8K& y) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums));
}

// (2 bits of `bytes` at `shift`) in each byte.
inline __m256i Bits2(__m256i bytes, int shift) {
  return _mm256_and_si256(_mm256_srli_epi16(bytes, shift), _mm256_set1_epi8(0x03));
}
// Bit `bit` of each byte, moved to bit `to`.
inline __m256i Bit(__m256i bytes, int bit, int to) {
  return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bytes, bit), _mm256_set1_epi8(0x01)),
                           to);
}

// Q4_K/Q5_K: value = d * sc[s] * q - dmin * mn[s] for sub-block s of 32 quants.
struct UnpackedK32 {
  __m256i q[8];
  __m256i scale[8];  // sc[s] in every int16 lane
  __m256i mins;      // int16 lanes 2s, 2s+1 = mn[s] (pairs with the 16-element bsums)
  float d, dmin;
};

// 12 bytes of 6-bit scales and mins (sc0-3 | mn0-3 | low nibbles of 4-7, high bits in the top
// two bits of bytes 0-7), decoded four at a time as 32-bit words.
inline void UnpackScalesMinsK(const std::uint8_t* packed, UnpackedK32* u) {
  std::uint32_t w[3];
  __builtin_memcpy(w, packed, 12);
  const std::uint32_t sc_lo = w[0] & 0x3f3f3f3f, mn_lo = w[1] & 0x3f3f3f3f;
  const std::uint32_t sc_hi = (w[2] & 0x0f0f0f0f) | (((w[0] >> 6) & 0x03030303) << 4);
  const std::uint32_t mn_hi = ((w[2] >> 4) & 0x0f0f0f0f) | (((w[1] >> 6) & 0x03030303) << 4);
  std::uint8_t sc[8];
  __builtin_memcpy(sc, &sc_lo, 4);
  __builtin_memcpy(sc + 4, &sc_hi, 4);
  for (int s = 0; s < 8; ++s) u->scale[s] = _mm256_set1_epi16(sc[s]);
  const __m128i mn = _mm_cvtsi64_si128(static_cast<long long>(
      (static_cast<std::uint64_t>(mn_hi) << 32) | static_cast<std::uint64_t>(mn_lo)));
  u->mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
}

inline void UnpackQ4K(const BlockQ4_K& x, UnpackedK32* u) {
  UnpackScalesMinsK(x.scales, u);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int c = 0; c < 4; ++c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
    u->q[2 * c] = _mm256_and_si256(q, m4);
    u->q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
  }
  u->d = HalfToFloat(x.d);
  u->dmin = HalfToFloat(x.dmin);
}

// Q5_K: Q4_K's nibbles plus bit s of qh[l] as bit 4 of element l of sub-block s.
inline void UnpackQ5K(const BlockQ5_K& x, UnpackedK32* u) {
  UnpackScalesMinsK(x.scales, u);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh));
  for (int c = 0; c < 4; ++c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
    u->q[2 * c] = _mm256_or_si256(_mm256_and_si256(q, m4), Bit(qh, 2 * c, 4));
    u->q[2 * c + 1] =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), Bit(qh, 2 * c + 1, 4));
  }
  u->d = HalfToFloat(x.d);
  u->dmin = HalfToFloat(x.dmin);
}

inline __m256 K32Accumulate(const UnpackedK32& u, const ActQ8K& y, __m256 acc) {
  __m256i sumi = _mm256_setzero_si256();
  for (int s = 0; s < 8; ++s) sumi = ScaleQuants(u.q[s], y.qs + 32 * s, u.scale[s], sumi);
  const __m256i mins = _mm256_madd_epi16(LoadBsums(y), u.mins);
  acc = _mm256_fmadd_ps(_mm256_set1_ps(u.d * y.d), _mm256_cvtepi32_ps(sumi), acc);
  return _mm256_fnmadd_ps(_mm256_set1_ps(u.dmin * y.d), _mm256_cvtepi32_ps(mins), acc);
}

// Q2_K/Q3_K/Q6_K: one scale per group of 16 quants; value = d * sc[g] * (q - offset) (Q3_K,
// Q6_K) or d * sc[g] * q - dmin * mn[g] (Q2_K).
struct UnpackedK16 {
  __m256i q[8];           // vector v = groups 2v, 2v+1
  __m256i scale[8];       // int16 lanes 0-7 = sc[2v], lanes 8-15 = sc[2v+1] (vpmaddubsw order)
  __m256i group_weights;  // int16 lane g: sc[g] (offset types) or mn[g] (Q2_K), with bsums
  float d, dmin;
};

// Sixteen int8 scales -> the eight pair-scale vectors.
inline void PairScales(__m128i sc8, __m256i* out) {
  for (int v = 0; v < 8; ++v) {
    const __m128i pick =
        _mm_set_epi64x(0x0101010101010101LL * (2 * v + 1), 0x0101010101010101LL * (2 * v));
    out[v] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
  }
}

inline void UnpackQ6K(const BlockQ6_K& x, UnpackedK16* u) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int half = 0; half < 2; ++half) {
    const std::uint8_t* ql = x.ql + 64 * half;
    const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
    const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * half));
    u->q[4 * half + 0] =
        _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(Bits2(h, 0), 4));
    u->q[4 * half + 1] =
        _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(Bits2(h, 2), 4));
    u->q[4 * half + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                         _mm256_slli_epi16(Bits2(h, 4), 4));
    u->q[4 * half + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_slli_epi16(Bits2(h, 6), 4));
  }
  const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales));
  u->group_weights = _mm256_cvtepi8_epi16(sc8);
  PairScales(sc8, u->scale);
  u->d = HalfToFloat(x.d);
  u->dmin = 0;
}

// Q3_K: 2 low bits from qs (half h, shift s -> vector 4h + s) plus bit 4h + s of hmask[l] as bit
// 2; stored value = u - 4. Scales: 6 bits minus 32 (low nibbles in bytes 0-7, high pairs in
// bytes 8-11).
inline void UnpackQ3K(const BlockQ3_K& x, UnpackedK16* u) {
  const __m256i hmask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.hmask));
  for (int half = 0; half < 2; ++half) {
    const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * half));
    for (int s = 0; s < 4; ++s) {
      u->q[4 * half + s] = _mm256_or_si256(Bits2(qs, 2 * s), Bit(hmask, 4 * half + s, 2));
    }
  }
  std::uint64_t low8;
  std::uint32_t high4;
  __builtin_memcpy(&low8, x.scales, 8);
  __builtin_memcpy(&high4, x.scales + 8, 4);
  const __m128i low = _mm_cvtsi64_si128(static_cast<long long>(low8));
  const __m128i nib = _mm_set1_epi8(0x0f);
  const __m128i lows =
      _mm_unpacklo_epi64(_mm_and_si128(low, nib), _mm_and_si128(_mm_srli_epi16(low, 4), nib));
  const __m128i highs = _mm_setr_epi32(
      static_cast<int>(high4 & 0x03030303), static_cast<int>((high4 >> 2) & 0x03030303),
      static_cast<int>((high4 >> 4) & 0x03030303), static_cast<int>((high4 >> 6) & 0x03030303));
  const __m128i sc8 = _mm_sub_epi8(_mm_or_si128(lows, _mm_slli_epi16(highs, 4)), _mm_set1_epi8(32));
  u->group_weights = _mm256_cvtepi8_epi16(sc8);
  PairScales(sc8, u->scale);
  u->d = HalfToFloat(x.d);
  u->dmin = 0;
}

// Q2_K: 2 bits from qs (half h, shift s -> vector 4h + s); scales byte g = sc | mn << 4.
inline void UnpackQ2K(const BlockQ2_K& x, UnpackedK16* u) {
  for (int half = 0; half < 2; ++half) {
    const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * half));
    for (int s = 0; s < 4; ++s) u->q[4 * half + s] = Bits2(qs, 2 * s);
  }
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales));
  const __m128i nib = _mm_set1_epi8(0x0f);
  PairScales(_mm_and_si128(packed, nib), u->scale);
  u->group_weights = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), nib));
  u->d = HalfToFloat(x.d);
  u->dmin = HalfToFloat(x.dmin);
}

// kOffset > 0: subtract kOffset * sum_g sc[g] * bsum[g]; 0: subtract dmin * sum_g mn[g] * bsum[g].
template <int kOffset>
inline __m256 K16Accumulate(const UnpackedK16& u, const ActQ8K& y, __m256 acc) {
  __m256i sumi = _mm256_setzero_si256();
  for (int v = 0; v < 8; ++v) sumi = ScaleQuants(u.q[v], y.qs + 32 * v, u.scale[v], sumi);
  const __m256i grouped = _mm256_madd_epi16(LoadBsums(y), u.group_weights);
  if constexpr (kOffset > 0) {
    sumi = _mm256_sub_epi32(sumi, _mm256_mullo_epi32(grouped, _mm256_set1_epi32(kOffset)));
    return _mm256_fmadd_ps(_mm256_set1_ps(u.d * y.d), _mm256_cvtepi32_ps(sumi), acc);
  } else {
    acc = _mm256_fmadd_ps(_mm256_set1_ps(u.d * y.d), _mm256_cvtepi32_ps(sumi), acc);
    return _mm256_fnmadd_ps(_mm256_set1_ps(u.dmin * y.d), _mm256_cvtepi32_ps(grouped), acc);
  }
}

#define AIRLOCK_K_TRAITS(Name, BlockType, UnpackedType, UnpackFn, AccumulateFn) \
  struct Name {                                                                 \
    using Block = BlockType;                                                    \
    using Unpacked = UnpackedType;                                              \
    static void Unpack(const Block& b, Unpacked* u) { UnpackFn(b, u); }         \
    static __m256 Accumulate(const Unpacked& u, const ActQ8K& y, __m256 acc) {  \
      return AccumulateFn(u, y, acc);                                           \
    }                                                                           \
  };
AIRLOCK_K_TRAITS(Q2KTraits, BlockQ2_K, UnpackedK16, UnpackQ2K, K16Accumulate<0>)
AIRLOCK_K_TRAITS(Q3KTraits, BlockQ3_K, UnpackedK16, UnpackQ3K, K16Accumulate<4>)
AIRLOCK_K_TRAITS(Q4KTraits, BlockQ4_K, UnpackedK32, UnpackQ4K, K32Accumulate)
AIRLOCK_K_TRAITS(Q5KTraits, BlockQ5_K, UnpackedK32, UnpackQ5K, K32Accumulate)
AIRLOCK_K_TRAITS(Q6KTraits, BlockQ6_K, UnpackedK16, UnpackQ6K, K16Accumulate<32>)
#undef AIRLOCK_K_TRAITS

template <typename T>
void DotRowsK(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* a = static_cast<const ActQ8K*>(act);
  const std::int64_t nb = n / kQKK;
  for (int r = 0; r < nr; ++r) {
    const auto* row =
        reinterpret_cast<const typename T::Block*>(static_cast<const char*>(w) + r * rb);
    __m256 acc = _mm256_setzero_ps();
    for (std::int64_t b = 0; b < nb; ++b) {
      typename T::Unpacked u;
      T::Unpack(row[b], &u);
      acc = T::Accumulate(u, a[b], acc);
    }
    out[r] = HorizontalSum(acc);
  }
}

// Groups of up to kTok tokens: each weight super-block is unpacked once per group, and a group's
// activations (kTok x row) stay in L1/L2 while the rows of the chunk pass over them.
template <typename T>
void TileRowsK(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
               std::size_t act_stride, int ntok, float* out, std::size_t ldo) {
  constexpr int kTok = 8;
  const std::int64_t nb = n / kQKK;
  for (int t0 = 0; t0 < ntok; t0 += kTok) {
    const int nt = ntok - t0 < kTok ? ntok - t0 : kTok;
    const ActQ8K* a[kTok];
    for (int t = 0; t < nt; ++t) {
      a[t] = reinterpret_cast<const ActQ8K*>(static_cast<const char*>(act) + (t0 + t) * act_stride);
    }
    for (int r = 0; r < nr; ++r) {
      const auto* row =
          reinterpret_cast<const typename T::Block*>(static_cast<const char*>(w) + r * rb);
      __m256 acc[kTok];
      for (int t = 0; t < kTok; ++t) acc[t] = _mm256_setzero_ps();
      for (std::int64_t b = 0; b < nb; ++b) {
        typename T::Unpacked u;
        T::Unpack(row[b], &u);
        for (int t = 0; t < nt; ++t) acc[t] = T::Accumulate(u, a[t][b], acc[t]);
      }
      for (int t = 0; t < nt; ++t) out[(t0 + t) * ldo + r] = HorizontalSum(acc[t]);
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
  k->dot[static_cast<int>(TensorType::kQ8_0)] = DotRowsGroup8<Q8_0Group, UnpackQ8_0>;
  k->dot[static_cast<int>(TensorType::kQ4_0)] = DotRowsGroup8<Q4_0Group, UnpackQ4_0>;
  k->dot[static_cast<int>(TensorType::kQ5_0)] = DotRowsGroup8<Q5_0Group, UnpackQ5_0>;
  k->dot[static_cast<int>(TensorType::kQ2_K)] = DotRowsK<Q2KTraits>;
  k->dot[static_cast<int>(TensorType::kQ3_K)] = DotRowsK<Q3KTraits>;
  k->dot[static_cast<int>(TensorType::kQ4_K)] = DotRowsK<Q4KTraits>;
  k->dot[static_cast<int>(TensorType::kQ5_K)] = DotRowsK<Q5KTraits>;
  k->dot[static_cast<int>(TensorType::kQ6_K)] = DotRowsK<Q6KTraits>;
  k->tile[static_cast<int>(TensorType::kQ8_0)] = TileRowsGroup8<Q8_0Group, UnpackQ8_0>;
  k->tile[static_cast<int>(TensorType::kQ4_0)] = TileRowsGroup8<Q4_0Group, UnpackQ4_0>;
  k->tile[static_cast<int>(TensorType::kQ5_0)] = TileRowsGroup8<Q5_0Group, UnpackQ5_0>;
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
