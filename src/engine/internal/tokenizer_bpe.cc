// Byte-level BPE, as llama.cpp's llm_tokenizer_bpe_session: pre-tokenize, map bytes to printable
// code points, then repeatedly merge the adjacent pair with the lowest merge rank (ties: leftmost)
// using a priority queue of candidate pairs that are re-checked when popped.
#include <queue>
#include <unordered_map>

#include "engine/internal/tokenizer_impl.h"
#include "engine/internal/tokenizer_unicode.h"

namespace airlock::engine {
namespace {

struct Symbol {
  uint32_t begin;
  uint32_t length;  // 0 once merged into its left neighbour
  int32_t id;       // piece id of the text, -1 when the text is in no vocabulary or merge
  int32_t prev;
  int32_t next;
};

struct Candidate {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t result;
};

struct LaterCandidate {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

void Tokenizer::Impl::EncodeBpe(std::string_view text, std::vector<TokenId>* out) const {
  std::vector<uint32_t> cps;
  internal::DecodeUtf8Lenient(text, &cps);
  const auto words = pretokenizer->Split(cps);

  std::string word;
  std::string utf8;
  std::vector<Symbol> symbols;
  std::priority_queue<Candidate, std::vector<Candidate>, LaterCandidate> queue;
  // Words repeat in natural text: remember each word's ids for the rest of this call.
  constexpr std::size_t kMaxCachedWords = 1u << 16;
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> cache;  // word -> range in `out`

  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    int32_t left_id = symbols[left].id, right_id = symbols[right].id;
    if (left_id < 0 || right_id < 0) return;
    auto it = merges.find((static_cast<uint64_t>(static_cast<uint32_t>(left_id)) << 32) |
                          static_cast<uint32_t>(right_id));
    if (it == merges.end()) return;
    queue.push({it->second.rank, left, right, left_id, right_id, it->second.result});
  };

  for (const auto& [begin, end] : words) {
    // Byte-level form of the word.
    word.clear();
    utf8.clear();
    for (std::size_t i = begin; i < end; ++i) internal::AppendUtf8(cps[i], &utf8);
    for (char c : utf8) word += internal::ByteToUtf8(static_cast<uint8_t>(c));
    if (word.empty()) continue;
    if (auto hit = cache.find(word); hit != cache.end()) {
      auto [first, count] = hit->second;
      for (uint32_t k = 0; k < count; ++k) {
        TokenId id = (*out)[first + k];  // copy first: push_back may reallocate
        out->push_back(id);
      }
      continue;
    }
    const std::size_t out_begin = out->size();

    if (ignore_merges) {
      TokenId whole = FindToken(word);
      if (whole != kNoToken) {
        out->push_back(whole);
        continue;
      }
    }

    symbols.clear();
    for (std::size_t offset = 0; offset < word.size();) {
      std::size_t len = std::min(word.size() - offset, internal::Utf8SequenceLength(word[offset]));
      auto it = piece_ids.find(std::string_view(word).substr(offset, len));
      int32_t index = static_cast<int32_t>(symbols.size());
      symbols.push_back({static_cast<uint32_t>(offset), static_cast<uint32_t>(len),
                         it == piece_ids.end() ? -1 : it->second, index - 1,
                         offset + len == word.size() ? -1 : index + 1});
      offset += len;
    }
    for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
      Candidate c = queue.top();
      queue.pop();
      Symbol& left = symbols[c.left];
      Symbol& right = symbols[c.right];
      // Outdated: one side was merged away or has grown since the pair was queued.
      if (left.length == 0 || right.length == 0 || left.id != c.left_id || right.id != c.right_id) {
        continue;
      }
      left.length += right.length;
      left.id = c.result;
      right.length = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = c.left;
      try_add(left.prev, c.left);
      try_add(c.left, left.next);
    }

    for (int32_t i = 0; i != -1; i = symbols[i].next) {
      const Symbol& s = symbols[i];
      if (s.length == 0) continue;
      if (s.id >= 0 && s.id < n_tokens()) {
        out->push_back(s.id);
        continue;
      }
      // Not a token: llama.cpp falls back to tokens for the single bytes of the piece's text.
      for (uint32_t k = 0; k < s.length; ++k) {
        TokenId t = byte_tokens[static_cast<uint8_t>(word[s.begin + k])];
        if (t != kNoToken) out->push_back(t);
      }
    }
    if (cache.size() < kMaxCachedWords && out->size() <= 0xFFFFFFFFu) {
      cache.emplace(word, std::make_pair(static_cast<uint32_t>(out_begin),
                                         static_cast<uint32_t>(out->size() - out_begin)));
    }
  }
}

}  // namespace airlock::engine
