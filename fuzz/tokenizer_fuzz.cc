// Tokenizer fuzz target: arbitrary bytes through Encode (BPE and SPM, with and without special
// parsing), EncodeSegments, Decode and StreamDecoder. Vocabularies from
// ../shared/fixtures/llama-vocab are loaded once when present (located from $AIRLOCK_FIXTURES or
// this source file's path); a small hand-made vocabulary is always used too. Every id produced
// must be in range, and decoding must not fail.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/file.h"
#include "engine/tokenizer.h"
#include "formats/gguf.h"

namespace {

using airlock::engine::TokenId;
using airlock::engine::Tokenizer;

struct Loaded {
  airlock::core::MappedFile mapped;  // kept: the tokenizer copies, but keep the map alive anyway
  std::unique_ptr<Tokenizer> tokenizer;
};

std::filesystem::path FixturesDir() {
  if (const char* env = std::getenv("AIRLOCK_FIXTURES")) return env;
  return std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "shared" / "fixtures";
}

std::unique_ptr<Tokenizer> HandMade() {
  airlock::engine::Vocabulary v;
  v.kind = airlock::engine::VocabKind::kBpe;
  v.pre = "deepseek-v3";
  v.tokens = {"a",
              "b",
              "ab",
              "\xC4\xA0",
              "\xC4\xA0"
              "a",
              "<|im_start|>",
              "<tool>",
              "1",
              "12"};
  v.types.assign(v.tokens.size(), airlock::engine::TokenType::kNormal);
  v.types[5] = airlock::engine::TokenType::kControl;
  v.types[6] = airlock::engine::TokenType::kUserDefined;
  v.merges = {"a b", "\xC4\xA0 a", "1 2"};
  auto t = Tokenizer::FromVocabulary(std::move(v));
  if (!t) std::abort();
  return std::make_unique<Tokenizer>(std::move(t).value());
}

std::vector<std::unique_ptr<Tokenizer>>& Tokenizers() {
  static auto* all = [] {
    auto* list = new std::vector<std::unique_ptr<Tokenizer>>();
    list->push_back(HandMade());
    const auto dir = FixturesDir() / "llama-vocab";
    for (const char* name : {"llama-spm", "qwen2", "llama-bpe", "deepseek-llm", "falcon"}) {
      auto mapped = airlock::core::MappedFile::Open(
          (dir / (std::string("ggml-vocab-") + name + ".gguf")).string());
      if (!mapped) continue;
      auto file = airlock::formats::gguf::File::Parse(mapped->bytes());
      if (!file) continue;
      auto t = Tokenizer::FromGguf(*file);
      if (t) list->push_back(std::make_unique<Tokenizer>(std::move(t).value()));
    }
    return list;
  }();
  return *all;
}

void CheckIds(const Tokenizer& t, const std::vector<TokenId>& ids) {
  for (TokenId id : ids) {
    if (id < 0 || id >= t.vocab_size()) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  auto& tokenizers = Tokenizers();
  const Tokenizer& t = *tokenizers[data[0] % tokenizers.size()];
  const std::uint8_t flags = data[1];
  std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);

  std::vector<TokenId> ids = t.Encode(text, flags & 1, flags & 2);
  CheckIds(t, ids);
  std::string decoded = t.Decode(ids, flags & 4);
  (void)decoded;

  airlock::engine::StreamDecoder stream(t, flags & 8);
  std::string streamed;
  for (TokenId id : ids) streamed += stream.Push(id);
  streamed += stream.Flush();
  if ((flags & 4) == 0 && (flags & 8) == 0 && streamed.size() < decoded.size()) __builtin_trap();

  std::size_t cut = text.empty() ? 0 : flags % (text.size() + 1);
  std::vector<airlock::engine::TextSegment> segments = {{std::string(text.substr(0, cut)), true},
                                                        {std::string(text.substr(cut)), false}};
  CheckIds(t, t.EncodeSegments(segments, flags & 16));
  return 0;
}
