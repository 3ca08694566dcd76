// airlock::scan::Inspect*: what a person wants to know about a GGUF or safetensors model before
// running it (architecture, size, tensor types, context, tokenizer, chat template, license and
// source claims, memory needed at a context length). Reads headers only, never tensor data, and
// never renders the chat template. For safetensors, hyperparameters come from a config.json (and
// the template from tokenizer_config.json) beside the file when present.
// Used by `airlock inspect` and reusable by `assess`. Thread-safety: reentrant.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace airlock::scan {

// Element type of the KV cache in the memory estimate (airlock's engine: F16 by default,
// --kv-type f32 or q8_0).
enum class KvElementType { kF16, kF32, kQ8_0 };

struct InspectOptions {
  // Context length for the memory estimate; 0 means min(model context length, 4096).
  std::uint64_t context = 0;
  KvElementType kv_type = KvElementType::kF16;  // KV cache type of the memory estimate
};

struct TensorTypeStat {
  std::string type;  // "Q4_K", "F16", "BF16"...
  std::uint64_t tensors = 0;
  std::uint64_t elements = 0;
  std::uint64_t bytes = 0;
};

struct SpecialToken {
  std::string role;  // "bos", "eos", "padding"...
  std::int64_t id = -1;
  std::string text;  // the token's text when the vocabulary has it
};

struct ModelSummary {
  std::string path;
  std::string format;  // "gguf" or "safetensors"
  std::uint64_t file_size = 0;
  std::string name;
  std::string architecture;
  std::string file_type;  // GGUF general.file_type as a name ("Q4_K_M"), or safetensors dtype

  std::uint64_t tensor_count = 0;
  std::uint64_t parameter_count = 0;
  std::uint64_t weight_bytes = 0;
  std::vector<TensorTypeStat> tensor_types;  // largest share first
  // Mixture-of-experts GGUF files (expert_count and expert_used_count set): the parameters and
  // bytes one token uses, i.e. all tensors minus the routed experts it does not select (3-D
  // *_exps tensors count expert_used_count / expert_count of their size).
  std::optional<std::uint64_t> active_parameter_count, active_weight_bytes;

  std::optional<std::uint64_t> context_length, embedding_length, block_count, feed_forward_length,
      head_count, head_count_kv, key_length, value_length, expert_count, expert_used_count;
  // Multi-head latent attention (deepseek2): the cache holds kv_lora_rank + rope dimensions per
  // layer and token instead of K and V per head.
  std::optional<std::uint64_t> kv_lora_rank, rope_dimension_count;
  std::optional<double> rope_freq_base;

  std::string tokenizer_model;  // "gpt2", "llama"...
  std::string tokenizer_pre;
  std::optional<std::uint64_t> vocab_size;
  std::optional<std::uint64_t> merges;
  std::vector<SpecialToken> special_tokens;
  std::optional<bool> add_bos, add_eos;

  bool has_chat_template = false;
  std::uint64_t chat_template_bytes = 0;
  std::vector<std::string> chat_template_head;  // first lines, printable, truncated
  std::vector<std::string> named_templates;     // tokenizer.chat_template.<name>
  // The template compared with the registry of official templates (template/registry.h):
  // "official Qwen2.5 template (...)", "differs from every official template; closest: ..." or
  // "does not parse".
  std::string chat_template_origin;
  // Natural-language text the template adds to the prompt, with where it lands and whether an
  // official template has it (the scanner reports the unofficial pieces as template.injected-*).
  struct TemplateText {
    std::string text;       // printable, truncated
    std::string placement;  // tmpl::PlacementName
    bool official = false;
  };
  std::vector<TemplateText> chat_template_text;

  // Provenance claims as written by whoever made the file (license, source, base models,
  // author...). Unverified: compare with `airlock verify`.
  std::vector<std::pair<std::string, std::string>> claims;

  // Memory estimate: weights (memory-mapped) plus the KV cache airlock's engine allocates at
  // `context` in `kv_type` (standard attention: K and V per layer, KV head and token; MLA: one
  // latent row per layer and token).
  std::uint64_t context = 0;
  std::string kv_type = "f16";
  std::uint64_t kv_bytes_per_token = 0;
  std::uint64_t kv_cache_bytes = 0;
  std::uint64_t total_memory_bytes = 0;

  std::vector<std::string> warnings;  // structural anomalies and consistency issues
};

// Inspects the file at `path` (memory-mapped). Errors: kNotFound/kIo (cannot open),
// kUnsupported (neither GGUF nor safetensors), kCorrupt (the header does not parse).
Result<ModelSummary> InspectFile(const std::string& path, const InspectOptions& options = {});

// Inspects bytes already in memory (`display_name` is reported as the path; no sibling files).
Result<ModelSummary> InspectBuffer(std::span<const std::byte> data, const std::string& display_name,
                                   const InspectOptions& options = {});

std::string RenderInspectText(const ModelSummary& s);
std::string RenderInspectJson(const ModelSummary& s);  // one JSON object, stable keys

}  // namespace airlock::scan
