// Scalar decoders of ggml weight blocks into int8 quants plus float scale/offset, shared by the
// reference dequantization and the reference dot products (kernels_scalar.cc) and by the tests.
// Functions have internal linkage so that ISA-specific translation units cannot merge them.
#pragma once

#include <cstdint>
#include <cstring>

#include "engine/kernels.h"

namespace airlock::engine::internal {

// value[j] = d * q[j] + m
struct Decoded32 {
  std::int8_t q[32];
  float d;
  float m;
};
// value[j] = scale[j / 16] * q[j] - min[j / 16]
struct DecodedK {
  std::int8_t q[256];
  float scale[16];
  float min[16];
};

template <typename Block>
static inline Block LoadBlock(const void* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}

static inline void DecodeQ4_0(const void* p, Decoded32* out) {
  const auto b = LoadBlock<BlockQ4_0>(p);
  for (int j = 0; j < 16; ++j) {
    out->q[j] = static_cast<std::int8_t>((b.qs[j] & 0xf) - 8);
    out->q[j + 16] = static_cast<std::int8_t>((b.qs[j] >> 4) - 8);
  }
  out->d = Fp16ToFp32(b.d);
  out->m = 0;
}

static inline void DecodeQ4_1(const void* p, Decoded32* out) {
  const auto b = LoadBlock<BlockQ4_1>(p);
  for (int j = 0; j < 16; ++j) {
    out->q[j] = static_cast<std::int8_t>(b.qs[j] & 0xf);
    out->q[j + 16] = static_cast<std::int8_t>(b.qs[j] >> 4);
  }
  out->d = Fp16ToFp32(b.d);
  out->m = Fp16ToFp32(b.m);
}

static inline void Decode5Bit(const std::uint8_t* qs, const std::uint8_t* qh_bytes, int offset,
                              Decoded32* out) {
  std::uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  for (int j = 0; j < 16; ++j) {
    const int h0 = (qh >> j) & 1;
    const int h1 = (qh >> (j + 16)) & 1;
    out->q[j] = static_cast<std::int8_t>(((qs[j] & 0xf) | h0 << 4) - offset);
    out->q[j + 16] = static_cast<std::int8_t>(((qs[j] >> 4) | h1 << 4) - offset);
  }
}

static inline void DecodeQ5_0(const void* p, Decoded32* out) {
  const auto b = LoadBlock<BlockQ5_0>(p);
  Decode5Bit(b.qs, b.qh, 16, out);
  out->d = Fp16ToFp32(b.d);
  out->m = 0;
}

static inline void DecodeQ5_1(const void* p, Decoded32* out) {
  const auto b = LoadBlock<BlockQ5_1>(p);
  Decode5Bit(b.qs, b.qh, 0, out);
  out->d = Fp16ToFp32(b.d);
  out->m = Fp16ToFp32(b.m);
}

static inline void DecodeQ8_0(const void* p, Decoded32* out) {
  const auto b = LoadBlock<BlockQ8_0>(p);
  std::memcpy(out->q, b.qs, 32);
  out->d = Fp16ToFp32(b.d);
  out->m = 0;
}

static inline void DecodeQ2_K(const void* p, DecodedK* out) {
  const auto b = LoadBlock<BlockQ2_K>(p);
  const float d = Fp16ToFp32(b.d), dmin = Fp16ToFp32(b.dmin);
  for (int g = 0; g < 16; ++g) {
    out->scale[g] = d * (b.scales[g] & 0xf);
    out->min[g] = dmin * (b.scales[g] >> 4);
  }
  // Element order: two halves of 128; in each, 4 shifts over 32 bytes, 32 elements per shift.
  for (int half = 0; half < 2; ++half) {
    for (int shift = 0; shift < 4; ++shift) {
      for (int l = 0; l < 32; ++l) {
        out->q[half * 128 + shift * 32 + l] =
            static_cast<std::int8_t>((b.qs[half * 32 + l] >> (2 * shift)) & 3);
      }
    }
  }
}

// 16 6-bit scales packed in 12 bytes: low 4 bits in bytes 0-7, high 2 bits in bytes 8-11.
static inline void UnpackQ3Scales(const std::uint8_t* packed, int* scales) {
  for (int g = 0; g < 16; ++g) {
    const int low = g < 8 ? (packed[g] & 0xf) : (packed[g - 8] >> 4);
    const int high = (packed[8 + (g % 4)] >> (2 * (g / 4))) & 3;
    scales[g] = (low | high << 4) - 32;
  }
}

static inline void DecodeQ3_K(const void* p, DecodedK* out) {
  const auto b = LoadBlock<BlockQ3_K>(p);
  const float d = Fp16ToFp32(b.d);
  int scales[16];
  UnpackQ3Scales(b.scales, scales);
  for (int g = 0; g < 16; ++g) {
    out->scale[g] = d * scales[g];
    out->min[g] = 0;
  }
  for (int half = 0; half < 2; ++half) {
    for (int shift = 0; shift < 4; ++shift) {
      const int mask = 1 << (half * 4 + shift);
      for (int l = 0; l < 32; ++l) {
        const int low = (b.qs[half * 32 + l] >> (2 * shift)) & 3;
        const int sub = (b.hmask[l] & mask) ? 0 : 4;
        out->q[half * 128 + shift * 32 + l] = static_cast<std::int8_t>(low - sub);
      }
    }
  }
}

// 8 (scale, min) pairs of 6 bits packed in 12 bytes (ggml's get_scale_min_k4).
static inline void ScaleMinK4(int j, const std::uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

static inline void DecodeQ4_K(const void* p, DecodedK* out) {
  const auto b = LoadBlock<BlockQ4_K>(p);
  const float d = Fp16ToFp32(b.d), dmin = Fp16ToFp32(b.dmin);
  for (int s = 0; s < 8; ++s) {
    int sc, m;
    ScaleMinK4(s, b.scales, &sc, &m);
    out->scale[2 * s] = out->scale[2 * s + 1] = d * sc;
    out->min[2 * s] = out->min[2 * s + 1] = dmin * m;
  }
  for (int chunk = 0; chunk < 4; ++chunk) {
    for (int l = 0; l < 32; ++l) {
      out->q[chunk * 64 + l] = static_cast<std::int8_t>(b.qs[chunk * 32 + l] & 0xf);
      out->q[chunk * 64 + 32 + l] = static_cast<std::int8_t>(b.qs[chunk * 32 + l] >> 4);
    }
  }
}

static inline void DecodeQ5_K(const void* p, DecodedK* out) {
  const auto b = LoadBlock<BlockQ5_K>(p);
  const float d = Fp16ToFp32(b.d), dmin = Fp16ToFp32(b.dmin);
  for (int s = 0; s < 8; ++s) {
    int sc, m;
    ScaleMinK4(s, b.scales, &sc, &m);
    out->scale[2 * s] = out->scale[2 * s + 1] = d * sc;
    out->min[2 * s] = out->min[2 * s + 1] = dmin * m;
  }
  for (int chunk = 0; chunk < 4; ++chunk) {
    for (int l = 0; l < 32; ++l) {
      const int h0 = (b.qh[l] >> (2 * chunk)) & 1;
      const int h1 = (b.qh[l] >> (2 * chunk + 1)) & 1;
      out->q[chunk * 64 + l] = static_cast<std::int8_t>((b.qs[chunk * 32 + l] & 0xf) | h0 << 4);
      out->q[chunk * 64 + 32 + l] = static_cast<std::int8_t>((b.qs[chunk * 32 + l] >> 4) | h1 << 4);
    }
  }
}

static inline void DecodeQ6_K(const void* p, DecodedK* out) {
  const auto b = LoadBlock<BlockQ6_K>(p);
  const float d = Fp16ToFp32(b.d);
  for (int g = 0; g < 16; ++g) {
    out->scale[g] = d * b.scales[g];
    out->min[g] = 0;
  }
  for (int half = 0; half < 2; ++half) {
    const std::uint8_t* ql = b.ql + half * 64;
    const std::uint8_t* qh = b.qh + half * 32;
    std::int8_t* q = out->q + half * 128;
    for (int l = 0; l < 32; ++l) {
      q[l] = static_cast<std::int8_t>(((ql[l] & 0xf) | ((qh[l] >> 0) & 3) << 4) - 32);
      q[l + 32] = static_cast<std::int8_t>(((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) - 32);
      q[l + 64] = static_cast<std::int8_t>(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
      q[l + 96] = static_cast<std::int8_t>(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
    }
  }
}

static inline void Decode32(TensorType type, const void* p, Decoded32* out) {
  switch (type) {
    case TensorType::kQ4_0:
      DecodeQ4_0(p, out);
      break;
    case TensorType::kQ4_1:
      DecodeQ4_1(p, out);
      break;
    case TensorType::kQ5_0:
      DecodeQ5_0(p, out);
      break;
    case TensorType::kQ5_1:
      DecodeQ5_1(p, out);
      break;
    default:
      DecodeQ8_0(p, out);
      break;
  }
}

static inline void DecodeK(TensorType type, const void* p, DecodedK* out) {
  switch (type) {
    case TensorType::kQ2_K:
      DecodeQ2_K(p, out);
      break;
    case TensorType::kQ3_K:
      DecodeQ3_K(p, out);
      break;
    case TensorType::kQ4_K:
      DecodeQ4_K(p, out);
      break;
    case TensorType::kQ5_K:
      DecodeQ5_K(p, out);
      break;
    default:
      DecodeQ6_K(p, out);
      break;
  }
}

}  // namespace airlock::engine::internal
