// Scalar reference kernels: the semantics every SIMD path is tested against. Weight blocks are
// first decoded into int8 quants plus per-group float scale/offset (scalar_decode), so each type's
// bit layout is written once and shared by dequantization and the dot products.
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "engine/internal/scalar_decode.h"
#include "engine/kernels.h"

namespace airlock::engine {

namespace {

const TensorTypeInfo kF32Info{"F32", 1, 4, ActFormat::kF32};
const TensorTypeInfo kF16Info{"F16", 1, 2, ActFormat::kF32};
const TensorTypeInfo kBF16Info{"BF16", 1, 2, ActFormat::kF32};
const TensorTypeInfo kQ4_0Info{"Q4_0", 32, 18, ActFormat::kQ8x32};
const TensorTypeInfo kQ4_1Info{"Q4_1", 32, 20, ActFormat::kQ8x32};
const TensorTypeInfo kQ5_0Info{"Q5_0", 32, 22, ActFormat::kQ8x32};
const TensorTypeInfo kQ5_1Info{"Q5_1", 32, 24, ActFormat::kQ8x32};
const TensorTypeInfo kQ8_0Info{"Q8_0", 32, 34, ActFormat::kQ8x32};
const TensorTypeInfo kQ2_KInfo{"Q2_K", 256, 84, ActFormat::kQ8K};
const TensorTypeInfo kQ3_KInfo{"Q3_K", 256, 110, ActFormat::kQ8K};
const TensorTypeInfo kQ4_KInfo{"Q4_K", 256, 144, ActFormat::kQ8K};
const TensorTypeInfo kQ5_KInfo{"Q5_K", 256, 176, ActFormat::kQ8K};
const TensorTypeInfo kQ6_KInfo{"Q6_K", 256, 210, ActFormat::kQ8K};

// ---- activation quantization ----

void QuantizeF32(const float* x, void* out, std::int64_t n) {
  std::memcpy(out, x, static_cast<std::size_t>(n) * sizeof(float));
}

void QuantizeQ8x32(const float* x, void* out, std::int64_t n) {
  auto* blocks = static_cast<ActQ8x32*>(out);
  for (std::int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const int q = static_cast<int>(std::nearbyint(xb[j] * id));
      blocks[b].qs[j] = static_cast<std::int8_t>(q);
      sum += q;
    }
    blocks[b].d = Fp16ToFp32(Fp32ToFp16(d));
    blocks[b].sum = sum;
  }
}

void QuantizeQ8K(const float* x, void* out, std::int64_t n) {
  auto* blocks = static_cast<ActQ8K*>(out);
  for (std::int64_t b = 0; b < n / kQKK; ++b) {
    const float* xb = x + b * kQKK;
    float amax = 0, max = 0;
    for (int j = 0; j < kQKK; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    ActQ8K& blk = blocks[b];
    if (amax == 0) {
      blk.d = 0;
      std::memset(blk.qs, 0, sizeof(blk.qs));
      std::memset(blk.bsums, 0, sizeof(blk.bsums));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQKK; ++j) {
      int v = static_cast<int>(std::nearbyint(iscale * xb[j]));
      blk.qs[j] = static_cast<std::int8_t>(v > 127 ? 127 : v);
    }
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += blk.qs[g * 16 + j];
      blk.bsums[g] = static_cast<std::int16_t>(s);
    }
    blk.d = 1.0f / iscale;
  }
}

// ---- dot products ----

template <typename Decode>
void DotRows32(std::int64_t n, const void* w, std::size_t row_bytes, int nrows, const void* act,
               float* out, std::size_t block_bytes, Decode decode) {
  const auto* a = static_cast<const ActQ8x32*>(act);
  const std::int64_t nb = n / kQK;
  for (int r = 0; r < nrows; ++r) {
    const auto* row = static_cast<const std::uint8_t*>(w) + r * row_bytes;
    float sum = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      internal::Decoded32 dec;
      decode(row + b * block_bytes, &dec);
      int sumi = 0;
      for (int j = 0; j < kQK; ++j) sumi += dec.q[j] * a[b].qs[j];
      sum += dec.d * a[b].d * static_cast<float>(sumi) +
             dec.m * (a[b].d * static_cast<float>(a[b].sum));
    }
    out[r] = sum;
  }
}

