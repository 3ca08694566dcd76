// ARM NEON (AArch64 Advanced SIMD) kernels: dot products for every weight type, tiles for the
// integer quants, and the activation quantizers (byte-identical to the scalar ones). The table
// needs only baseline ARMv8-A, which every AArch64 CPU has; the integer kernels also come in an
// ARMv8.2 dotprod variant (vdotq_s32), compiled for that extension in a target region and chosen
// only when the CPU reports it (Linux: AT_HWCAP & HWCAP_ASIMDDP; macOS: sysctl). They are written
// once in internal/kernels_neon.inc and instantiated for both. Elsewhere this file compiles to
// stubs (NeonCompiled() returns false), as the x86 kernel files do on ARM.
#include "engine/kernels.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "engine/internal/scalar_decode.h"

#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace airlock::engine {
namespace {

inline float HalfToFloat(std::uint16_t h) {
  __fp16 f;
  std::memcpy(&f, &h, sizeof(f));
  return f;
}

// 32 quants as two vectors of 16: elements 0-15, then 16-31.
struct Quants32 {
  int8x16_t lo, hi;
};

inline Quants32 LoadQ8(const std::int8_t* qs) { return {vld1q_s8(qs), vld1q_s8(qs + 16)}; }

// 16 bytes of packed nibbles -> low nibbles (elements 0-15), high nibbles (16-31), minus `offset`.
inline Quants32 UnpackQ4(const std::uint8_t* qs, int offset) {
  const uint8x16_t p = vld1q_u8(qs);
  const int8x16_t off = vdupq_n_s8(static_cast<std::int8_t>(offset));
  return {vsubq_s8(vreinterpretq_s8_u8(vandq_u8(p, vdupq_n_u8(0x0f))), off),
          vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(p, 4)), off)};
}

// As UnpackQ4, with bit j of the 32-bit little-endian `qh` as the fifth bit of element j.
inline Quants32 UnpackQ5(const std::uint8_t* qs, const std::uint8_t* qh_bytes, int offset) {
  std::uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  // Spread byte k of qh over 8 lanes, then test one bit per lane.
  const uint8x16_t src = vreinterpretq_u8_u32(vdupq_n_u32(qh));
  const uint8x16_t select = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ULL));
  const uint8x16_t bit4 = vdupq_n_u8(0x10);
  const uint8x16_t h_lo =
      vtstq_u8(vqtbl1q_u8(src, vcombine_u8(vdup_n_u8(0), vdup_n_u8(1))), select);
  const uint8x16_t h_hi =
      vtstq_u8(vqtbl1q_u8(src, vcombine_u8(vdup_n_u8(2), vdup_n_u8(3))), select);
  const uint8x16_t p = vld1q_u8(qs);
  const uint8x16_t lo = vorrq_u8(vandq_u8(p, vdupq_n_u8(0x0f)), vandq_u8(h_lo, bit4));
  const uint8x16_t hi = vorrq_u8(vshrq_n_u8(p, 4), vandq_u8(h_hi, bit4));
  const int8x16_t off = vdupq_n_s8(static_cast<std::int8_t>(offset));
  return {vsubq_s8(vreinterpretq_s8_u8(lo), off), vsubq_s8(vreinterpretq_s8_u8(hi), off)};
}

// A K-quant super-block unpacked into 16 groups of 16 quants:
// value[j] = d * scale[j / 16] * q[j] - dmin * min[j / 16].
struct KQuants {
  int8x16_t q[16];
  int scale[16];
  std::int16_t min[16];
  float d, dmin;
};

inline uint8x16_t ShiftRight(uint8x16_t v, int bits) {
  return vshlq_u8(v, vdupq_n_s8(static_cast<std::int8_t>(-bits)));
}

// Q2_K: 2-bit quants; a 4-bit scale and a 4-bit min per group of 16.
inline void DecodeQ2_K(const BlockQ2_K& x, KQuants* k) {
  for (int g = 0; g < 16; ++g) {
    k->scale[g] = x.scales[g] & 0xf;
    k->min[g] = static_cast<std::int16_t>(x.scales[g] >> 4);
  }
  const uint8x16_t m3 = vdupq_n_u8(3);
  for (int half = 0; half < 2; ++half) {
    for (int i = 0; i < 2; ++i) {
      const uint8x16_t p = vld1q_u8(x.qs + 32 * half + 16 * i);
      for (int shift = 0; shift < 4; ++shift) {
        k->q[half * 8 + shift * 2 + i] =
            vreinterpretq_s8_u8(vandq_u8(ShiftRight(p, 2 * shift), m3));
      }
    }
  }
  k->d = HalfToFloat(x.d);
  k->dmin = HalfToFloat(x.dmin);
}

