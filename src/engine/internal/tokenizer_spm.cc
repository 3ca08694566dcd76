// SentencePiece (BPE flavour), as llama.cpp's llm_tokenizer_spm_session: start from UTF-8
// characters and repeatedly merge the adjacent pair whose concatenation is a token with the
// highest score (ties: leftmost); pieces that are not tokens fall back to <0xXX> byte tokens.
#include <queue>
#include <unordered_map>

#include "engine/internal/tokenizer_impl.h"
#include "engine/internal/tokenizer_unicode.h"

namespace airlock::engine {
namespace {

struct Symbol {
  uint32_t begin;
  uint32_t length;  // 0 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

struct Candidate {
  float score;
  int32_t left;
  int32_t right;
  uint32_t size;
};

struct LowerPriority {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

void Tokenizer::Impl::EncodeSpm(std::string_view text, std::vector<TokenId>* out) const {
  if (!spm_split_at_spaces) {
    EncodeSpmChunk(text, out);
    return;
  }
  static constexpr std::string_view kSpace = "\xE2\x96\x81";
  // Words repeat: remember each chunk's ids for the rest of this call.
  constexpr std::size_t kMaxCachedWords = 1u << 16;
  std::unordered_map<std::string_view, std::pair<std::size_t, std::size_t>> cache;
  auto encode_chunk = [&](std::string_view chunk) {
    if (auto hit = cache.find(chunk); hit != cache.end()) {
      for (std::size_t k = 0; k < hit->second.second; ++k) {
        TokenId id = (*out)[hit->second.first + k];  // copy first: push_back may reallocate
        out->push_back(id);
      }
      return;
    }
    std::size_t first = out->size();
    EncodeSpmChunk(chunk, out);
    if (cache.size() < kMaxCachedWords)
      cache.emplace(chunk, std::make_pair(first, out->size() - first));
  };
  // Split before a U+2581 character that follows another character, walking the same
  // character boundaries EncodeSpmChunk uses (an invalid lead byte can swallow what follows).
  std::size_t begin = 0;
  bool previous_is_space = true;
  for (std::size_t offset = 0; offset < text.size();) {
    std::size_t len = std::min(text.size() - offset, internal::Utf8SequenceLength(text[offset]));
    bool is_space = text.substr(offset, len) == kSpace;
    if (is_space && !previous_is_space && offset > begin) {
      encode_chunk(text.substr(begin, offset - begin));
      begin = offset;
    }
    previous_is_space = is_space;
    offset += len;
  }
  encode_chunk(text.substr(begin));
}

void Tokenizer::Impl::EncodeSpmChunk(std::string_view text, std::vector<TokenId>* out) const {
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (std::size_t offset = 0; offset < text.size();) {
    std::size_t len = std::min(text.size() - offset, internal::Utf8SequenceLength(text[offset]));
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(offset), static_cast<uint32_t>(len), index - 1,
                       offset + len == text.size() ? -1 : index + 1});
    offset += len;
  }
  if (symbols.empty()) return;

  std::priority_queue<Candidate, std::vector<Candidate>, LowerPriority> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    uint32_t size = symbols[left].length + symbols[right].length;
    TokenId id = FindToken(text.substr(symbols[left].begin, size));
    if (id == kNoToken) return;
    queue.push({scores.empty() ? 0.0f : scores[id], left, right, size});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != c.size) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    try_add(left.prev, c.left);
    try_add(c.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.length == 0) continue;
    std::string_view piece = text.substr(s.begin, s.length);
    TokenId id = FindToken(piece);
    if (id != kNoToken) {
      out->push_back(id);
      continue;
    }
    // Merged pieces are always tokens, so this is a single character missing from the
    // vocabulary: one byte token per byte.
    for (char c : piece) {
      TokenId b = byte_tokens[static_cast<uint8_t>(c)];
      if (b == kNoToken) b = unk;
      if (b != kNoToken) out->push_back(b);
    }
  }
}

}  // namespace airlock::engine
