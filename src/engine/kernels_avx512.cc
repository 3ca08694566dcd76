// AVX-512 VNNI kernels: the shared quantized kernels of x86_quant_kernels.inc with VNNI hooks
// (256-bit vpdpbusd/vpdpwssd, AVX512VL), Q8_0 in eight-row groups, Q4_K/Q5_K/Q6_K on 512-bit
// vectors (64 quants per instruction pair), and "tile" kernels for batches (prompt processing)
// that unpack each weight block once for several tokens (the 32-element quants sixteen rows per
// 512-bit vector). Compiled with the matching -m flags (see CMakeLists.txt) and only called
// after a run-time CPU check; everything here has internal linkage.
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

// ---- K-quants with 512-bit vectors (Q4_K, Q5_K, Q6_K) ----
// A vector holds 64 quants (two 32-quant sub-blocks of Q4_K/Q5_K, four 16-quant groups of Q6_K),
// lined up with 64 contiguous activation bytes: vpmaddubsw (u8 quants x s8 activations -> int16
// pairs) then vpdpwssd (x the per-sub-block scales, into int32) cost two instructions per 64
// quants, and the nibbles and high bits come out of a 32-byte broadcast with one variable shift
// per vector. Scales and mins are unpacked once per super-block. The dot and tile kernels run the
// same per-row arithmetic (Unpack, then Accumulate per token), so a row's result does not depend on
// how many tokens or rows share the call.

struct ActK512 {
  __m512i y[4];   // activation bytes 64p..64p+63
  __m256i bsums;  // the 16 sums of 16 activations
  float d;
};

inline void LoadActK512(const ActQ8K& a, ActK512* v) {
  for (int p = 0; p < 4; ++p) v->y[p] = _mm512_loadu_si512(a.qs + 64 * p);
  v->bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums));
  v->d = a.d;
}

struct UnpackedK512 {
  __m512i q[4];      // unsigned quants, in activation order
  __m512i scale[4];  // int16 lane i of vector p: the scale of quants 64p + 2i, 64p + 2i + 1
  __m256i group;     // int16 weights of the 16 bsums: mins (Q4_K/Q5_K) or scales (Q6_K)
  float d, dmin;
};

// Full masks: GCC 12's unmasked forms of several intrinsics used here warn about their undefined
// pass-through source.
constexpr __mmask8 kAll8 = 0xff;
constexpr __mmask16 kAll16 = 0xffff;

inline __m512i Broadcast32Bytes(const std::uint8_t* p) {
  return _mm512_maskz_broadcast_i64x4(kAll8,
                                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// int16 lanes: `low` in the low 256 bits, `high` in the high 256 bits (shift counts, indices).
inline __m512i HalvesOf(int low, int high) {
  return _mm512_mask_blend_epi64(0xf0, _mm512_set1_epi16(static_cast<short>(low)),
                                 _mm512_set1_epi16(static_cast<short>(high)));
}

// Vector p of scales from eight int16 values (one per 32 quants): lanes 0-15 = s[2p], 16-31 =
// s[2p + 1].
inline void SubBlockScales512(__m128i s16, __m512i* scale) {
  const __m512i s = _mm512_castsi128_si512(s16);
  for (int p = 0; p < 4; ++p) scale[p] = _mm512_permutexvar_epi16(HalvesOf(2 * p, 2 * p + 1), s);
}

// 12 bytes of 6-bit scales and mins (see UnpackScalesMinsK).
inline void UnpackScalesMinsK512(const std::uint8_t* packed, UnpackedK512* u) {
  std::uint32_t w[3];
  __builtin_memcpy(w, packed, 12);
  const std::uint32_t sc_lo = w[0] & 0x3f3f3f3f, mn_lo = w[1] & 0x3f3f3f3f;
  const std::uint32_t sc_hi = (w[2] & 0x0f0f0f0f) | (((w[0] >> 6) & 0x03030303) << 4);
  const std::uint32_t mn_hi = ((w[2] >> 4) & 0x0f0f0f0f) | (((w[1] >> 6) & 0x03030303) << 4);
  const __m128i sc = _mm_cvtsi64_si128(static_cast<long long>(
      (static_cast<std::uint64_t>(sc_hi) << 32) | static_cast<std::uint64_t>(sc_lo)));
  const __m128i mn = _mm_cvtsi64_si128(static_cast<long long>(
      (static_cast<std::uint64_t>(mn_hi) << 32) | static_cast<std::uint64_t>(mn_lo)));
  SubBlockScales512(_mm_cvtepu8_epi16(sc), u->scale);
  u->group = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));  // mn[s] at int16 lanes 2s, 2s+1
}

