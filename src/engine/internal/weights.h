// The tensors of a loaded model, as used by the forward pass (views into the mapped file).
#pragma once

#include <vector>

#include "engine/internal/expert_weights.h"
#include "engine/internal/matmul.h"

namespace airlock::engine::internal {

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;
  std::vector<float> q_bias, k_bias, v_bias;  // empty when absent
  std::vector<float> q_norm, k_norm;          // qwen3: per-head RMS norm weights {head_dim}
  WeightMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
  ExpertLayerWeights x;  // MoE / MLA tensors (expert architectures only)
};

struct ModelWeights {
  WeightMatrix token_embd;  // rows = vocab, cols = n_embd
  WeightMatrix output;      // token_embd when tied
  std::vector<float> output_norm;
  std::vector<float> rope_freqs;  // empty, or n_rot/2 factors dividing each frequency
  std::vector<LayerWeights> layers;
};

}  // namespace airlock::engine::internal
