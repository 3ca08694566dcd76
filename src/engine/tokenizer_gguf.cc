// Tokenizer::FromGguf: reads the tokenizer.* metadata of a parsed GGUF into a Vocabulary.
// Key names and defaults follow llama.cpp's llama_vocab::impl::load (src/llama-vocab.cpp).
#include <limits>

#include "engine/tokenizer.h"
#include "formats/gguf.h"

namespace airlock::engine {
namespace {

namespace gguf = formats::gguf;

Status WrongType(std::string_view key, std::uint64_t index, std::string_view want) {
  return Corrupt("engine: tokenizer at " + std::string(key) + "[" + std::to_string(index) +
                 "]: element is not " + std::string(want));
}

Result<std::vector<std::string>> ReadStrings(const gguf::File& file, std::string_view key,
                                             bool required) {
  std::vector<std::string> out;
  const gguf::KeyValue* kv = file.Find(key);
  if (kv == nullptr) {
    if (required) return NotFound("engine: tokenizer at " + std::string(key) + ": key missing");
    return out;
  }
  auto array = kv->value.AsArray();
  if (!array) return Corrupt("engine: tokenizer at " + std::string(key) + ": not an array");
  out.reserve(array->size());
  for (std::uint64_t i = 0; i < array->size(); ++i) {
    auto s = array->StringAt(i);
    if (!s) return WrongType(key, i, "a string");
    out.emplace_back(*s);
  }
  return out;
}

std::optional<TokenId> ReadId(const gguf::File& file, std::string_view key) {
  auto v = file.GetUint(key);
  if (!v) return std::nullopt;
  if (*v > static_cast<std::uint64_t>(std::numeric_limits<TokenId>::max())) return kNoToken;
  return static_cast<TokenId>(*v);
}

}  // namespace

Result<Tokenizer> Tokenizer::FromGguf(const gguf::File& file) {
  AIRLOCK_ASSIGN_OR_RETURN(Vocabulary vocab, ReadGgufVocabulary(file));
  return FromVocabulary(std::move(vocab));
}

Result<Vocabulary> Tokenizer::ReadGgufVocabulary(const gguf::File& file) {
  Vocabulary vocab;
  auto model = file.GetString("tokenizer.ggml.model");
  if (!model) return NotFound("engine: tokenizer at tokenizer.ggml.model: key missing");
  if (*model == "llama") {
    vocab.kind = VocabKind::kSpm;
  } else if (*model == "gpt2") {
    vocab.kind = VocabKind::kBpe;
  } else {
    return Unsupported("engine: tokenizer at tokenizer.ggml.model: '" +
                       std::string(model->substr(0, 64)) +
                       "' is not supported (byte-level BPE 'gpt2' and SentencePiece 'llama' are)");
  }
  if (auto pre = file.GetString("tokenizer.ggml.pre")) vocab.pre = std::string(*pre);
  if (auto name = file.GetString("general.name")) vocab.model_name = std::string(*name);

  AIRLOCK_ASSIGN_OR_RETURN(vocab.tokens, ReadStrings(file, "tokenizer.ggml.tokens", true));
  const std::uint64_t n = vocab.tokens.size();

  if (const gguf::KeyValue* kv = file.Find("tokenizer.ggml.scores")) {
    auto array = kv->value.AsArray();
    if (!array || array->size() != n) {
      return Corrupt("engine: tokenizer at tokenizer.ggml.scores: expected an array of " +
                     std::to_string(n) + " floats");
    }
    vocab.scores.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      auto f = array->FloatAt(i);
      if (!f) return WrongType("tokenizer.ggml.scores", i, "a float");
      vocab.scores.push_back(static_cast<float>(*f));
    }
  }
  if (const gguf::KeyValue* kv = file.Find("tokenizer.ggml.token_type")) {
    auto array = kv->value.AsArray();
    if (!array || array->size() != n) {
      return Corrupt("engine: tokenizer at tokenizer.ggml.token_type: expected an array of " +
                     std::to_string(n) + " integers");
    }
    vocab.types.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      auto t = array->IntAt(i);
      if (!t) return WrongType("tokenizer.ggml.token_type", i, "an integer");
      vocab.types.push_back(*t >= 0 && *t <= 6 ? static_cast<TokenType>(*t)
                                               : TokenType::kUndefined);
    }
  }
  if (vocab.kind == VocabKind::kBpe) {
    AIRLOCK_ASSIGN_OR_RETURN(vocab.merges, ReadStrings(file, "tokenizer.ggml.merges", true));
  }

  vocab.bos = ReadId(file, "tokenizer.ggml.bos_token_id");
  vocab.eos = ReadId(file, "tokenizer.ggml.eos_token_id");
  vocab.eot = ReadId(file, "tokenizer.ggml.eot_token_id");
  vocab.eom = ReadId(file, "tokenizer.ggml.eom_token_id");
  vocab.unk = ReadId(file, "tokenizer.ggml.unknown_token_id");
  vocab.pad = ReadId(file, "tokenizer.ggml.padding_token_id");
  vocab.add_bos = file.GetBool("tokenizer.ggml.add_bos_token");
  vocab.add_eos = file.GetBool("tokenizer.ggml.add_eos_token");
  vocab.add_space_prefix = file.GetBool("tokenizer.ggml.add_space_prefix");
  return vocab;
}

}  // namespace airlock::engine
