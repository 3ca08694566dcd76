// The SwiGLU feed-forward network: out = down(silu(gate . in) * (up . in)), for every row of a
// forward pass at once (llama, qwen2/3, the dense layers and shared experts of MoE models).
#pragma once

#include <cmath>

#include "engine/internal/matmul.h"

namespace airlock::engine::internal {

struct Workspace;

inline float Silu(float g) { return g / (1.0f + std::exp(-g)); }

// out[n][d] = w_down . (silu(w_gate . xn) * (w_up . xn)) for the workspace's n rows of xn[n][d];
// uses ws.gate / ws.up [n][ff] as scratch.
void SwiGluFfn(Workspace& ws, const WeightMatrix& w_gate, const WeightMatrix& w_up,
               const WeightMatrix& w_down, float* out);

}  // namespace airlock::engine::internal
