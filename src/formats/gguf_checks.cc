// Model-level consistency checks over a parsed GGUF file (see CheckModelMetadata in gguf.h).
#include <string>

#include "core/text.h"
#include "formats/gguf.h"

namespace airlock::formats::gguf {

namespace {

constexpr std::int32_t kTokenTypeByte = 6;  // llama_token_type LLAMA_TOKEN_TYPE_BYTE

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool ValidArchName(std::string_view a) {
  if (a.empty() || a.size() > 64) return false;
  for (char c : a) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  }
  return true;
}

std::string Shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

std::vector<Issue> CheckModelMetadata(const File& file) {
  std::vector<Issue> issues;
  auto add = [&issues](std::string code, std::string message, std::uint64_t offset) {
    issues.push_back({std::move(code), std::move(message), offset});
  };

  std::string arch(file.architecture());
  const KeyValue* arch_kv = file.Find("general.architecture");
  if (arch_kv == nullptr) {
    add("missing-architecture", "general.architecture is missing (llama.cpp refuses the file)", 0);
  } else if (!arch_kv->value.AsString() || !ValidArchName(arch)) {
    add("hparam-architecture", "general.architecture is not a short [a-z0-9_-] name",
        arch_kv->offset);
  }

  // Vocabulary arrays.
  std::optional<std::uint64_t> n_vocab;
  const KeyValue* tokens_kv = file.Find("tokenizer.ggml.tokens");
  std::optional<ArrayView> tokens;
  if (tokens_kv != nullptr) {
    tokens = tokens_kv->value.AsArray();
    if (!tokens || tokens->element_type() != ValueType::kString) {
      add("vocab-type", "tokenizer.ggml.tokens is not an array of strings", tokens_kv->offset);
      tokens.reset();
    } else {
      n_vocab = tokens->size();
      if (*n_vocab == 0) add("vocab-empty", "tokenizer.ggml.tokens is empty", tokens_kv->offset);
    }
  }
  struct ArraySpec {
    const char* key;
    ValueType type;
  };
  for (ArraySpec spec : {ArraySpec{"tokenizer.ggml.scores", ValueType::kFloat32},
                         ArraySpec{"tokenizer.ggml.token_type", ValueType::kInt32}}) {
    const KeyValue* kv = file.Find(spec.key);
    if (kv == nullptr) continue;
    auto arr = kv->value.AsArray();
    if (!arr || arr->element_type() != spec.type) {
      add("vocab-type",
          std::string(spec.key) + " is not an array of " + std::string(ValueTypeName(spec.type)),
          kv->offset);
      continue;
    }
    if (n_vocab && arr->size() != *n_vocab) {
      add("vocab-length-mismatch",
          std::string(spec.key) + " has " + std::to_string(arr->size()) +
              " entries but tokenizer.ggml.tokens has " + std::to_string(*n_vocab),
          kv->offset);
    } else if (!n_vocab) {
      add("vocab-length-mismatch",
          std::string(spec.key) + " is present without tokenizer.ggml.tokens", kv->offset);
    }
  }
  if (const KeyValue* kv = file.Find("tokenizer.ggml.merges")) {
    auto arr = kv->value.AsArray();
    if (!arr || arr->element_type() != ValueType::kString) {
      add("vocab-type", "tokenizer.ggml.merges is not an array of strings", kv->offset);
    }
  }

  // BYTE tokens must be spelled <0xHH> (plamo2 "<0x-1>" heap write, llama.cpp issue #27226).
  if (tokens) {
    auto types = file.GetArray("tokenizer.ggml.token_type");
    if (types && types->element_type() == ValueType::kInt32 && types->size() == tokens->size()) {
      int reported = 0;
      for (std::uint64_t i = 0; i < tokens->size() && reported < 4; ++i) {
        if (types->At<std::int32_t>(i) != kTokenTypeByte) continue;
        std::string_view t = *tokens->StringAt(i);
        bool ok =
            t.size() == 6 && t.substr(0, 3) == "<0x" && IsHex(t[3]) && IsHex(t[4]) && t[5] == '>';
        if (!ok) {
          add("bad-byte-token",
              "token " + std::to_string(i) + " has type BYTE but its text \"" + Shown(t) +
                  "\" is not <0xHH>",
              tokens->offset());
          ++reported;
        }
      }
    }
  }

  // Special-token ids index the vocabulary (GHSA-g4cc-763q-h9h6, llama.cpp PRs #25475/#25508).
  // 0xFFFFFFFF / -1 means "none" to llama.cpp.
  for (const KeyValue& kv : file.metadata()) {
    std::string_view key = kv.key;
    if (key.substr(0, 15) != "tokenizer.ggml." || !key.ends_with("_token_id")) continue;
    auto as_int = kv.value.AsInt();
    if (!as_int) {
      add("special-token-type", std::string(key) + " is not an integer", kv.offset);
      continue;
    }
    if (*as_int == -1 || *as_int == 0xFFFFFFFFll) continue;
    if (*as_int < 0 || !n_vocab || static_cast<std::uint64_t>(*as_int) >= *n_vocab) {
      add("special-token-out-of-range",
          std::string(key) + " = " + std::to_string(*as_int) + " is outside the vocabulary (" +
              (n_vocab ? std::to_string(*n_vocab) + " tokens" : std::string("no tokens")) + ")",
          kv.value.offset());
    }
  }

  // Hyperparameters.
  if (!arch.empty()) {
    auto key = [&arch](std::string_view suffix) { return arch + "." + std::string(suffix); };
    if (const KeyValue* kv = file.Find(key("block_count"))) {
      auto v = kv->value.AsUint();
      if (!v || *v == 0 || *v > kMaxLayers) {
        add("hparam-block-count",
            key("block_count") + " is not an integer in 1.." + std::to_string(kMaxLayers) +
                " (larger values overflowed llama.cpp's per-layer arrays)",
            kv->value.offset());
      }
    }
    if (const KeyValue* kv = file.Find(key("context_length"))) {
      auto v = kv->value.AsUint();
      if (!v || *v == 0 || *v > (1ull << 31)) {
        add("hparam-context-length", key("context_length") + " is not an integer in 1..2^31",
            kv->value.offset());
      }
    }
    auto heads = file.GetUint(key("attention.head_count"));
    auto heads_kv = file.GetUint(key("attention.head_count_kv"));
    auto embd = file.GetUint(key("embedding_length"));
    if (heads && heads_kv && *heads_kv != 0 && *heads % *heads_kv != 0) {
      add("hparam-heads",
          "attention.head_count " + std::to_string(*heads) +
              " is not a multiple of head_count_kv " + std::to_string(*heads_kv),
          0);
    }
    if (auto vs = file.GetUint(key("vocab_size")); vs && n_vocab && *vs != *n_vocab) {
      // Padded embedding matrices make vocab_size > token count legitimate; smaller is not.
      if (*vs < *n_vocab) {
        add("vocab-length-mismatch",
            key("vocab_size") + " " + std::to_string(*vs) + " is smaller than the " +
                std::to_string(*n_vocab) + " tokens",
            0);
      }
    }
    if (const TensorInfo* emb = file.FindTensor("token_embd.weight")) {
      if (embd && emb->ne[0] != *embd) {
        add("hparam-shape-mismatch",
            "token_embd.weight row length " + std::to_string(emb->ne[0]) +
                " differs from embedding_length " + std::to_string(*embd),
            emb->info_offset);
      }
      if (n_vocab && emb->ne[1] < *n_vocab) {
        add("hparam-shape-mismatch",
            "token_embd.weight has " + std::to_string(emb->ne[1]) + " rows for " +
                std::to_string(*n_vocab) + " tokens (token ids would index past it)",
            emb->info_offset);
      }
    }
  }

  bool quantized = false;
  for (const TensorInfo& t : file.tensors()) {
    const TypeTraits* tt = GetTypeTraits(t.type);
    if (tt != nullptr && tt->quantized) quantized = true;
  }
  if (quantized && !file.Find("general.quantization_version")) {
    add("missing-quantization-version", "quantized tensors but no general.quantization_version", 0);
  }
  return issues;
}

}  // namespace airlock::formats::gguf
