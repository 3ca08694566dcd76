// RMS normalization, residual adds and biases (see norm.h).
#include "engine/blocks/norm.h"

#include <cmath>

namespace airlock::engine::internal {

void RmsNorm(const float* in, float* out, std::int64_t n, const float* weight, float eps) {
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(in[i]) * in[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = in[i] * scale * weight[i];
}

void RmsNormRows(const float* in, float* out, int n_rows, std::int64_t d,
                 const std::vector<float>& weight, float eps) {
  for (int i = 0; i < n_rows; ++i) RmsNorm(in + i * d, out + i * d, d, weight.data(), eps);
}

void RmsNormHeads(float* v, int n_rows, std::int64_t row_stride, int n_heads, int head_dim,
                  const std::vector<float>& weight, float eps) {
  for (int i = 0; i < n_rows; ++i) {
    for (int h = 0; h < n_heads; ++h) {
      float* head = v + i * row_stride + static_cast<std::int64_t>(h) * head_dim;
      RmsNorm(head, head, head_dim, weight.data(), eps);
    }
  }
}

void AddTo(float* x, const float* y, std::int64_t n) {
  for (std::int64_t e = 0; e < n; ++e) x[e] += y[e];
}

void AddBias(float* v, int n_rows, std::int64_t stride, const std::vector<float>& bias) {
  if (bias.empty()) return;
  const std::int64_t n = static_cast<std::int64_t>(bias.size());
  for (int i = 0; i < n_rows; ++i) AddTo(v + i * stride, bias.data(), n);
}

}  // namespace airlock::engine::internal
