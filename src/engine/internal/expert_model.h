// Loading and forward pass of the expert architectures: qwen2moe (softmax routing without
// renormalization, sigmoid-gated shared expert), qwen3moe (softmax, renormalized top-k, q/k
// norms) and deepseek2 (multi-head latent attention with a compressed KV cache, leading dense
// layers, shared experts, softmax/sigmoid gating with selection bias, expert groups, weight
// normalization and scaling, YaRN). Routed expert tensors stay memory-mapped; a token reads only
// the rows of the experts it selected. Keys, tensor shapes and routing follow llama.cpp at
// ggml-org/llama.cpp@d8a24cce (src/llama-arch.cpp, src/models/<arch>.cpp, src/llama-graph.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/internal/kernels.h"
#include "engine/internal/matmul.h"
#include "engine/internal/thread_pool.h"
#include "engine/model.h"

namespace airlock::engine::internal {

struct ModelWeights;

// True for qwen2moe, qwen3moe and deepseek2.
bool IsExpertArchitecture(std::string_view architecture);

// Reads the metadata and tensors of an expert-architecture file into `c` and `w` (c->architecture
// and c->name already set). Returns the tensor type summary ("Q8_0: 12, F32: 9"). Errors as
// Model::Load: kCorrupt (missing key/tensor, bad shape), kUnsupported (tensor type, fused
// expert tensors, old unsplit attn_kv_b, rope scaling other than none/linear/yarn).
Result<std::string> LoadExpertModel(const formats::gguf::File& f, const std::string& path,
                                    ModelConfig* c, ModelWeights* w);

// The forward pass of an expert architecture: its own KV cache (for MLA the latent vector and
// the rope part per token and layer) and scratch buffers, allocated at construction.
class ExpertForward {
 public:
  ExpertForward(const Model& model, ThreadPool& pool, const Kernels& kernels, int n_ctx,
                int max_batch);
  // Runs `n` tokens at positions p0..p0+n-1 and writes the logits of the last one (or of every
  // one when `all_rows`, n rows) to `logits_out` (nullptr: none). Token ids and the context limit
  // are checked by the caller.
  void Forward(const std::int32_t* tokens, int n, int p0, float* logits_out, bool all_rows);

 private:
  void RopeAngles(int n, int p0);
  void Rope(float* v, int n_rows, std::int64_t row_stride, int n_heads, std::int64_t head_stride,
            int offset, RopeStyle style);
  void Attention(int layer, int n, int p0);
  void LatentAttention(int layer, int n, int p0);
  void DenseFfn(const WeightMatrix& gate, const WeightMatrix& up, const WeightMatrix& down, int n,
                float* out);
  void MoeFfn(int layer, int n);
  void Route(int layer, int n);

  const ModelConfig& c_;
  const ExpertConfig& m_;
  const ModelWeights& w_;
  ThreadPool& pool_;
  const Kernels& k_;
  int n_ctx_, max_batch_;
  std::int64_t q_dim_ = 0, kv_dim_ = 0, cache_dim_ = 0;
  float kq_scale_ = 0;
  std::vector<float> k_cache_, v_cache_;  // MLA: k_cache_ holds [kv_lora | k_rope] rows, no V
  std::vector<float> x_, xn_, q_, kk_, vv_, attn_, tmp_, gate_, up_, qa_, kva_, qabs_, lat_;
  std::vector<float> router_logits_, scores_, sel_;
  std::vector<float> moe_in_, moe_h_, moe_up_, moe_out_, shexp_scalar_;
  std::vector<int> choice_;    // [token][n_expert_used] expert ids
  std::vector<float> weight_;  // [token][n_expert_used] routing weights
  std::vector<int> order_;     // (token, slot) pairs sorted by expert
  std::vector<int> expert_start_;
  std::vector<double> inv_freq_;
  std::vector<float> rope_cos_, rope_sin_, ramp_;
  float rope_mscale_ = 1;
  std::vector<float> qnope_;
  ActivationBuffer act_, act2_;
  struct GroupJob {
    WeightMatrix w;
    int a0, a1;  // activation rows [a0, a1)
    float* out;  // out[(t - a0) * ldo + r]
    std::size_t ldo;
  };
  // Runs every job (each a matrix over its own range of activation rows) in one pool run.
  void GroupedMatMul(ActivationBuffer& act, int n_jobs);
  std::vector<GroupJob> jobs_;
  std::vector<int> task_start_;
  std::vector<std::int64_t> chunk_;  // rows per task of each job
};

}  // namespace airlock::engine::internal
