// A transformer model loaded from a GGUF file for CPU inference. Load() memory-maps the file,
// runs the hardened GGUF parser (a file it rejects is refused), checks the architecture's
// metadata and every tensor's type and shape, and keeps weight matrices as views into the
// mapping (not copied; only 1-D norms/biases are converted to float). Architectures: llama
// (Llama 2/3.x, DeepSeek-R1-Distill-Llama, SentencePiece-era models), qwen2 (q/k/v biases), qwen3
// (q/k RMS norms). A Model is immutable after Load and may be shared by several Sessions and
// threads; it must outlive them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/file.h"
#include "core/status.h"
#include "formats/gguf.h"

namespace airlock::engine {

enum class RopeStyle { kNorm, kNeox };  // pairs (2i, 2i+1) vs (i, i + n_rot/2)

struct ModelConfig {
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
  bool tied_output = false;        // no output.weight: the logits use token_embd
  bool has_rope_freqs = false;     // llama3-style per-frequency factors (rope_freqs.weight)
  std::uint64_t weight_bytes = 0;  // bytes of every tensor the forward pass reads
};

struct LoadOptions {
  // Refuse a file whose GGUF header has non-fatal issues too (the parser's issue list).
  bool strict = false;
};

namespace internal {
struct ModelWeights;
}

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
  core::MappedFile file_;
  formats::gguf::File gguf_;
  ModelConfig config_;
  std::unique_ptr<internal::ModelWeights> weights_;
  std::string type_summary_;
};

}  // namespace airlock::engine
