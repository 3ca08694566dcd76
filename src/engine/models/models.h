// Internal to the engine: the architectures (one file each, registered in engine/arch.cc) and
// the loading steps they share. Each architecture file holds exactly three things: how it reads
// its hyperparameters, its tensor list with expected shapes (optional tensors marked), and its
// layer loop, which reads top to bottom, one comment per step, over the workspace's rows
// (engine/internal/workspace.h; buffers and their shapes are listed there).
#pragma once

#include "core/status.h"
#include "engine/internal/model_loader.h"

namespace airlock::engine::internal {

struct Workspace;

// ---- one entry per architecture (Load<Arch>: hyperparameters + tensors; <Arch>Layers) ----
Status LoadLlama(ModelLoader& ld);
void LlamaLayers(Workspace& ws);
Status LoadQwen2(ModelLoader& ld);
void Qwen2Layers(Workspace& ws);
Status LoadQwen3(ModelLoader& ld);
void Qwen3Layers(Workspace& ws);
Status LoadQwen2Moe(ModelLoader& ld);
void Qwen2MoeLayers(Workspace& ws);
Status LoadQwen3Moe(ModelLoader& ld);
void Qwen3MoeLayers(Workspace& ws);
Status LoadDeepseek2(ModelLoader& ld);
void Deepseek2Layers(Workspace& ws);

// ---- shared loading steps (models/common.cc) ----
// n_embd, n_layer, n_head, n_head_kv, n_ctx_train, rms_eps, rope_base. Errors: kCorrupt.
Status LoadBaseHparams(ModelLoader& ld);
// GQA head shape: head_dim (attention.key_length, default n_embd / n_head; value_length must
// equal it), n_rot, and kq_scale (1/sqrt(head_dim) or attention.scale).
Status LoadGqaHparams(ModelLoader& ld);
// rope.scaling.*: none, linear, llama3 (factors in rope_freqs.weight) or yarn.
// Errors: kCorrupt (non-positive factor, bad YaRN values), kUnsupported (another type).
Status LoadRopeScaling(ModelLoader& ld);
// Expert counts, expert width (key, else the tensor's shape) and groups.
Status LoadExpertHparams(ModelLoader& ld);
// token_embd (which sets n_vocab), output (tied to token_embd when absent and `output_optional`),
// output_norm, and the optional llama3 rope_freqs.
Status LoadEmbeddingsAndOutput(ModelLoader& ld, bool output_optional = true);
// Layer `il`'s GQA attention tensors: attn_norm, attn_q/k/v/output; q/k/v biases optional;
// the per-head q/k norms (required) when `qk_norm`.
Status LoadGqaAttention(ModelLoader& ld, int il, bool qk_norm);
// Layer `il`'s ffn_norm and dense SwiGLU FFN {d -> ff -> d}.
Status LoadDenseFfn(ModelLoader& ld, int il);
// Layer `il`'s ffn_norm, router, optional selection bias, routed experts, and the shared expert
// when n_ff_shexp > 0 (with its sigmoid gate when `shared_gate`).
Status LoadMoeFfn(ModelLoader& ld, int il);
// Refuses fused layouts the forward pass does not implement (attn_qkv, ffn_gate_up_exps).
Status RefuseFusedTensors(ModelLoader& ld);

}  // namespace airlock::engine::internal
