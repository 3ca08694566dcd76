// Multi-head latent attention (DeepSeek-V2/V3, deepseek2), absorbed form: the cache holds one
// compressed row per position, [rmsnorm(kv_lora latent) | roped k_pe], shared by every head; each
// head's q_nope is mapped into the latent space by attn_k_b, attention runs over the latent rows
// (the latent part doubling as the values), and the latent output is mapped back to v_head per
// head by attn_v_b. Keys, shapes and routing follow llama.cpp at ggml-org/llama.cpp@d8a24cce
// (src/llama-arch.cpp, src/models/deepseek2.cpp).
#pragma once

#include "engine/internal/weights.h"

namespace airlock::engine::internal {

struct Workspace;

// tmp[n][d] = the attention block of layer `il` for the workspace's rows (input xn[n][d]);
// stores each row's compressed KV in its session's cache.
void LatentAttention(Workspace& ws, int il, const LayerWeights& lw);

}  // namespace airlock::engine::internal
