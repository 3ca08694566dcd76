// The tensors of a loaded model as the forward pass reads them: matrices are views into the
// mapped file (never copied), 1-D norms and biases are converted to float at load. Shapes use the
// model's dimensions: d = n_embd, q_dim = n_head * head_dim, kv_dim = n_head_kv * head_dim,
// ff = n_ff, E = n_expert, ffe = n_ff_exp, ffs = n_ff_shexp; a matrix {in -> out} has `out` rows
// of `in` values. A tensor a layer does not have is empty (vectors) or invalid (matrices).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/internal/matmul.h"

namespace airlock::engine::internal {

// A 3-D tensor {cols, rows, count}: `count` matrices stored one after the other. Slice(e) is a
// view of matrix e, so the forward pass reads only the experts (or heads) it selects.
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

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;  // {d}
  // Attention (GQA).
  WeightMatrix wq;                            // {d -> q_dim} (deepseek2 without q_lora too)
  WeightMatrix wk, wv;                        // {d -> kv_dim}
  std::vector<float> q_bias, k_bias, v_bias;  // qwen2: {q_dim}, {kv_dim}, {kv_dim}
  std::vector<float> q_norm, k_norm;          // qwen3: per-head RMS norm weights {head_dim}
  WeightMatrix wo;                            // {q_dim (MLA: n_head * v_head) -> d}
  // Multi-head latent attention (deepseek2).
  WeightMatrix wq_a;             // {d -> q_lora}
  std::vector<float> q_a_norm;   // {q_lora}
  WeightMatrix wq_b;             // {q_lora -> n_head * (qk_nope + n_rot)}
  WeightMatrix wkv_a;            // {d -> kv_lora + n_rot}
  std::vector<float> kv_a_norm;  // {kv_lora}
  StackedMatrices k_b;           // per head {qk_nope -> kv_lora}
  StackedMatrices v_b;           // per head {kv_lora -> v_head}
  // Dense SwiGLU FFN.
  WeightMatrix w_gate, w_up;  // {d -> ff}
  WeightMatrix w_down;        // {ff -> d}
  // Routed experts (is_moe) and the shared expert.
  bool is_moe = false;
  WeightMatrix router;                 // {d -> E}
  std::vector<float> probs_bias;       // {E}: added for selection only; may be empty
  StackedMatrices gate_exps, up_exps;  // E x {d -> ffe}
  StackedMatrices down_exps;           // E x {ffe -> d}
  WeightMatrix gate_shexp, up_shexp;   // {d -> ffs}; invalid when absent
  WeightMatrix down_shexp;             // {ffs -> d}
  std::vector<float> shexp_gate;       // qwen2moe {d}: shared expert scaled by sigmoid(. x)
};

struct ModelWeights {
  WeightMatrix token_embd;         // {d -> n_vocab}: row t is token t's embedding
  WeightMatrix output;             // {d -> n_vocab}; token_embd when tied
  std::vector<float> output_norm;  // {d}
  std::vector<float> rope_freqs;   // {n_rot / 2} llama3 factors dividing each frequency, or empty
  std::vector<LayerWeights> layers;
};

}  // namespace airlock::engine::internal