// Q4_K: bytes 32p..32p+31 of qs hold sub-block 2p (low nibbles) and 2p + 1 (high nibbles).
inline void UnpackQ4K512(const BlockQ4_K& x, UnpackedK512* u) {
  UnpackScalesMinsK512(x.scales, u);
  const __m512i counts = HalvesOf(0, 4);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  for (int p = 0; p < 4; ++p) {
    u->q[p] = _mm512_and_si512(_mm512_srlv_epi16(Broadcast32Bytes(x.qs + 32 * p), counts), m4);
  }
  u->d = HalfToFloat(x.d);
  u->dmin = HalfToFloat(x.dmin);
}

// Q5_K: Q4_K's nibbles plus bit s of qh[l] as bit 4 of element l of sub-block s.
inline void UnpackQ5K512(const BlockQ5_K& x, UnpackedK512* u) {
  UnpackScalesMinsK512(x.scales, u);
  const __m512i counts = HalvesOf(0, 4);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i bit4 = _mm512_set1_epi8(0x10);
  const __m512i qh = Broadcast32Bytes(x.qh);
  for (int p = 0; p < 4; ++p) {
    const __m512i nib =
        _mm512_and_si512(_mm512_srlv_epi16(Broadcast32Bytes(x.qs + 32 * p), counts), m4);
    const __m512i bits =
        _mm512_mask_blend_epi64(0xf0, _mm512_set1_epi8(static_cast<char>(1 << (2 * p))),
                                _mm512_set1_epi8(static_cast<char>(2 << (2 * p))));
    u->q[p] = _mm512_mask_add_epi8(nib, _mm512_test_epi8_mask(qh, bits), nib, bit4);
  }
  u->d = HalfToFloat(x.d);
  u->dmin = HalfToFloat(x.dmin);
}

// Q6_K: for each half h of 128 quants, byte l of ql[64h..] holds quant l (low nibble) and 64 + l
// (high nibble); byte l of qh[32h..] holds bits 4-5 of quants l, 32 + l, 64 + l and 96 + l (two
// bits each, from the lowest). Stored value = q - 32; one int8 scale per 16 quants.
inline void UnpackQ6K512(const BlockQ6_K& x, UnpackedK512* u) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i m30 = _mm512_set1_epi8(0x30);
  const __m512i left = HalvesOf(4, 2);   // bits 0-1 and 2-3 up to bits 4-5
  const __m512i right = HalvesOf(0, 2);  // bits 4-5 stay, bits 6-7 down to bits 4-5
  for (int h = 0; h < 2; ++h) {
    const __m512i ql = _mm512_loadu_si512(x.ql + 64 * h);
    const __m512i qh = Broadcast32Bytes(x.qh + 32 * h);
    const __m512i high_a = _mm512_and_si512(_mm512_sllv_epi16(qh, left), m30);
    const __m512i high_b = _mm512_and_si512(_mm512_srlv_epi16(qh, right), m30);
    // (a & 0x0f) | b, bit by bit: imm = (0xf0 & 0xaa) | 0xcc.
    u->q[2 * h] = _mm512_ternarylogic_epi64(ql, high_a, m4, 0xec);
    u->q[2 * h + 1] = _mm512_ternarylogic_epi64(_mm512_srli_epi16(ql, 4), high_b, m4, 0xec);
  }
  const __m256i sc16 =
      _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
  u->group = sc16;
  const __m512i s = _mm512_castsi256_si512(sc16);
  for (int p = 0; p < 4; ++p) {
    // Lanes 8k..8k+7 (quants 16k..16k+15 of the vector) take group 4p + k.
    const __m512i index =
        _mm512_add_epi16(_mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22,
                                                            21, 20, 19, 18, 17, 16, 15, 14, 13, 12,
                                                            11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           3),
                         _mm512_set1_epi16(static_cast<short>(4 * p)));
    u->scale[p] = _mm512_permutexvar_epi16(index, s);
  }
  u->d = HalfToFloat(x.d);
  u->dmin = 0;
}

