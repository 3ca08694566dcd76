// Random kernel inputs shared by tests/engine/kernels_test.cc (GoogleTest) and
// tests/kernels_check.cc (plain program, also cross-built for aarch64): valid weight rows of every
// supported type, activation rows with outliers, quantization through a table, and the error scale
// sum(|w * x|) that tolerances are stated against. Header-only, no GoogleTest.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/kernels.h"

namespace airlock::engine::test_data {

inline constexpr TensorType kAllTypes[] = {
    TensorType::kF32,  TensorType::kF16,  TensorType::kBF16, TensorType::kQ4_0, TensorType::kQ4_1,
    TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ8_0, TensorType::kQ2_K, TensorType::kQ3_K,
    TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K};

inline void PutHalf(std::uint8_t* p, float v) {
  const std::uint16_t h = Fp32ToFp16(v);
  std::memcpy(p, &h, 2);
}

// Random but valid rows of `type`: random quant bits, fp16 scales in a sane range.
inline std::vector<std::uint8_t> RandomRows(TensorType type, int rows, std::int64_t n,
                                            std::mt19937& rng) {
  const TensorTypeInfo* info = GetTensorTypeInfo(static_cast<std::uint32_t>(type));
  const std::size_t row_bytes = n / info->block_elems * info->block_bytes;
  std::vector<std::uint8_t> data(row_bytes * rows);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  if (type == TensorType::kF32) {
    for (std::size_t i = 0; i < data.size(); i += 4) {
      const float v = normal(rng);
      std::memcpy(&data[i], &v, 4);
    }
    return data;
  }
  if (type == TensorType::kF16 || type == TensorType::kBF16) {
    for (std::size_t i = 0; i < data.size(); i += 2) {
      const std::uint16_t h =
          type == TensorType::kF16 ? Fp32ToFp16(normal(rng)) : Fp32ToBf16(normal(rng));
      std::memcpy(&data[i], &h, 2);
    }
    return data;
  }
  for (auto& b : data) b = static_cast<std::uint8_t>(byte(rng));
  // Offsets of the fp16 fields inside each block.
  std::vector<int> half_fields;
  switch (type) {
    case TensorType::kQ4_0:
    case TensorType::kQ5_0:
    case TensorType::kQ8_0:
      half_fields = {0};
      break;
    case TensorType::kQ4_1:
    case TensorType::kQ5_1:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
      half_fields = {0, 2};
      break;
    case TensorType::kQ2_K:
      half_fields = {80, 82};
      break;
    case TensorType::kQ3_K:
      half_fields = {108};
      break;
    case TensorType::kQ6_K:
      half_fields = {208};
      break;
    default:
      break;
  }
  for (std::size_t off = 0; off < data.size(); off += info->block_bytes) {
    for (int f : half_fields)
      PutHalf(&data[off + f], scale(rng) * (byte(rng) < 128 ? -1.0f : 1.0f));
  }
  return data;
}

inline std::vector<float> RandomFloats(std::int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  // A few outliers, as real activations have.
  x[3] *= 20;
  x[n / 2] *= -15;
  return x;
}

inline std::vector<std::uint8_t> Quantize(const Kernels& k, ActFormat f,
                                          const std::vector<float>& x) {
  std::vector<std::uint8_t> out(ActRowBytes(f, static_cast<std::int64_t>(x.size())));
  k.quantize[static_cast<int>(f)](x.data(), out.data(), static_cast<std::int64_t>(x.size()));
  return out;
}

// Sum of |w_i * x_i| for a row: the scale errors are measured against.
inline double AbsDotScale(TensorType type, const std::uint8_t* row, const std::vector<float>& x) {
  std::vector<float> w(x.size());
  DequantizeRow(type, row, w.data(), static_cast<std::int64_t>(x.size()));
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += std::fabs(static_cast<double>(w[i]) * x[i]);
  return s;
}

}  // namespace airlock::engine::test_data