template <typename Decode>
void DotRowsK(std::int64_t n, const void* w, std::size_t row_bytes, int nrows, const void* act,
              float* out, std::size_t block_bytes, Decode decode) {
  const auto* a = static_cast<const ActQ8K*>(act);
  const std::int64_t nb = n / kQKK;
  for (int r = 0; r < nrows; ++r) {
    const auto* row = static_cast<const std::uint8_t*>(w) + r * row_bytes;
    float sum = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      internal::DecodedK dec;
      decode(row + b * block_bytes, &dec);
      float block_sum = 0;
      for (int g = 0; g < 16; ++g) {
        int sumi = 0;
        for (int j = 0; j < 16; ++j) sumi += dec.q[g * 16 + j] * a[b].qs[g * 16 + j];
        block_sum += dec.scale[g] * static_cast<float>(sumi) - dec.min[g] * a[b].bsums[g];
      }
      sum += a[b].d * block_sum;
    }
    out[r] = sum;
  }
}

#define AIRLOCK_DOT32(Name, Decoder, Block)                                                   \
  void Name(std::int64_t n, const void* w, std::size_t rb, int nr, const void* a, float* o) { \
    DotRows32(n, w, rb, nr, a, o, sizeof(Block), internal::Decoder);                          \
  }
#define AIRLOCK_DOTK(Name, Decoder, Block)                                                    \
  void Name(std::int64_t n, const void* w, std::size_t rb, int nr, const void* a, float* o) { \
    DotRowsK(n, w, rb, nr, a, o, sizeof(Block), internal::Decoder);                           \
  }
AIRLOCK_DOT32(DotQ4_0, DecodeQ4_0, BlockQ4_0)
AIRLOCK_DOT32(DotQ4_1, DecodeQ4_1, BlockQ4_1)
AIRLOCK_DOT32(DotQ5_0, DecodeQ5_0, BlockQ5_0)
AIRLOCK_DOT32(DotQ5_1, DecodeQ5_1, BlockQ5_1)
AIRLOCK_DOT32(DotQ8_0, DecodeQ8_0, BlockQ8_0)
AIRLOCK_DOTK(DotQ2_K, DecodeQ2_K, BlockQ2_K)
AIRLOCK_DOTK(DotQ3_K, DecodeQ3_K, BlockQ3_K)
AIRLOCK_DOTK(DotQ4_K, DecodeQ4_K, BlockQ4_K)
AIRLOCK_DOTK(DotQ5_K, DecodeQ5_K, BlockQ5_K)
AIRLOCK_DOTK(DotQ6_K, DecodeQ6_K, BlockQ6_K)
#undef AIRLOCK_DOT32
#undef AIRLOCK_DOTK

void DotF32(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* x = static_cast<const float*>(act);
  for (int r = 0; r < nr; ++r) {
    const float* row = reinterpret_cast<const float*>(static_cast<const char*>(w) + r * rb);
    float sum = 0;
    for (std::int64_t i = 0; i < n; ++i) sum += row[i] * x[i];
    out[r] = sum;
  }
}

template <float (*Convert)(std::uint16_t)>
void DotHalf(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act, float* out) {
  const auto* x = static_cast<const float*>(act);
  for (int r = 0; r < nr; ++r) {
    const auto* row = reinterpret_cast<const std::uint16_t*>(static_cast<const char*>(w) + r * rb);
    float sum = 0;
    for (std::int64_t i = 0; i < n; ++i) sum += Convert(row[i]) * x[i];
    out[r] = sum;
  }
}

// ---- attention tiles (queries in lanes; see kernels.h) ----

template <TensorType kType>
void KvToFloat(std::int64_t n, const void* row, float* out) {
  DequantizeRow(kType, row, out, n);
}

