// Name tables (architectures, GGUF metadata keys, tensor names; as llama.cpp's llama-arch.cpp
// writes them) and the registry of architectures.
#include "engine/arch.h"

#include "engine/models/models.h"

namespace airlock::engine {

namespace {

struct KeyEntry {
  Key key;
  std::string_view suffix;
  bool per_arch;  // "<arch>.<suffix>" (else the suffix is the whole key)
};

constexpr KeyEntry kKeys[] = {
    {Key::kGeneralName, "general.name", false},
    {Key::kContextLength, "context_length", true},
    {Key::kEmbeddingLength, "embedding_length", true},
    {Key::kBlockCount, "block_count", true},
    {Key::kFeedForwardLength, "feed_forward_length", true},
    {Key::kHeadCount, "attention.head_count", true},
    {Key::kHeadCountKv, "attention.head_count_kv", true},
    {Key::kKeyLength, "attention.key_length", true},
    {Key::kValueLength, "attention.value_length", true},
    {Key::kKeyLengthMla, "attention.key_length_mla", true},
    {Key::kValueLengthMla, "attention.value_length_mla", true},
    {Key::kRmsEpsilon, "attention.layer_norm_rms_epsilon", true},
    {Key::kAttentionScale, "attention.scale", true},
    {Key::kQLoraRank, "attention.q_lora_rank", true},
    {Key::kKvLoraRank, "attention.kv_lora_rank", true},
    {Key::kRopeDimensionCount, "rope.dimension_count", true},
    {Key::kRopeFreqBase, "rope.freq_base", true},
    {Key::kRopeScalingType, "rope.scaling.type", true},
    {Key::kRopeScalingFactor, "rope.scaling.factor", true},
    {Key::kRopeScaleLinear, "rope.scale_linear", true},
    {Key::kRopeScalingAttnFactor, "rope.scaling.attn_factor", true},
    {Key::kRopeScalingOrigCtx, "rope.scaling.original_context_length", true},
    {Key::kRopeScalingYarnBetaFast, "rope.scaling.yarn_beta_fast", true},
    {Key::kRopeScalingYarnBetaSlow, "rope.scaling.yarn_beta_slow", true},
    {Key::kRopeScalingYarnLogMul, "rope.scaling.yarn_log_multiplier", true},
    {Key::kExpertCount, "expert_count", true},
    {Key::kExpertUsedCount, "expert_used_count", true},
    {Key::kExpertFeedForwardLength, "expert_feed_forward_length", true},
    {Key::kExpertSharedFeedForwardLength, "expert_shared_feed_forward_length", true},
    {Key::kExpertSharedCount, "expert_shared_count", true},
    {Key::kExpertGroupCount, "expert_group_count", true},
    {Key::kExpertGroupUsedCount, "expert_group_used_count", true},
    {Key::kExpertWeightsScale, "expert_weights_scale", true},
    {Key::kExpertWeightsNorm, "expert_weights_norm", true},
    {Key::kExpertGatingFunc, "expert_gating_func", true},
    {Key::kLeadingDenseBlockCount, "leading_dense_block_count", true},
};

struct TensorEntry {
  Tensor tensor;
  std::string_view suffix;
  bool per_layer;  // "blk.<layer>.<suffix>"
};

constexpr TensorEntry kTensors[] = {
    {Tensor::kTokenEmbd, "token_embd.weight", false},
    {Tensor::kOutput, "output.weight", false},
    {Tensor::kOutputNorm, "output_norm.weight", false},
    {Tensor::kRopeFreqs, "rope_freqs.weight", false},
    {Tensor::kAttnNorm, "attn_norm.weight", true},
    {Tensor::kAttnQ, "attn_q.weight", true},
    {Tensor::kAttnK, "attn_k.weight", true},
    {Tensor::kAttnV, "attn_v.weight", true},
    {Tensor::kAttnQkv, "attn_qkv.weight", true},
    {Tensor::kAttnQBias, "attn_q.bias", true},
    {Tensor::kAttnKBias, "attn_k.bias", true},
    {Tensor::kAttnVBias, "attn_v.bias", true},
    {Tensor::kAttnQNorm, "attn_q_norm.weight", true},
    {Tensor::kAttnKNorm, "attn_k_norm.weight", true},
    {Tensor::kAttnOutput, "attn_output.weight", true},
    {Tensor::kAttnQA, "attn_q_a.weight", true},
    {Tensor::kAttnQANorm, "attn_q_a_norm.weight", true},
    {Tensor::kAttnQB, "attn_q_b.weight", true},
    {Tensor::kAttnKvAMqa, "attn_kv_a_mqa.weight", true},
    {Tensor::kAttnKvANorm, "attn_kv_a_norm.weight", true},
    {Tensor::kAttnKvB, "attn_kv_b.weight", true},
    {Tensor::kAttnKB, "attn_k_b.weight", true},
    {Tensor::kAttnVB, "attn_v_b.weight", true},
    {Tensor::kFfnNorm, "ffn_norm.weight", true},
    {Tensor::kFfnGate, "ffn_gate.weight", true},
    {Tensor::kFfnUp, "ffn_up.weight", true},
    {Tensor::kFfnDown, "ffn_down.weight", true},
    {Tensor::kFfnGateInp, "ffn_gate_inp.weight", true},
    {Tensor::kExpProbsBias, "exp_probs_b.bias", true},
    {Tensor::kFfnGateExps, "ffn_gate_exps.weight", true},
    {Tensor::kFfnUpExps, "ffn_up_exps.weight", true},
    {Tensor::kFfnDownExps, "ffn_down_exps.weight", true},
    {Tensor::kFfnGateUpExps, "ffn_gate_up_exps.weight", true},
    {Tensor::kFfnGateShexp, "ffn_gate_shexp.weight", true},
    {Tensor::kFfnUpShexp, "ffn_up_shexp.weight", true},
    {Tensor::kFfnDownShexp, "ffn_down_shexp.weight", true},
    {Tensor::kFfnGateInpShexp, "ffn_gate_inp_shexp.weight", true},
};

// The registry: one line per architecture (engine/models/<arch>.cc).
constexpr ArchSpec kArchs[] = {
    {Arch::kLlama, "llama", internal::LoadLlama, internal::LlamaLayers},
    {Arch::kQwen2, "qwen2", internal::LoadQwen2, internal::Qwen2Layers},
    {Arch::kQwen3, "qwen3", internal::LoadQwen3, internal::Qwen3Layers},
    {Arch::kQwen2Moe, "qwen2moe", internal::LoadQwen2Moe, internal::Qwen2MoeLayers},
    {Arch::kQwen3Moe, "qwen3moe", internal::LoadQwen3Moe, internal::Qwen3MoeLayers},
    {Arch::kDeepseek2, "deepseek2", internal::LoadDeepseek2, internal::Deepseek2Layers},
};

}  // namespace

std::string_view ArchName(Arch arch) {
  for (const ArchSpec& a : kArchs) {
    if (a.arch == arch) return a.name;
  }
  return "unknown";
}

std::string KeyName(Arch arch, Key key) {
  for (const KeyEntry& e : kKeys) {
    if (e.key != key) continue;
    if (!e.per_arch) return std::string(e.suffix);
    return std::string(ArchName(arch)) + "." + std::string(e.suffix);
  }
  return "unknown-key";
}

std::string TensorName(Tensor tensor, int layer) {
  for (const TensorEntry& e : kTensors) {
    if (e.tensor != tensor) continue;
    if (!e.per_layer) return std::string(e.suffix);
    return "blk." + std::to_string(layer) + "." + std::string(e.suffix);
  }
  return "unknown-tensor";
}

const ArchSpec* FindArch(std::string_view name) {
  for (const ArchSpec& a : kArchs) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::string SupportedArchNames() {
  std::string out;
  for (const ArchSpec& a : kArchs) {
    if (!out.empty()) out += ", ";
    out += a.name;
  }
  return out;
}

}  // namespace airlock::engine