// kOffset > 0 (Q6_K): value = d * sc * (q - kOffset); 0: value = d * sc * q - dmin * mn. `acc`
// collects the scaled quant sums, `acc_min` the mins' part.
template <int kOffset>
inline void AccumulateK512(const UnpackedK512& u, const ActK512& y, __m512* acc, __m256* acc_min) {
  // Two chains of two multiply-adds (their latency, not their count, would limit one chain).
  __m512i s0 =
      _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_maddubs_epi16(u.q[0], y.y[0]), u.scale[0]);
  __m512i s1 =
      _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_maddubs_epi16(u.q[1], y.y[1]), u.scale[1]);
  s0 = _mm512_dpwssd_epi32(s0, _mm512_maddubs_epi16(u.q[2], y.y[2]), u.scale[2]);
  s1 = _mm512_dpwssd_epi32(s1, _mm512_maddubs_epi16(u.q[3], y.y[3]), u.scale[3]);
  __m512i sumi = _mm512_add_epi32(s0, s1);
  const __m256i grouped = _mm256_madd_epi16(y.bsums, u.group);
  if constexpr (kOffset > 0) {
    static_assert(kOffset == 32);
    // Lanes 0-7 only (the broadcast's upper copy is masked off).
    sumi = _mm512_mask_sub_epi32(
        sumi, 0x00ff, sumi, _mm512_maskz_broadcast_i64x4(kAll8, _mm256_slli_epi32(grouped, 5)));
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(u.d * y.d), _mm512_maskz_cvtepi32_ps(kAll16, sumi), *acc);
  } else {
    *acc = _mm512_fmadd_ps(_mm512_set1_ps(u.d * y.d), _mm512_maskz_cvtepi32_ps(kAll16, sumi), *acc);
    *acc_min =
        _mm256_fnmadd_ps(_mm256_set1_ps(u.dmin * y.d), _mm256_cvtepi32_ps(grouped), *acc_min);
  }
}

inline float FinishK512(__m512 acc, __m256 acc_min) {
  const __m512d wide = _mm512_castps_pd(acc);
  const __m256 halves =
      _mm256_add_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(kAll8, wide, 0)),
                    _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(kAll8, wide, 1)));
  return HorizontalSum(_mm256_add_ps(halves, acc_min));
}

#define AIRLOCK_K512_TRAITS(Name, BlockType, UnpackFn, kOffset)                               \
  struct Name {                                                                               \
    using Block = BlockType;                                                                  \
    static void Unpack(const Block& b, UnpackedK512* u) { UnpackFn(b, u); }                   \
    static void Accumulate(const UnpackedK512& u, const ActK512& y, __m512* acc, __m256* m) { \
      AccumulateK512<kOffset>(u, y, acc, m);                                                  \
    }                                                                                         \
  };
AIRLOCK_K512_TRAITS(Q4K512, BlockQ4_K, UnpackQ4K512, 0)
AIRLOCK_K512_TRAITS(Q5K512, BlockQ5_K, UnpackQ5K512, 0)
AIRLOCK_K512_TRAITS(Q6K512, BlockQ6_K, UnpackQ6K512, 32)
#undef AIRLOCK_K512_TRAITS

// One row at a time, front to back: two rows read in lock-step (to share the activation loads)
// ran at a quarter of the speed from DRAM on 2 threads (the hardware prefetcher lost the streams).
template <typename T>
void DotRowsK512(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
                 float* out) {
  using Block = typename T::Block;
  const auto* a = static_cast<const ActQ8K*>(act);
  const std::int64_t nb = n / kQKK;
  for (int r = 0; r < nr; ++r) {
    const auto* row = reinterpret_cast<const Block*>(static_cast<const char*>(w) + r * rb);
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_min = _mm256_setzero_ps();
    for (std::int64_t b = 0; b < nb; ++b) {
      ActK512 y;
      LoadActK512(a[b], &y);
      UnpackedK512 u;
      T::Unpack(row[b], &u);
      T::Accumulate(u, y, &acc, &acc_min);
    }
    out[r] = FinishK512(acc, acc_min);
  }
}

