// Tokenizer: text <-> token ids exactly as llama.cpp's llama_tokenize/llama_token_to_piece do for
// byte-level BPE vocabularies (gpt2 model type; pre-tokenizers llama3, qwen2/deepseek-r1-qwen,
// deepseek-llm, deepseek-coder, deepseek-v3, gpt-2, falcon, mpt, starcoder, refact, ...) and
// SentencePiece vocabularies (llama model type, with byte fallback). Special-token text is turned
// into control tokens only where the caller says so (parse_special, or per TextSegment).
// Ownership: a Tokenizer copies what it needs out of the GGUF; copies share immutable state.
// Thread-safety: all const methods may run concurrently; StreamDecoder is per-stream state.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace airlock::formats::gguf {
class File;
}

namespace airlock::engine {

using TokenId = int32_t;
inline constexpr TokenId kNoToken = -1;

// tokenizer.ggml.token_type values.
enum class TokenType : uint8_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

enum class VocabKind { kBpe, kSpm };

// Everything a tokenizer is built from: what a GGUF's tokenizer.* keys hold, or a hand-made
// vocabulary in tests. Optional fields left unset take llama.cpp's defaults for the kind.
struct Vocabulary {
  VocabKind kind = VocabKind::kBpe;
  std::string pre;                  // tokenizer.ggml.pre (BPE); "" = llama.cpp's default regexes
  std::string model_name;           // general.name (llama.cpp keys a few token attributes on it)
  std::vector<std::string> tokens;  // id -> text
  std::vector<float> scores;        // SPM merge priorities; empty = all 0
  std::vector<TokenType> types;     // empty = all normal
  std::vector<std::string> merges;  // BPE "left right", rank = index
  std::optional<TokenId> bos, eos, eot, eom, unk, pad;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
};

// A piece of input for EncodeSegments: special-token text inside it becomes control tokens only
// when parse_special is true (chat templates mark their own text so, and user content not).
struct TextSegment {
  std::string text;
  bool parse_special = false;
};

// A byte range [begin, end) of a text and whether special-token text may be parsed in it: how
// tmpl::RenderChat's ChatPrompt maps over (kTemplate -> true, kContent -> false).
struct TextSpan {
  std::size_t begin = 0;
  std::size_t end = 0;
  bool parse_special = false;
};

class Tokenizer {
 public:
  // Builds the tokenizer from a parsed GGUF's tokenizer.* metadata. Errors: kNotFound (no
  // tokenizer.ggml.model / tokens), kUnsupported (a model or pre-tokenizer type we do not
  // implement: bert, t5, rwkv, an unknown pre name), kCorrupt (arrays of the wrong type or length,
  // too many tokens).
  static Result<Tokenizer> FromGguf(const formats::gguf::File& file);

  // Just the tokenizer.* metadata as a Vocabulary (FromGguf = this + FromVocabulary).
  // Errors: as FromGguf, except those only FromVocabulary detects (pre-tokenizer name).
  static Result<Vocabulary> ReadGgufVocabulary(const formats::gguf::File& file);

  // Builds from an in-memory vocabulary. Errors: as FromGguf.
  static Result<Tokenizer> FromVocabulary(Vocabulary vocab);

  // Token ids for `text`. add_special: BOS/EOS per the vocabulary's add_bos/add_eos settings.
  // parse_special: text equal to a control/unknown token's text becomes that token; otherwise
  // only user-defined tokens are matched literally (as llama.cpp does). Any bytes are accepted;
  // invalid UTF-8 is encoded as U+FFFD (BPE) or byte tokens (SPM). Never fails.
  std::vector<TokenId> Encode(std::string_view text, bool add_special, bool parse_special) const;

  // Encodes the concatenation of `segments`, parsing special-token text only inside segments
  // marked parse_special. Adjacent plain-text stretches are tokenized as one text, so the result
  // equals Encode(joined, add_special, true) whenever no unmarked segment contains special text.
  std::vector<TokenId> EncodeSegments(std::span<const TextSegment> segments,
                                      bool add_special) const;

  // The same over one text and its spans (in order, non-overlapping). Bytes outside every span,
  // and spans that are out of range or out of order, are treated as plain text (never parsed).
  std::vector<TokenId> EncodeSpans(std::string_view text, std::span<const TextSpan> spans,
                                   bool add_special) const;

  // Text for `ids`. Control and unknown tokens are skipped unless render_special. For SPM
  // vocabularies with add_space_prefix, the first piece loses one leading space. Out-of-range
  // ids are skipped.
  std::string Decode(std::span<const TokenId> ids, bool render_special = false) const;

  // The bytes one token stands for (special tokens rendered as their text); "" when out of range.
  // May be a partial UTF-8 sequence (byte tokens, byte-level BPE pieces).
  const std::string& TokenPiece(TokenId id) const;
  // The token's raw vocabulary string ("Ġhello", "▁the", "<0x0A>"); "" when out of range.
  std::string_view TokenText(TokenId id) const;
  TokenType GetTokenType(TokenId id) const;

  int32_t vocab_size() const;
  VocabKind kind() const;
  const std::string& pre() const;
  TokenId bos() const;  // kNoToken when the vocabulary has none
  TokenId eos() const;
  TokenId eot() const;
  bool add_bos() const;
  bool add_eos() const;
  bool IsControl(TokenId id) const;
  // End of generation: eos, eot, eom and the end-of-turn tokens llama.cpp recognizes by text.
  bool IsEog(TokenId id) const;
  // The token whose text is exactly `text`, or kNoToken.
  TokenId Find(std::string_view text) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Turns a stream of generated tokens into printable text without splitting UTF-8 sequences:
// bytes of an incomplete trailing sequence are held back until the next token completes them.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(&tokenizer), render_special_(render_special) {}

  // Text that became complete with `id` (possibly empty).
  std::string Push(TokenId id);
  // Whatever is still held back (an incomplete sequence at the very end), then resets.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool render_special_;
  std::string pending_;
};

}  // namespace airlock::engine