void AttnScores(int nk, std::int64_t dim, const float* k, std::int64_t ldk, const float* qt, int nq,
                std::int64_t ld, float* s) {
  for (int j = 0; j < nk; ++j) {
    float* sj = s + j * ld;
    for (int q = 0; q < nq; ++q) sj[q] = 0;
    for (std::int64_t d = 0; d < dim; ++d) {
      const float kd = k[j * ldk + d];
      const float* qd = qt + d * ld;
      for (int q = 0; q < nq; ++q) sj[q] += kd * qd[q];
    }
  }
}

void AttnSoftmax(int nk, const int* lim, int nq, std::int64_t ld, float* s, float* m, float* l,
                 float* corr) {
  for (int q = 0; q < nq; ++q) {
    float mx = m[q];
    for (int j = 0; j < lim[q]; ++j) mx = std::fmax(mx, s[j * ld + q]);
    corr[q] = mx == m[q] ? 1.0f : std::exp(m[q] - mx);
    float sum = 0;
    for (int j = 0; j < nk; ++j) {
      float& v = s[j * ld + q];
      v = j < lim[q] ? std::exp(v - mx) : 0.0f;
      sum += v;
    }
    l[q] = l[q] * corr[q] + sum;
    m[q] = mx;
  }
}

void AttnAccumulate(int nk, std::int64_t dv, const float* v, std::int64_t ldv, const float* p,
                    const float* corr, int nq, std::int64_t ld, float* ot) {
  for (std::int64_t e = 0; e < dv; ++e) {
    float* oe = ot + e * ld;
    for (int q = 0; q < nq; ++q) oe[q] *= corr[q];
    for (int j = 0; j < nk; ++j) {
      const float ve = v[j * ldv + e];
      const float* pj = p + j * ld;
      for (int q = 0; q < nq; ++q) oe[q] += ve * pj[q];
    }
  }
}

inline float ValueToFloat(float x) { return x; }
inline float ValueToFloat(std::uint16_t h) { return Fp16ToFp32(h); }

template <typename T>
void AttnAccumulateRows(int nk, std::int64_t dv, const T* v, std::int64_t ldv, const float* p,
                        std::int64_t ld, const float* corr, int nq, float* o, std::int64_t ldo) {
  for (int q = 0; q < nq; ++q) {
    float* oq = o + q * ldo;
    for (std::int64_t e = 0; e < dv; ++e) oq[e] *= corr[q];
    for (int j = 0; j < nk; ++j) {
      const float pj = p[j * ld + q];
      const T* vj = v + j * ldv;
      for (std::int64_t e = 0; e < dv; ++e) oq[e] += pj * ValueToFloat(vj[e]);
    }
  }
}

Kernels MakeScalarKernels() {
  Kernels k;
  k.name = "scalar";
  k.kv_to_float[static_cast<int>(TensorType::kF32)] = KvToFloat<TensorType::kF32>;
  k.kv_to_float[static_cast<int>(TensorType::kF16)] = KvToFloat<TensorType::kF16>;
  k.kv_to_float[static_cast<int>(TensorType::kQ8_0)] = KvToFloat<TensorType::kQ8_0>;
  k.attn_scores = AttnScores;
  k.attn_softmax = AttnSoftmax;
  k.attn_accumulate = AttnAccumulate;
  k.attn_accumulate_rows = AttnAccumulateRows<float>;
  k.attn_accumulate_rows_f16 = AttnAccumulateRows<std::uint16_t>;
  k.dot[static_cast<int>(TensorType::kF32)] = DotF32;
  k.dot[static_cast<int>(TensorType::kF16)] = DotHalf<Fp16ToFp32>;
  k.dot[static_cast<int>(TensorType::kBF16)] = DotHalf<Bf16ToFp32>;
  k.dot[static_cast<int>(TensorType::kQ4_0)] = DotQ4_0;
  k.dot[static_cast<int>(TensorType::kQ4_1)] = DotQ4_1;
  k.dot[static_cast<int>(TensorType::kQ5_0)] = DotQ5_0;
  k.dot[static_cast<int>(TensorType::kQ5_1)] = DotQ5_1;
  k.dot[static_cast<int>(TensorType::kQ8_0)] = DotQ8_0;
  k.dot[static_cast<int>(TensorType::kQ2_K)] = DotQ2_K;
  k.dot[static_cast<int>(TensorType::kQ3_K)] = DotQ3_K;
  k.dot[static_cast<int>(TensorType::kQ4_K)] = DotQ4_K;
  k.dot[static_cast<int>(TensorType::kQ5_K)] = DotQ5_K;
  k.dot[static_cast<int>(TensorType::kQ6_K)] = DotQ6_K;
  k.quantize[static_cast<int>(ActFormat::kF32)] = QuantizeF32;
  k.quantize[static_cast<int>(ActFormat::kQ8x32)] = QuantizeQ8x32;
  k.quantize[static_cast<int>(ActFormat::kQ8K)] = QuantizeQ8K;
  return k;
}