// Groups of up to kTok tokens: each super-block is unpacked once per group.
template <typename T>
void TileRowsK512(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
                  std::size_t act_stride, int ntok, float* out, std::size_t ldo) {
  using Block = typename T::Block;
  constexpr int kTok = 8;
  const std::int64_t nb = n / kQKK;
  for (int t0 = 0; t0 < ntok; t0 += kTok) {
    const int nt = ntok - t0 < kTok ? ntok - t0 : kTok;
    const ActQ8K* a[kTok];
    for (int t = 0; t < nt; ++t) {
      a[t] = reinterpret_cast<const ActQ8K*>(static_cast<const char*>(act) + (t0 + t) * act_stride);
    }
    for (int r = 0; r < nr; ++r) {
      const auto* row = reinterpret_cast<const Block*>(static_cast<const char*>(w) + r * rb);
      __m512 acc[kTok];
      __m256 acc_min[kTok];
      for (int t = 0; t < kTok; ++t) {
        acc[t] = _mm512_setzero_ps();
        acc_min[t] = _mm256_setzero_ps();
      }
      for (std::int64_t b = 0; b < nb; ++b) {
        UnpackedK512 u;
        T::Unpack(row[b], &u);
        for (int t = 0; t < nt; ++t) {
          ActK512 y;
          LoadActK512(a[t][b], &y);
          T::Accumulate(u, y, &acc[t], &acc_min[t]);
        }
      }
      for (int t = 0; t < nt; ++t) out[(t0 + t) * ldo + r] = FinishK512(acc[t], acc_min[t]);
    }
  }
}

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

// ---- Prompt tiles of the 32-element quants: sixteen rows in 512-bit lanes ----
// Two eight-row groups (rows r..r+7 and r+8..r+15, unpacked as in the dot kernels) side by side
// in 512-bit vectors: each broadcast activation word then feeds one vpdpbusd for 16 rows, and the
// per-block float work is shared by 16 rows, half the instructions per multiply-add of the
// eight-row tiles. Each lane runs Group8Accumulate's arithmetic, so a row's result is the same
// as in the dot kernels (batched and lone rows agree bit for bit).
struct Group16 {
  __m512i u[8];
  __m512 d, m;
};

inline __m512i JoinHalves(__m256i lo, __m256i hi) {
  return _mm512_mask_inserti64x4(_mm512_castsi256_si512(lo), kAll8, _mm512_castsi256_si512(lo), hi,
                                 1);
}
inline __m512 JoinHalves(__m256 lo, __m256 hi) {
  return _mm512_castsi512_ps(JoinHalves(_mm256_castps_si256(lo), _mm256_castps_si256(hi)));
}

template <typename G>
inline __m512 Group16Accumulate(const Group16& g, const ActQ8x32& y, __m512 acc) {
  // Each activation word broadcast straight from memory (a load, foldable into vpdpbusd's
  // {1to16} operand): through a general register it cost a shift and a two-uop broadcast each,
  // measured 187 -> 212-220 G multiply-adds per CPU-second for the Q4_0 tile (kernel_bench).
  auto bcast = [&](int c) {
    return _mm512_maskz_broadcastd_epi32(kAll16, _mm_loadu_si32(y.qs + 4 * c));
  };
  __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), g.u[0], bcast(0));
  __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), g.u[2], bcast(2));
  s0 = _mm512_dpbusd_epi32(s0, g.u[1], bcast(1));
  s1 = _mm512_dpbusd_epi32(s1, g.u[3], bcast(3));
  s0 = _mm512_dpbusd_epi32(s0, g.u[4], bcast(4));
  s1 = _mm512_dpbusd_epi32(s1, g.u[6], bcast(6));
  s0 = _mm512_dpbusd_epi32(s0, g.u[5], bcast(5));
  s1 = _mm512_dpbusd_epi32(s1, g.u[7], bcast(7));
  __m512i sumi = _mm512_add_epi32(s0, s1);
  if constexpr (G::kOffset != 0) {
    sumi = _mm512_sub_epi32(sumi, _mm512_set1_epi32(G::kOffset * y.sum));
  }
  acc = _mm512_fmadd_ps(_mm512_mul_ps(g.d, _mm512_set1_ps(y.d)),
                        _mm512_maskz_cvtepi32_ps(kAll16, sumi), acc);
  if constexpr (G::kHasMin) {
    acc = _mm512_fmadd_ps(g.m, _mm512_set1_ps(y.d * static_cast<float>(y.sum)), acc);
  }
  return acc;
}

