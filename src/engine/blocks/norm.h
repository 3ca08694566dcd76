// RMS normalization and the element-wise steps around it (residual adds, biases). Plain loops:
// these are a small share of a forward pass next to the matrix products.
#pragma once

#include <cstdint>
#include <vector>

namespace airlock::engine::internal {

// out = in / sqrt(mean(in^2) + eps) * weight, over n values (in == out allowed).
void RmsNorm(const float* in, float* out, std::int64_t n, const float* weight, float eps);
// RmsNorm of each of `n_rows` rows of `d` values.
void RmsNormRows(const float* in, float* out, int n_rows, std::int64_t d,
                 const std::vector<float>& weight, float eps);
// In place, RmsNorm of each of `n_heads` heads (head_dim values, `weight` shared by the heads) of
// each of `n_rows` rows `row_stride` apart.
void RmsNormHeads(float* v, int n_rows, std::int64_t row_stride, int n_heads, int head_dim,
                  const std::vector<float>& weight, float eps);
// x[e] += y[e] for e < n.
void AddTo(float* x, const float* y, std::int64_t n);
// Adds `bias` (may be empty: no-op) to each of `n_rows` rows `stride` apart.
void AddBias(float* v, int n_rows, std::int64_t stride, const std::vector<float>& bias);

}  // namespace airlock::engine::internal