template <TensorType kType>
void DotDequantized(std::int64_t n, const void* w, std::size_t rb, int nr, const void* act,
                    float* out) {
  const auto* x = static_cast<const float*>(act);
  const TensorTypeInfo* info = GetTensorTypeInfo(static_cast<std::uint32_t>(kType));
  float buf[kQKK];
  for (int r = 0; r < nr; ++r) {
    const auto* row = static_cast<const std::uint8_t*>(w) + r * rb;
    double sum = 0;
    for (std::int64_t i = 0; i < n; i += kQKK) {
      const std::int64_t len = n - i < kQKK ? n - i : kQKK;
      DequantizeRow(kType, row + i / info->block_elems * info->block_bytes, buf, len);
      for (std::int64_t j = 0; j < len; ++j) sum += static_cast<double>(buf[j]) * x[i + j];
    }
    out[r] = static_cast<float>(sum);
  }
}

Kernels MakeExactKernels() {
  Kernels k = MakeScalarKernels();
  k.name = "exact";
  k.float_activations = true;
#define AIRLOCK_EXACT(T) k.dot[static_cast<int>(TensorType::T)] = DotDequantized<TensorType::T>
  AIRLOCK_EXACT(kF32);
  AIRLOCK_EXACT(kF16);
  AIRLOCK_EXACT(kBF16);
  AIRLOCK_EXACT(kQ4_0);
  AIRLOCK_EXACT(kQ4_1);
  AIRLOCK_EXACT(kQ5_0);
  AIRLOCK_EXACT(kQ5_1);
  AIRLOCK_EXACT(kQ8_0);
  AIRLOCK_EXACT(kQ2_K);
  AIRLOCK_EXACT(kQ3_K);
  AIRLOCK_EXACT(kQ4_K);
  AIRLOCK_EXACT(kQ5_K);
  AIRLOCK_EXACT(kQ6_K);
#undef AIRLOCK_EXACT
  return k;
}

}  // namespace

const Kernels& ExactKernels() {
  static const Kernels k = MakeExactKernels();
  return k;
}

const TensorTypeInfo* GetTensorTypeInfo(std::uint32_t type_id) {
  switch (static_cast<TensorType>(type_id)) {
    case TensorType::kF32:
      return &kF32Info;
    case TensorType::kF16:
      return &kF16Info;
    case TensorType::kBF16:
      return &kBF16Info;
    case TensorType::kQ4_0:
      return &kQ4_0Info;
    case TensorType::kQ4_1:
      return &kQ4_1Info;
    case TensorType::kQ5_0:
      return &kQ5_0Info;
    case TensorType::kQ5_1:
      return &kQ5_1Info;
    case TensorType::kQ8_0:
      return &kQ8_0Info;
    case TensorType::kQ2_K:
      return &kQ2_KInfo;
    case TensorType::kQ3_K:
      return &kQ3_KInfo;
    case TensorType::kQ4_K:
      return &kQ4_KInfo;
    case TensorType::kQ5_K:
      return &kQ5_KInfo;
    case TensorType::kQ6_K:
      return &kQ6_KInfo;
    default:  // a type the parser knows but the engine does not compute with
      break;
  }
  return nullptr;
}