template <typename G>
void TileRowsGroup16(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
                     std::size_t act_stride, int ntok, float* out, std::size_t ldo) {
  using Block = typename G::Block;
  constexpr int kTok = 8;
  const std::int64_t nb = n / kQK;
  const int full = nr / 16 * 16;
  for (int t0 = 0; t0 < ntok && full > 0; t0 += kTok) {
    const int nt = ntok - t0 < kTok ? ntok - t0 : kTok;
    const ActQ8x32* a[kTok];
    for (int t = 0; t < nt; ++t) {
      a[t] =
          reinterpret_cast<const ActQ8x32*>(static_cast<const char*>(act) + (t0 + t) * act_stride);
    }
    for (int r = 0; r < full; r += 16) {
      const Block* rows[16];
      for (int j = 0; j < 16; ++j) {
        rows[j] = reinterpret_cast<const Block*>(static_cast<const char*>(w) + (r + j) * rb);
      }
      const char* next_group = static_cast<const char*>(w) + (r + 16) * rb;
      __m512 acc[kTok];
      for (int t = 0; t < kTok; ++t) acc[t] = _mm512_setzero_ps();
      for (std::int64_t b = 0; b < nb; ++b) {
        PrefetchSlice(next_group, 16 * sizeof(Block), b);
        Group8 lo, hi;
        G::Unpack(rows, b, &lo);
        G::Unpack(rows + 8, b, &hi);
        Group16 g;
        for (int c = 0; c < 8; ++c) g.u[c] = JoinHalves(lo.u[c], hi.u[c]);
        g.d = JoinHalves(lo.d, hi.d);
        if constexpr (G::kHasMin) g.m = JoinHalves(lo.m, hi.m);
        for (int t = 0; t < nt; ++t) acc[t] = Group16Accumulate<G>(g, a[t][b], acc[t]);
      }
      for (int t = 0; t < nt; ++t) _mm512_storeu_ps(out + (t0 + t) * ldo + r, acc[t]);
    }
  }
  if (full < nr) {  // the last rows in eight-row groups
    TileRowsGroup8<G>(n, static_cast<const char*>(w) + full * rb, rb, nr - full, act, act_stride,
                      ntok, out + full, ldo);
  }
}

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
  k->dot[static_cast<int>(TensorType::kQ4_K)] = DotRowsK512<Q4K512>;
  k->dot[static_cast<int>(TensorType::kQ5_K)] = DotRowsK512<Q5K512>;
  k->dot[static_cast<int>(TensorType::kQ6_K)] = DotRowsK512<Q6K512>;
  k->tile[static_cast<int>(TensorType::kQ8_0)] = TileRowsGroup16<Q8_0Group>;
  k->tile[static_cast<int>(TensorType::kQ4_0)] = TileRowsGroup16<Q4_0Group>;
  k->tile[static_cast<int>(TensorType::kQ5_0)] = TileRowsGroup16<Q5_0Group>;
  k->tile[static_cast<int>(TensorType::kQ4_1)] = TileRowsGroup16<Q4_1Group>;
  k->tile[static_cast<int>(TensorType::kQ5_1)] = TileRowsGroup16<Q5_1Group>;
  k->tile[static_cast<int>(TensorType::kQ2_K)] = TileRowsK<Q2KTraits>;
  k->tile[static_cast<int>(TensorType::kQ3_K)] = TileRowsK<Q3KTraits>;
  k->tile[static_cast<int>(TensorType::kQ4_K)] = TileRowsK512<Q4K512>;
  k->tile[static_cast<int>(TensorType::kQ5_K)] = TileRowsK512<Q5K512>;
  k->tile[static_cast<int>(TensorType::kQ6_K)] = TileRowsK512<Q6K512>;
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