// Q3_K: 2 low bits plus a high bit (clear = subtract 4); 16 signed 6-bit scales, no mins.
inline void DecodeQ3_K(const BlockQ3_K& x, KQuants* k) {
  internal::UnpackQ3Scales(x.scales, k->scale);
  const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
  const uint8x16_t hmask[2] = {vld1q_u8(x.hmask), vld1q_u8(x.hmask + 16)};
  for (int half = 0; half < 2; ++half) {
    for (int i = 0; i < 2; ++i) {
      const uint8x16_t p = vld1q_u8(x.qs + 32 * half + 16 * i);
      for (int shift = 0; shift < 4; ++shift) {
        const uint8x16_t low = vandq_u8(ShiftRight(p, 2 * shift), m3);
        const uint8x16_t bit = vdupq_n_u8(static_cast<std::uint8_t>(1 << (half * 4 + shift)));
        const uint8x16_t sub = vbicq_u8(four, vtstq_u8(hmask[i], bit));
        k->q[half * 8 + shift * 2 + i] =
            vsubq_s8(vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(sub));
      }
    }
  }
  k->d = HalfToFloat(x.d);
  k->dmin = 0;
}

// Q4_K and Q5_K: 8 groups of 32 with 6-bit scales and mins; Q5_K adds a fifth bit from qh.
template <bool kFifthBit, typename Block>
inline void DecodeQ45_K(const Block& x, KQuants* k) {
  for (int s = 0; s < 8; ++s) {
    int sc, mn;
    internal::ScaleMinK4(s, x.scales, &sc, &mn);
    k->scale[2 * s] = k->scale[2 * s + 1] = sc;
    k->min[2 * s] = k->min[2 * s + 1] = static_cast<std::int16_t>(mn);
  }
  const uint8x16_t m4 = vdupq_n_u8(0x0f), b4 = vdupq_n_u8(0x10);
  uint8x16_t h0 = vdupq_n_u8(0), h1 = vdupq_n_u8(0);
  if constexpr (kFifthBit) {
    h0 = vld1q_u8(x.qh);
    h1 = vld1q_u8(x.qh + 16);
  }
  for (int c = 0; c < 4; ++c) {
    const uint8x16_t p0 = vld1q_u8(x.qs + 32 * c), p1 = vld1q_u8(x.qs + 32 * c + 16);
    uint8x16_t lo0 = vandq_u8(p0, m4), lo1 = vandq_u8(p1, m4);
    uint8x16_t hi0 = vshrq_n_u8(p0, 4), hi1 = vshrq_n_u8(p1, 4);
    if constexpr (kFifthBit) {
      const uint8x16_t bit_lo = vdupq_n_u8(static_cast<std::uint8_t>(1 << (2 * c)));
      const uint8x16_t bit_hi = vdupq_n_u8(static_cast<std::uint8_t>(2 << (2 * c)));
      lo0 = vorrq_u8(lo0, vandq_u8(vtstq_u8(h0, bit_lo), b4));
      lo1 = vorrq_u8(lo1, vandq_u8(vtstq_u8(h1, bit_lo), b4));
      hi0 = vorrq_u8(hi0, vandq_u8(vtstq_u8(h0, bit_hi), b4));
      hi1 = vorrq_u8(hi1, vandq_u8(vtstq_u8(h1, bit_hi), b4));
    }
    k->q[4 * c] = vreinterpretq_s8_u8(lo0);
    k->q[4 * c + 1] = vreinterpretq_s8_u8(lo1);
    k->q[4 * c + 2] = vreinterpretq_s8_u8(hi0);
    k->q[4 * c + 3] = vreinterpretq_s8_u8(hi1);
  }
  k->d = HalfToFloat(x.d);
  k->dmin = HalfToFloat(x.dmin);
}
inline void DecodeQ4_K(const BlockQ4_K& x, KQuants* k) { DecodeQ45_K<false>(x, k); }
inline void DecodeQ5_K(const BlockQ5_K& x, KQuants* k) { DecodeQ45_K<true>(x, k); }

