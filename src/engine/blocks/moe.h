// Mixture-of-experts FFN (qwen2moe, qwen3moe, deepseek2) for every row of a forward pass.
//  - Routing, as llama.cpp's build_moe_ffn (llm_graph_context::build_moe_ffn in llama.cpp's
//  src/llama-graph.cpp): router logits ->
//    softmax or sigmoid probabilities; selection scores = probs + exp_probs_b; with expert groups
//    only the top n_group_used groups (ranked by the sum of their two best scores) compete; top-k
//    by selection score (ties: lower id); weights = the unbiased probabilities, optionally
//    renormalized (sum clamped at 6.1e-5) and scaled.
//  - Expert FFN: the (row, slot) pairs of the whole forward pass (every session in a Batch step)
//    are sorted by expert, so each selected expert's matrices are read once per step for all the
//    rows routed to it, and experts no row selected are not touched (the tensors stay mapped).
#pragma once

#include "engine/internal/weights.h"

namespace airlock::engine::internal {

struct Workspace;

// choice[n][K], choice_weight[n][K] from router . xn.
void RouteExperts(Workspace& ws, const LayerWeights& lw);
// tmp[n][d] = sum over row i's selected experts e of weight * SwiGLU_e(xn[i]).
void ExpertFfn(Workspace& ws, const LayerWeights& lw);
// tmp[n][d] += gate * SwiGLU_shared(xn) (gate = sigmoid(shexp_gate . xn) for qwen2moe, else 1);
// nothing when the layer has no shared expert.
void AddSharedExpert(Workspace& ws, const LayerWeights& lw);

}  // namespace airlock::engine::internal
