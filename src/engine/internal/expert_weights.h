// Tensors of the mixture-of-experts and multi-head latent attention layers (qwen2moe, qwen3moe,
// deepseek2), as views into the mapped file. A 3-D expert tensor {cols, rows, n} is n matrices
// stored one after the other; Slice(e) is a WeightMatrix view of matrix e, so the forward pass
// reads only the rows of the experts it selected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/internal/matmul.h"

namespace airlock::engine::internal {

struct StackedMatrices {
  TensorType type = TensorType::kF32;
  const std::uint8_t* data = nullptr;
  int count = 0;          // matrices (experts, or heads for attn_k_b/attn_v_b)
  std::int64_t rows = 0;  // per matrix
  std::int64_t cols = 0;
  std::size_t row_bytes = 0;
  bool valid() const { return data != nullptr; }
  std::size_t matrix_bytes() const { return row_bytes * static_cast<std::size_t>(rows); }
  WeightMatrix Slice(int i) const {
    WeightMatrix w;
    w.type = type;
    w.data = data + matrix_bytes() * static_cast<std::size_t>(i);
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = row_bytes;
    return w;
  }
};

struct ExpertLayerWeights {
  bool is_moe = false;            // this layer's FFN is routed (else the dense w_gate/w_up/w_down)
  WeightMatrix router;            // ffn_gate_inp {n_embd, n_expert}
  std::vector<float> probs_bias;  // exp_probs_b {n_expert}: added for selection only; may be empty
  StackedMatrices gate_exps, up_exps, down_exps;
  WeightMatrix gate_shexp, up_shexp, down_shexp;  // shared expert; invalid when absent
  std::vector<float> shexp_gate;                  // qwen2moe ffn_gate_inp_shexp {n_embd}
  // deepseek2 MLA.
  WeightMatrix wq_a, wq_b, wkv_a;  // wq_a/wq_b when q_lora_rank > 0 (else LayerWeights::wq)
  std::vector<float> q_a_norm, kv_a_norm;
  StackedMatrices k_b;  // per head {qk_nope -> kv_lora}: rows kv_lora, cols qk_nope
  StackedMatrices v_b;  // per head {kv_lora -> v_head}: rows v_head, cols kv_lora
};

}  // namespace airlock::engine::internal
