// The state behind engine::Tokenizer, shared by tokenizer.cc (vocabulary set-up, special tokens,
// decoding) and the two model algorithms (tokenizer_bpe.cc, tokenizer_spm.cc).
// Immutable once built; every method is const and safe to call concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/internal/tokenizer_pretokenizer.h"
#include "engine/tokenizer.h"

namespace airlock::engine {

struct Tokenizer::Impl {
  VocabKind kind = VocabKind::kBpe;
  std::string pre;
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<TokenType> types;
  std::vector<uint8_t> strip;       // kStripLeft / kStripRight per token (partitioning)
  std::vector<std::string> pieces;  // decoded bytes per token, special tokens as their text
  std::vector<uint8_t> eog;         // 1 = end of generation

  TokenId bos = kNoToken, eos = kNoToken, eot = kNoToken, eom = kNoToken, unk = kNoToken,
          pad = kNoToken;
  bool add_bos = false, add_eos = false, add_space_prefix = false, ignore_merges = false;
  // SPM: no token has U+2581 right after another character, so no merge can cross the point
  // before a U+2581 that follows a non-U+2581 character; text is merged word by word there
  // (same result, small heaps).
  bool spm_split_at_spaces = false;

  // Control/user-defined/unknown tokens, longest text first: the order partitioning tries them.
  std::vector<TokenId> special_cache;

  // Text -> id. Ids below tokens.size() are tokens (a duplicated text maps to its last id, as in
  // llama.cpp); BPE interns merge operands that are not tokens as further ids.
  std::unordered_map<std::string_view, int32_t> piece_ids;
  std::deque<std::string> extra_pieces;  // storage for those further ids' text

  struct Merge {
    int32_t rank;
    int32_t result;  // piece id of left+right
  };
  std::unordered_map<uint64_t, Merge> merges;  // (left piece id << 32 | right piece id)

  std::optional<internal::PreTokenizer> pretokenizer;
  // Fallback for unmatched bytes: SPM "<0xXX>" (else the 1-byte text), BPE the 1-byte text.
  std::array<TokenId, 256> byte_tokens{};

  static constexpr uint8_t kStripLeft = 1;
  static constexpr uint8_t kStripRight = 2;

  int32_t n_tokens() const { return static_cast<int32_t>(tokens.size()); }
  // The token whose text is `text`, or kNoToken.
  TokenId FindToken(std::string_view text) const {
    auto it = piece_ids.find(text);
    return it != piece_ids.end() && it->second < n_tokens() ? it->second : kNoToken;
  }

  // Appends the ids for one stretch of plain text (no special-token parsing).
  void EncodeBpe(std::string_view text, std::vector<TokenId>* out) const;
  // `text` already has the space prefix and spaces escaped as U+2581.
  void EncodeSpm(std::string_view text, std::vector<TokenId>* out) const;
  void EncodeSpmChunk(std::string_view text, std::vector<TokenId>* out) const;
};

}  // namespace airlock::engine
