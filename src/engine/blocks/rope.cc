// RoPE angles and rotation (see rope.h).
#include "engine/blocks/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/internal/workspace.h"

namespace airlock::engine::internal {

void RopeTable::Init(const ModelConfig& c, const std::vector<float>& factors) {
  const int half = c.n_rot / 2;
  inv_freq_.assign(half, 0.0);
  ramp_.assign(half, 0.0f);
  freq_scale_ = c.rope_freq_scale;
  for (int j = 0; j < half; ++j) {
    inv_freq_[j] = std::pow(static_cast<double>(c.rope_base), -2.0 * j / c.n_rot);
    if (!factors.empty()) inv_freq_[j] /= factors[j];
  }
  const YarnConfig& y = c.yarn;
  if (!y.enabled || y.ext_factor == 0) return;
  // Dimensions whose wavelength fits `n_rot_turns` turns in the original context.
  auto corr_dim = [&](float n_rot_turns) {
    return c.n_rot * std::log(y.orig_ctx / (n_rot_turns * 2 * std::numbers::pi_v<float>)) /
           (2 * std::log(c.rope_base));
  };
  const float low = std::max(0.0f, std::floor(corr_dim(y.beta_fast)));
  const float high = std::min(static_cast<float>(c.n_rot - 1), std::ceil(corr_dim(y.beta_slow)));
  for (int j = 0; j < half; ++j) {
    const float r = (j - low) / std::max(0.001f, high - low);
    ramp_[j] = (1.0f - std::min(1.0f, std::max(0.0f, r))) * y.ext_factor;
  }
  // ggml scales cos/sin by attn_factor * (1 + 0.1 ln(1/fs)); for deepseek2 llama.cpp passes an
  // attn_factor that cancels the second term (the magnitude goes into kq_scale instead).
  const float fs = c.rope_freq_scale;
  mscale_ = c.moe.mla ? y.attn_factor : y.attn_factor * (1.0f + 0.1f * std::log(1.0f / fs));
}

void RopeTable::Angles(const ForwardRow* rows, int n, float* cos_out, float* sin_out) const {
  const int h = half();
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < h; ++j) {
      const double extrap = static_cast<double>(rows[i].pos) * inv_freq_[j];
      const double interp = freq_scale_ * extrap;
      const double theta = interp * (1 - ramp_[j]) + extrap * ramp_[j];
      cos_out[static_cast<std::size_t>(i) * h + j] = static_cast<float>(std::cos(theta)) * mscale_;
      sin_out[static_cast<std::size_t>(i) * h + j] = static_cast<float>(std::sin(theta)) * mscale_;
    }
  }
}

void ApplyRope(float* v, int n_rows, std::int64_t row_stride, int n_heads, std::int64_t head_stride,
               int offset, int n_rot, RopeStyle style, const float* cos, const float* sin) {
  const int half = n_rot / 2;
  for (int i = 0; i < n_rows; ++i) {
    const float* cs = cos + static_cast<std::size_t>(i) * half;
    const float* sn = sin + static_cast<std::size_t>(i) * half;
    for (int h = 0; h < n_heads; ++h) {
      float* head = v + i * row_stride + h * head_stride + offset;
      for (int j = 0; j < half; ++j) {
        const int a = style == RopeStyle::kNorm ? 2 * j : j;
        const int b = style == RopeStyle::kNorm ? 2 * j + 1 : j + half;
        const float x0 = head[a], x1 = head[b];
        head[a] = x0 * cs[j] - x1 * sn[j];
        head[b] = x0 * sn[j] + x1 * cs[j];
      }
    }
  }
}

}  // namespace airlock::engine::internal
