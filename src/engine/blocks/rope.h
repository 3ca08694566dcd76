// Rotary position embedding (RoPE), with linear scaling, llama3 per-frequency factors and YaRN
// (arXiv:2309.00071: a per-frequency ramp between interpolation and extrapolation, plus a
// magnitude factor on cos/sin), computed as ggml does. A RopeTable is built once per workspace
// and is read-only afterwards.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model.h"

namespace airlock::engine::internal {

struct ForwardRow;

class RopeTable {
 public:
  // Frequencies for `c` (n_rot, base, linear scale, YaRN) divided by `factors` (llama3
  // rope_freqs, may be empty). With MLA (deepseek2) cos/sin keep attn_factor as magnitude (its
  // YaRN magnitude goes into kq_scale instead).
  void Init(const ModelConfig& c, const std::vector<float>& factors);
  // cos/sin of each row's angles: out[i][j] for the n_rot / 2 frequencies j.
  void Angles(const ForwardRow* rows, int n, float* cos_out, float* sin_out) const;
  int half() const { return static_cast<int>(inv_freq_.size()); }

 private:
  std::vector<double> inv_freq_;  // base^(-2j / n_rot) / factor_j
  std::vector<float> ramp_;       // YaRN: 1 = extrapolate (keep), 0 = interpolate (scale)
  double freq_scale_ = 1;
  float mscale_ = 1;
};

// Rotates the first n_rot values after `offset` of each of `n_heads` heads (head_stride apart) in
// each of `n_rows` rows (row_stride apart) by row i's angles. kNorm rotates pairs (2j, 2j+1),
// kNeox pairs (j, j + n_rot/2).
void ApplyRope(float* v, int n_rows, std::int64_t row_stride, int n_heads, std::int64_t head_stride,
               int offset, int n_rot, RopeStyle style, const float* cos, const float* sin);

}  // namespace airlock::engine::internal