// Q6_K: 4 low bits in ql, 2 high bits in qh, stored +32; 16 int8 group scales, no mins.
inline void DecodeQ6_K(const BlockQ6_K& x, KQuants* k) {
  const uint8x16_t m4 = vdupq_n_u8(0x0f), m3 = vdupq_n_u8(0x03), mc = vdupq_n_u8(0x0c),
                   m30 = vdupq_n_u8(0x30), mc0 = vdupq_n_u8(0xc0);
  const int8x16_t offset = vdupq_n_s8(32);
  for (int g = 0; g < 16; ++g) k->scale[g] = x.scales[g];
  for (int half = 0; half < 2; ++half) {
    const std::uint8_t* ql = x.ql + 64 * half;
    const std::uint8_t* qh = x.qh + 32 * half;
    int8x16_t* q = k->q + 8 * half;
    for (int i = 0; i < 2; ++i) {
      const uint8x16_t la = vld1q_u8(ql + 16 * i), lb = vld1q_u8(ql + 32 + 16 * i);
      const uint8x16_t h = vld1q_u8(qh + 16 * i);
      const uint8x16_t q0 = vorrq_u8(vandq_u8(la, m4), vshlq_n_u8(vandq_u8(h, m3), 4));
      const uint8x16_t q1 = vorrq_u8(vandq_u8(lb, m4), vshlq_n_u8(vandq_u8(h, mc), 2));
      const uint8x16_t q2 = vorrq_u8(vshrq_n_u8(la, 4), vandq_u8(h, m30));
      const uint8x16_t q3 = vorrq_u8(vshrq_n_u8(lb, 4), vshrq_n_u8(vandq_u8(h, mc0), 2));
      q[i] = vsubq_s8(vreinterpretq_s8_u8(q0), offset);
      q[2 + i] = vsubq_s8(vreinterpretq_s8_u8(q1), offset);
      q[4 + i] = vsubq_s8(vreinterpretq_s8_u8(q2), offset);
      q[6 + i] = vsubq_s8(vreinterpretq_s8_u8(q3), offset);
    }
  }
  k->d = HalfToFloat(x.d);
  k->dmin = 0;
}

// ---- float weights (F32, F16, BF16) with float activations ----

void DotF32(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* x = static_cast<const float*>(act);
  for (int r = 0; r < nr; ++r) {
    const float* row = reinterpret_cast<const float*>(static_cast<const char*>(w) + r * rb);
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0), acc2 = vdupq_n_f32(0),
                acc3 = vdupq_n_f32(0);
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      acc0 = vfmaq_f32(acc0, vld1q_f32(row + i), vld1q_f32(x + i));
      acc1 = vfmaq_f32(acc1, vld1q_f32(row + i + 4), vld1q_f32(x + i + 4));
      acc2 = vfmaq_f32(acc2, vld1q_f32(row + i + 8), vld1q_f32(x + i + 8));
      acc3 = vfmaq_f32(acc3, vld1q_f32(row + i + 12), vld1q_f32(x + i + 12));
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
    for (; i < n; ++i) sum += row[i] * x[i];
    out[r] = sum;
  }
}

template <bool kBf16>
void DotHalf(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* x = static_cast<const float*>(act);
  for (int r = 0; r < nr; ++r) {
    const auto* row = reinterpret_cast<const std::uint16_t*>(static_cast<const char*>(w) + r * rb);
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const uint16x8_t h = vld1q_u16(row + i);
      float32x4_t w0, w1;
      if constexpr (kBf16) {  // bf16 is the top half of an f32
        w0 = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
        w1 = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
      } else {
        w0 = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h)));
        w1 = vcvt_high_f32_f16(vreinterpretq_f16_u16(h));
      }
      acc0 = vfmaq_f32(acc0, w0, vld1q_f32(x + i));
      acc1 = vfmaq_f32(acc1, w1, vld1q_f32(x + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; ++i) sum += (kBf16 ? Bf16ToFp32(row[i]) : HalfToFloat(row[i])) * x[i];
    out[r] = sum;
  }
}

// ---- activation quantizers: bit-identical to the scalar ones (same float operations; the
// max ignores NaN like std::fmax, and vcvtnq rounds to nearest even like std::nearbyint) ----

// Four float vectors (16 values) -> 16 int8 (values are within [-127, 127] here).
inline int8x16_t RoundToInt8(const float* x, float scale) {
  const int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x), scale));
  const int32x4_t q1 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4), scale));
  const int32x4_t q2 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8), scale));
  const int32x4_t q3 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 12), scale));
  const int16x8_t lo = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
  const int16x8_t hi = vcombine_s16(vqmovn_s32(q2), vqmovn_s32(q3));
  return vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
}

inline float AbsMax(const float* x, int count) {
  float32x4_t m = vdupq_n_f32(0);
  for (int j = 0; j < count; j += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + j)));
  return vmaxnmvq_f32(m);
}

void QuantizeF32(const float* x, void* out, std::int64_t n) {
  std::memcpy(out, x, static_cast<std::size_t>(n) * sizeof(float));
}

