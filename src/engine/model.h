// A transformer model loaded from a GGUF file for CPU inference. Load() memory-maps the file,
// runs the hardened GGUF parser (a file it rejects is refused), checks the architecture's
// metadata and every tensor's type and shape, and keeps weight matrices as views into the
// mapping (not copied; only 1-D norms/biases are converted to float). Architectures (one file
// each under engine/models/, registered in engine/arch.cc): llama (Llama 2/3.x,
// DeepSeek-R1-Distill-Llama, SentencePiece-era models), qwen2 (q/k/v biases), qwen3 (q/k RMS
// norms), and the expert architectures qwen2moe, qwen3moe and deepseek2 (multi-head latent
// attention). A Model is immutable after Load and may be shared by several Sessions and threads;
// it must outlive them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/file.h"
#include "core/status.h"
#include "engine/arch.h"
#include "formats/gguf.h"

namespace airlock::engine {

enum class RopeStyle { kNorm, kNeox };  // pairs (2i, 2i+1) vs (i, i + n_rot/2)

// Mixture-of-experts and multi-head latent attention settings (qwen2moe, qwen3moe, deepseek2).
// Absent (n_expert == 0, mla false) for dense architectures.
enum class ExpertGating { kSoftmax = 1, kSigmoid = 2 };  // GGUF expert_gating_func values
struct ExpertConfig {
  int n_expert = 0;            // routed experts per MoE layer (0: dense model)
  int n_expert_used = 0;       // experts selected per token
  int n_ff_exp = 0;            // width of one routed expert's FFN
  int n_ff_shexp = 0;          // width of the shared expert FFN (0: none)
  int n_layer_dense_lead = 0;  // leading layers with a dense FFN (deepseek2)
  int n_group = 1;             // expert groups; the top n_group_used groups are kept
  int n_group_used = 1;
  ExpertGating gating = ExpertGating::kSoftmax;
  bool norm_weights = false;   // renormalize the selected weights to sum 1
  float weights_scale = 1.0f;  // then multiply them by this
  bool shared_gate = false;    // qwen2moe: shared expert scaled by sigmoid(gate_inp_shexp . x)
  // deepseek2 multi-head latent attention (the KV cache holds kv_lora_rank + n_rot per token).
  bool mla = false;
  int q_lora_rank = 0;  // 0: plain attn_q
  int kv_lora_rank = 0;
  int qk_nope = 0;  // per-head q/k width without rope; the rope part is n_rot
  int v_head_dim = 0;
  std::uint64_t active_weight_bytes = 0;  // bytes one decoded token reads (selected experts only)
};

// YaRN rope scaling (rope.scaling.type = yarn; arXiv:2309.00071), as ggml computes it.
struct YarnConfig {
  bool enabled = false;
  float ext_factor = 0;   // 1: ramp between interpolation and extrapolation
  float attn_factor = 1;  // rope.scaling.attn_factor
  float beta_fast = 32, beta_slow = 1;
  int orig_ctx = 0;   // rope.scaling.original_context_length
  float log_mul = 0;  // deepseek2: kq scale mscale = 1 + log_mul * ln(factor)
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string architecture;  // general.architecture
  std::string name;          // general.name, may be empty
  int n_layer = 0;
  int n_embd = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int n_ff = 0;
  int n_vocab = 0;
  int n_ctx_train = 0;
  int n_rot = 0;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // linear rope scaling: 1 / factor
  float kq_scale = 0;            // 1/sqrt(head_dim) unless the file says otherwise
  RopeStyle rope = RopeStyle::kNorm;
  bool tied_output = false;     // no output.weight: the logits use token_embd
  bool has_rope_freqs = false;  // llama3-style per-frequency factors (rope_freqs.weight)
  YarnConfig yarn;
  std::uint64_t weight_bytes = 0;  // bytes of every tensor the forward pass reads
  ExpertConfig moe;                // MoE / MLA settings; n_expert == 0 for dense models
};

struct LoadOptions {
  // Refuse a file whose GGUF header has non-fatal issues too (the parser's issue list).
  bool strict = false;
  // The file already open on this descriptor (a core::PinnedFile whose signature was checked, or
  // the descriptor serve hands its model worker): mapped from it, the path only names it in
  // messages. -1: the path is opened.
  int fd = -1;
};

class Model;
namespace internal {
struct ModelWeights;
// Model::Load after the GGUF checks: the registry lookup and the architecture's loader.
Result<ModelConfig> LoadModelFromGguf(const formats::gguf::File& f, const std::string& path,
                                      Model& model);
}  // namespace internal

class Model {
 public:
  // Loads `path`. Errors: kNotFound/kIo (file), kCorrupt (the GGUF parser or a tensor whose
  // shape/size does not match the metadata), kUnsupported (architecture, tensor type (naming
  // the tensor), fused or MoE tensors, rope scaling we do not implement).
  static Result<std::unique_ptr<Model>> Load(const std::string& path,
                                             const LoadOptions& options = {});
  ~Model();

  const ModelConfig& config() const { return config_; }
  // The parsed GGUF (metadata for the tokenizer and the chat template).
  const formats::gguf::File& gguf() const { return gguf_; }
  const internal::ModelWeights& weights() const { return *weights_; }
  // "Q4_K: 12, F32: 121, ..." tensor type histogram, for --verbose summaries.
  std::string TypeSummary() const;

 private:
  Model() = default;
  friend Result<ModelConfig> internal::LoadModelFromGguf(const formats::gguf::File&,
                                                         const std::string&, Model&);
  core::MappedFile file_;
  formats::gguf::File gguf_;
  ModelConfig config_;
  std::unique_ptr<internal::ModelWeights> weights_;
  const ArchSpec* spec_ = nullptr;

 public:
  // The architecture's registry entry (engine/arch.h).
  const ArchSpec& spec() const { return *spec_; }

 private:
  std::string type_summary_;
};

}  // namespace airlock::engine