std::size_t ActRowBytes(ActFormat format, std::int64_t n) {
  switch (format) {
    case ActFormat::kF32:
      return static_cast<std::size_t>(n) * sizeof(float);
    case ActFormat::kQ8x32:
      return static_cast<std::size_t>(n / kQK) * sizeof(ActQ8x32);
    case ActFormat::kQ8K:
      return static_cast<std::size_t>(n / kQKK) * sizeof(ActQ8K);
  }
  return 0;
}

float Fp16ToFp32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ff;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | static_cast<std::uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 112) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint16_t Fp32ToFp16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000;
  const std::uint32_t abs = x & 0x7fffffff;
  if (abs >= 0x7f800000)
    return static_cast<std::uint16_t>(sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0));
  if (abs >= 0x477ff000) return static_cast<std::uint16_t>(sign | 0x7c00);  // rounds to inf
  if (abs < 0x38800000) {  // result is subnormal or zero
    if (abs < 0x33000000) return static_cast<std::uint16_t>(sign);
    const std::uint32_t e = abs >> 23;
    const std::uint32_t mant = (abs & 0x7fffff) | 0x800000;
    const std::uint32_t shift = 126 - e;  // 14 + (113 - e) - 1
    std::uint32_t v = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (v & 1))) ++v;
    return static_cast<std::uint16_t>(sign | v);
  }
  std::uint32_t v = ((abs >> 23) - 112) << 10 | ((abs >> 13) & 0x3ff);
  const std::uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (v & 1))) ++v;
  return static_cast<std::uint16_t>(sign | v);
}

float Bf16ToFp32(std::uint16_t h) {
  const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint16_t Fp32ToBf16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<std::uint16_t>((x >> 16) | 64);  // NaN
  return static_cast<std::uint16_t>((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

void QuantizeRowQ8_0(const float* src, void* dst, std::int64_t n) {
  auto* blocks = static_cast<BlockQ8_0*>(dst);
  for (std::int64_t b = 0; b < n / kQK; ++b) {
    const float* x = src + b * kQK;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    blocks[b].d = Fp32ToFp16(d);
    for (int j = 0; j < kQK; ++j) blocks[b].qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
  }
}

void DequantizeRow(TensorType type, const void* src, float* dst, std::int64_t n) {
  const auto* p = static_cast<const std::uint8_t*>(src);
  switch (type) {
    case TensorType::kF32:
      std::memcpy(dst, src, static_cast<std::size_t>(n) * 4);
      return;
    case TensorType::kF16:
    case TensorType::kBF16: {
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = type == TensorType::kF16 ? Fp16ToFp32(h) : Bf16ToFp32(h);
      }
      return;
    }
    default:
      break;
  }
  const TensorTypeInfo* info = GetTensorTypeInfo(static_cast<std::uint32_t>(type));
  if (info == nullptr) std::abort();
  const std::int64_t nb = n / info->block_elems;
  for (std::int64_t b = 0; b < nb; ++b) {
    const std::uint8_t* blk = p + b * info->block_bytes;
    float* y = dst + b * info->block_elems;
    if (info->block_elems == kQK) {
      internal::Decoded32 dec;
      internal::Decode32(type, blk, &dec);
      for (int j = 0; j < kQK; ++j) y[j] = dec.d * dec.q[j] + dec.m;
    } else {
      internal::DecodedK dec;
      internal::DecodeK(type, blk, &dec);
      for (int j = 0; j < kQKK; ++j) y[j] = dec.scale[j / 16] * dec.q[j] - dec.min[j / 16];
    }
  }
}

const Kernels& ScalarKernels() {
  static const Kernels k = MakeScalarKernels();
  return k;
}

}  // namespace airlock::engine