void QuantizeQ8x32(const float* x, void* out, std::int64_t n) {
  auto* blocks = static_cast<ActQ8x32*>(out);
  for (std::int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    const float amax = AbsMax(xb, kQK);
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const int8x16_t q0 = RoundToInt8(xb, id), q1 = RoundToInt8(xb + 16, id);
    vst1q_s8(blocks[b].qs, q0);
    vst1q_s8(blocks[b].qs + 16, q1);
    blocks[b].d = Fp16ToFp32(Fp32ToFp16(d));
    blocks[b].sum = vaddlvq_s8(q0) + vaddlvq_s8(q1);
  }
}

void QuantizeQ8K(const float* x, void* out, std::int64_t n) {
  auto* blocks = static_cast<ActQ8K*>(out);
  for (std::int64_t b = 0; b < n / kQKK; ++b) {
    const float* xb = x + b * kQKK;
    ActQ8K& blk = blocks[b];
    const float amax = AbsMax(xb, kQKK);
    if (!(amax > 0)) {  // the scalar loop only moves off zero for a strictly larger |x|
      blk.d = 0;
      std::memset(blk.qs, 0, sizeof(blk.qs));
      std::memset(blk.bsums, 0, sizeof(blk.bsums));
      continue;
    }
    float max = 0;  // the first element of largest magnitude, with its sign
    for (int j = 0; j < kQKK; ++j) {
      if (std::fabs(xb[j]) == amax) {
        max = xb[j];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const int8x16_t cap = vdupq_n_s8(127);
    for (int g = 0; g < 16; ++g) {
      const int8x16_t q = vminq_s8(RoundToInt8(xb + 16 * g, iscale), cap);
      vst1q_s8(blk.qs + 16 * g, q);
      blk.bsums[g] = vaddlvq_s8(q);
    }
    blk.d = 1.0f / iscale;
  }
}

// Baseline ARMv8-A integer kernels.
namespace base {
#define AIRLOCK_NEON_DOTPROD 0
#include "engine/internal/kernels_neon.inc"
#undef AIRLOCK_NEON_DOTPROD
}  // namespace base

// The same kernels with vdotq_s32 (ARMv8.2 dotprod), called only when the CPU has it. GCC's
// arm_neon.h declares the intrinsic for functions in a dotprod target region; clang 14's only
// when the whole file is compiled for dotprod, so with clang the variant needs -march=...+dotprod.
#if defined(__ARM_FEATURE_DOTPROD) || !defined(__clang__)
#define AIRLOCK_NEON_HAVE_DOTPROD 1
#if !defined(__ARM_FEATURE_DOTPROD)
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
namespace dot {
#define AIRLOCK_NEON_DOTPROD 1
#include "engine/internal/kernels_neon.inc"
#undef AIRLOCK_NEON_DOTPROD
}  // namespace dot
#if !defined(__ARM_FEATURE_DOTPROD)
#pragma GCC pop_options
#endif
#else
#define AIRLOCK_NEON_HAVE_DOTPROD 0
namespace dot = base;
#endif

bool DetectDotprod() {
#if !AIRLOCK_NEON_HAVE_DOTPROD
  return false;
#elif defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
  int value = 0;
  std::size_t size = sizeof(value);
  return sysctlbyname("hw.optional.arm.FEAT_DotProd", &value, &size, nullptr, 0) == 0 && value != 0;
#else
  return false;
#endif
}

}  // namespace

namespace internal {
bool NeonCompiled() { return true; }
bool NeonDotprodSupported() {
  static const bool supported = DetectDotprod();
  return supported;
}
void FillNeonKernels(Kernels* k, bool use_dotprod) {
  use_dotprod = use_dotprod && AIRLOCK_NEON_HAVE_DOTPROD;
  k->name = use_dotprod ? "neon-dotprod" : "neon";
  k->dot[static_cast<int>(TensorType::kF32)] = DotF32;
  k->dot[static_cast<int>(TensorType::kF16)] = DotHalf<false>;
  k->dot[static_cast<int>(TensorType::kBF16)] = DotHalf<true>;
  if (use_dotprod) {
    dot::FillQuantDots(k);
  } else {
    base::FillQuantDots(k);
  }
  k->quantize[static_cast<int>(ActFormat::kF32)] = QuantizeF32;
  k->quantize[static_cast<int>(ActFormat::kQ8x32)] = QuantizeQ8x32;
  k->quantize[static_cast<int>(ActFormat::kQ8K)] = QuantizeQ8K;
}
}  // namespace internal
}  // namespace airlock::engine

#else  // not AArch64

namespace airlock::engine::internal {
bool NeonCompiled() { return false; }
bool NeonDotprodSupported() { return false; }
void FillNeonKernels(Kernels*, bool) {}
}  // namespace airlock::engine::internal

#endif
