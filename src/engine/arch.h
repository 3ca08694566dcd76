// The architectures the engine runs, and every name a GGUF file uses for them: architecture names,
// metadata keys and tensor names are data here (arch.cc), so model files (engine/models/<arch>.cc)
// contain no strings. The registry maps an architecture name to its loader and its layer loop.
// Adding an architecture touches this registry and one new file under engine/models/.
// Everything here is immutable and thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace airlock::engine {

enum class Arch { kLlama, kQwen2, kQwen3, kQwen2Moe, kQwen3Moe, kDeepseek2 };

// Metadata keys. Most are "<arch>.<suffix>" (kEmbeddingLength: "qwen2.embedding_length").
enum class Key {
  kGeneralName,
  kContextLength,
  kEmbeddingLength,
  kBlockCount,
  kFeedForwardLength,
  kHeadCount,
  kHeadCountKv,
  kKeyLength,
  kValueLength,
  kKeyLengthMla,
  kValueLengthMla,
  kRmsEpsilon,
  kAttentionScale,
  kQLoraRank,
  kKvLoraRank,
  kRopeDimensionCount,
  kRopeFreqBase,
  kRopeScalingType,
  kRopeScalingFactor,
  kRopeScaleLinear,
  kRopeScalingAttnFactor,
  kRopeScalingOrigCtx,
  kRopeScalingYarnBetaFast,
  kRopeScalingYarnBetaSlow,
  kRopeScalingYarnLogMul,
  kExpertCount,
  kExpertUsedCount,
  kExpertFeedForwardLength,
  kExpertSharedFeedForwardLength,
  kExpertSharedCount,
  kExpertGroupCount,
  kExpertGroupUsedCount,
  kExpertWeightsScale,
  kExpertWeightsNorm,
  kExpertGatingFunc,
  kLeadingDenseBlockCount,
};

// Tensor names. Per-layer tensors are "blk.<layer>.<suffix>".
enum class Tensor {
  kTokenEmbd,
  kOutput,
  kOutputNorm,
  kRopeFreqs,
  kAttnNorm,
  kAttnQ,
  kAttnK,
  kAttnV,
  kAttnQkv,  // fused q/k/v (refused)
  kAttnQBias,
  kAttnKBias,
  kAttnVBias,
  kAttnQNorm,
  kAttnKNorm,
  kAttnOutput,
  kAttnQA,      // MLA: x -> q_lora
  kAttnQANorm,  // MLA
  kAttnQB,      // MLA: q_lora -> heads
  kAttnKvAMqa,  // MLA: x -> [kv_lora | k_rope]
  kAttnKvANorm,
  kAttnKvB,  // MLA, old unsplit layout (refused)
  kAttnKB,   // MLA: per head, q_nope -> kv_lora
  kAttnVB,   // MLA: per head, kv_lora -> v_head
  kFfnNorm,
  kFfnGate,
  kFfnUp,
  kFfnDown,
  kFfnGateInp,  // router
  kExpProbsBias,
  kFfnGateExps,
  kFfnUpExps,
  kFfnDownExps,
  kFfnGateUpExps,  // fused (refused)
  kFfnGateShexp,
  kFfnUpShexp,
  kFfnDownShexp,
  kFfnGateInpShexp,
};

std::string_view ArchName(Arch arch);
// "<arch>.embedding_length", or the key itself for general.* keys.
std::string KeyName(Arch arch, Key key);
// "token_embd.weight", or "blk.<layer>.attn_q.weight" for per-layer tensors.
std::string TensorName(Tensor tensor, int layer = -1);

namespace internal {
class ModelLoader;
struct Workspace;
}  // namespace internal

// One registry entry: the architecture's loader (hyperparameters and tensor list, into the
// loader's config and weights) and its layer loop (every layer over the workspace's rows).
struct ArchSpec {
  Arch arch;
  std::string_view name;
  Status (*load)(internal::ModelLoader& loader);
  void (*layers)(internal::Workspace& ws);
};

// The entry for a general.architecture value; nullptr when the engine does not run it.
const ArchSpec* FindArch(std::string_view name);
// "llama, qwen2, qwen3, qwen2moe, qwen3moe, deepseek2".
std::string SupportedArchNames();

}  // namespace airlock::engine
