// Vocabulary set-up, special-token partitioning, encoding orchestration and decoding. The merge
// algorithms live in internal/tokenizer_bpe.cc and internal/tokenizer_spm.cc; GGUF loading in
// tokenizer_gguf.cc. Behaviour follows llama.cpp's llama_vocab (src/llama-vocab.cpp).
#include "engine/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "engine/internal/tokenizer_impl.h"
#include "engine/internal/tokenizer_unicode.h"

namespace airlock::engine {
namespace {

constexpr std::size_t kMaxTokens = 16u << 20;
constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581

struct Fragment {
  TokenId token;  // kNoToken for plain text
  std::size_t offset;
  std::size_t length;
};

void ReplaceAll(std::string* s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s->size());
  std::size_t pos = 0;
  while (true) {
    std::size_t hit = s->find(from, pos);
    if (hit == std::string::npos) break;
    out.append(*s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(*s, pos, std::string::npos);
  *s = std::move(out);
}

bool IsAsciiSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// Splits the plain-text fragments of `fragments` on every occurrence of special-token text.
void Partition(const Tokenizer::Impl& impl, std::string_view text, bool parse_special,
               std::vector<Fragment>* fragments) {
  std::vector<Fragment> next;
  for (TokenId id : impl.special_cache) {
    TokenType type = impl.types[id];
    if (!parse_special && (type == TokenType::kControl || type == TokenType::kUnknown)) continue;
    const std::string& special = impl.tokens[id];
    if (special.empty()) continue;
    bool any = false;
    for (const Fragment& f : *fragments) {
      if (f.token == kNoToken && f.length >= special.size() &&
          text.substr(f.offset, f.length).find(special) != std::string_view::npos) {
        any = true;
        break;
      }
    }
    if (!any) continue;
    next.clear();
    for (const Fragment& f : *fragments) {
      if (f.token != kNoToken) {
        next.push_back(f);
        continue;
      }
      std::size_t base = f.offset, length = f.length;
      while (length > 0) {
        std::size_t hit = text.substr(base, length).find(special);
        if (hit == std::string_view::npos) {
          next.push_back({kNoToken, base, length});
          break;
        }
        std::size_t left_length = hit;
        if (impl.strip[id] & Tokenizer::Impl::kStripLeft) {
          while (left_length > 0 && IsAsciiSpace(text[base + left_length - 1])) --left_length;
        }
        if (left_length > 0) next.push_back({kNoToken, base, left_length});
        next.push_back({id, 0, 0});
        std::size_t right = base + hit + special.size();
        std::size_t right_length = base + length - right;
        if (impl.strip[id] & Tokenizer::Impl::kStripRight) {
          while (right_length > 0 && IsAsciiSpace(text[right])) {
            ++right;
            --right_length;
          }
        }
        base = right;
        length = right_length;
      }
    }
    fragments->swap(next);
  }
}

void EncodeFragments(const Tokenizer::Impl& impl, std::string_view text,
                     const std::vector<Fragment>& fragments, bool add_special,
                     std::vector<TokenId>* out) {
  if (add_special && impl.add_bos && impl.bos != kNoToken) out->push_back(impl.bos);
  if (impl.kind == VocabKind::kSpm) {
    bool previous_special = true;  // the first text gets the space prefix too
    std::string piece;
    for (const Fragment& f : fragments) {
      if (f.token != kNoToken) {
        out->push_back(f.token);
        previous_special = true;
        continue;
      }
      piece.clear();
      if (impl.add_space_prefix && previous_special) piece = " ";
      piece.append(text.substr(f.offset, f.length));
      ReplaceAll(&piece, " ", kSpmSpace);
      impl.EncodeSpm(piece, out);
      previous_special = false;
    }
  } else {
    for (const Fragment& f : fragments) {
      if (f.token != kNoToken) {
        out->push_back(f.token);
      } else {
        impl.EncodeBpe(text.substr(f.offset, f.length), out);
      }
    }
  }
  if (add_special && impl.add_eos && impl.eos != kNoToken) out->push_back(impl.eos);
}

// What a token prints as (llama.cpp's token_to_piece with special = true).
std::string ComputePiece(const Tokenizer::Impl& impl, TokenId id) {
  const std::string& text = impl.tokens[id];
  switch (impl.types[id]) {
    case TokenType::kUnknown:
    case TokenType::kControl:
    case TokenType::kUserDefined:
      return text;
    case TokenType::kNormal:
      break;
    case TokenType::kByte:
      if (impl.kind == VocabKind::kSpm && text.size() == 6 && text.starts_with("<0x") &&
          text[5] == '>') {
        unsigned value = 0;
        if (std::sscanf(text.c_str() + 3, "%2x", &value) == 1) {
          return std::string(1, static_cast<char>(value));
        }
      }
      return "";
    default:
      return "";
  }
  if (impl.kind == VocabKind::kSpm) {
    std::string piece = text;
    ReplaceAll(&piece, kSpmSpace, " ");
    return piece;
  }
  // Byte-level BPE: each code point stands for one byte; others pass through unchanged.
  std::vector<uint32_t> cps;
  internal::DecodeUtf8Lenient(text, &cps);
  std::string piece;
  for (uint32_t cp : cps) {
    int byte = internal::CodePointToByte(cp);
    if (byte >= 0) {
      piece.push_back(static_cast<char>(byte));
    } else {
      internal::AppendUtf8(cp, &piece);
    }
  }
  return piece;
}

const std::string& EmptyString() {
  static const std::string* empty = new std::string();
  return *empty;
}

}  // namespace

Result<Tokenizer> Tokenizer::FromVocabulary(Vocabulary vocab) {
  auto impl = std::make_shared<Impl>();
  const std::size_t n = vocab.tokens.size();
  if (n == 0) return NotFound("engine: tokenizer at tokenizer.ggml.tokens: empty vocabulary");
  if (n > kMaxTokens) {
    return Corrupt("engine: tokenizer at tokenizer.ggml.tokens: " + std::to_string(n) +
                   " tokens exceeds the limit of " + std::to_string(kMaxTokens));
  }
  if (!vocab.scores.empty() && vocab.scores.size() != n) {
    return Corrupt(
        "engine: tokenizer at tokenizer.ggml.scores: " + std::to_string(vocab.scores.size()) +
        " scores for " + std::to_string(n) + " tokens");
  }
  if (!vocab.types.empty() && vocab.types.size() != n) {
    return Corrupt(
        "engine: tokenizer at tokenizer.ggml.token_type: " + std::to_string(vocab.types.size()) +
        " types for " + std::to_string(n) + " tokens");
  }
  impl->kind = vocab.kind;
  impl->pre = vocab.pre;
  impl->tokens = std::move(vocab.tokens);
  impl->scores = std::move(vocab.scores);
  impl->types = std::move(vocab.types);
  if (impl->types.empty()) impl->types.assign(n, TokenType::kNormal);
  for (TokenType& t : impl->types) {
    if (static_cast<uint8_t>(t) > static_cast<uint8_t>(TokenType::kByte)) t = TokenType::kUndefined;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (impl->tokens[i].empty()) impl->tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
  }
  impl->strip.assign(n, 0);

  // Defaults per model kind, then the vocabulary's own settings.
  TokenId bos, eos, unk;
  if (impl->kind == VocabKind::kSpm) {
    bos = 1, eos = 2, unk = 0;
    impl->add_bos = true;
    impl->add_space_prefix = true;
  } else {
    bos = 11, eos = 11, unk = kNoToken;
    AIRLOCK_ASSIGN_OR_RETURN(internal::PreTokenizerSpec spec,
                             internal::PreTokenizerSpecFor(impl->pre));
    impl->ignore_merges = spec.ignore_merges;
    impl->add_bos = spec.add_bos;
    AIRLOCK_ASSIGN_OR_RETURN(internal::PreTokenizer pre,
                             internal::PreTokenizer::Create(spec.regexes));
    impl->pretokenizer = std::move(pre);
  }
  auto pick = [&](const std::optional<TokenId>& given, TokenId fallback) -> TokenId {
    TokenId id = given && *given >= 0 && static_cast<std::size_t>(*given) < n ? *given : fallback;
    return id >= 0 && static_cast<std::size_t>(id) < n ? id : kNoToken;
  };
  impl->bos = pick(vocab.bos, bos);
  impl->eos = pick(vocab.eos, eos);
  impl->unk = pick(vocab.unk, unk);
  impl->eot = pick(vocab.eot, kNoToken);
  impl->eom = pick(vocab.eom, kNoToken);
  impl->pad = pick(vocab.pad, kNoToken);
  if (vocab.add_bos) impl->add_bos = *vocab.add_bos;
  if (vocab.add_eos) impl->add_eos = *vocab.add_eos;
  if (vocab.add_space_prefix) impl->add_space_prefix = *vocab.add_space_prefix;

  // Text -> id (last duplicate wins).
  impl->piece_ids.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) impl->piece_ids[impl->tokens[i]] = static_cast<int32_t>(i);

  // BPE merges: intern both operands and the result, keep the first rank of a duplicate pair.
  if (impl->kind == VocabKind::kBpe) {
    auto intern = [&](std::string_view s) -> int32_t {
      auto it = impl->piece_ids.find(s);
      if (it != impl->piece_ids.end()) return it->second;
      int32_t id = static_cast<int32_t>(n + impl->extra_pieces.size());
      impl->extra_pieces.emplace_back(s);
      impl->piece_ids.emplace(impl->extra_pieces.back(), id);
      return id;
    };
    impl->merges.reserve(vocab.merges.size());
    std::string joined;
    for (std::size_t rank = 0; rank < vocab.merges.size(); ++rank) {
      const std::string& line = vocab.merges[rank];
      std::size_t space = line.size() > 1 ? line.find(' ', 1) : std::string::npos;
      if (space == std::string::npos || space + 1 >= line.size()) continue;
      std::string_view left = std::string_view(line).substr(0, space);
      std::string_view right = std::string_view(line).substr(space + 1);
      int32_t left_id = intern(left);
      int32_t right_id = intern(right);
      joined.assign(left);
      joined.append(right);
      int32_t result = intern(joined);
      uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(left_id)) << 32) |
                     static_cast<uint32_t>(right_id);
      impl->merges.emplace(key, Impl::Merge{static_cast<int32_t>(rank), result});
    }
  }

  if (impl->kind == VocabKind::kSpm) {
    // Character by character, as the SPM merge splits text.
    impl->spm_split_at_spaces = true;
    for (const std::string& token : impl->tokens) {
      bool previous_is_space = true;
      for (std::size_t offset = 0; offset < token.size();) {
        std::size_t len =
            std::min(token.size() - offset, internal::Utf8SequenceLength(token[offset]));
        bool is_space = std::string_view(token).substr(offset, len) == kSpmSpace;
        if (is_space && !previous_is_space) impl->spm_split_at_spaces = false;
        previous_is_space = is_space;
        offset += len;
      }
      if (!impl->spm_split_at_spaces) break;
    }
  }

  // Byte fallbacks.
  for (int b = 0; b < 256; ++b) {
    TokenId id = kNoToken;
    if (impl->kind == VocabKind::kSpm) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      id = impl->FindToken(name);
    }
    if (id == kNoToken) id = impl->FindToken(std::string(1, static_cast<char>(b)));
    impl->byte_tokens[b] = id;
  }

  // End-of-turn / end-of-generation tokens recognized by text; llama.cpp makes them control
  // tokens, so their text is never matched in plain text.
  auto force_control = [&](TokenId id) {
    if (id != kNoToken) impl->types[id] = TokenType::kControl;
  };
  auto find_first = [&](std::initializer_list<std::string_view> names) -> TokenId {
    for (std::string_view name : names) {
      TokenId id = impl->FindToken(name);
      if (id != kNoToken) return id;
    }
    return kNoToken;
  };
  if (impl->eot == kNoToken) {
    impl->eot = find_first({"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                            "<|end_of_text|>", "<EOT>", "_<EOT>",
                            "<\xEF\xBD\x9C"
                            "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                            "<end_of_utterance>"});
    force_control(impl->eot);
  }
  if (impl->eom == kNoToken) {
    impl->eom = find_first({"<|eom_id|>"});
    force_control(impl->eom);
  }
  const std::initializer_list<std::initializer_list<std::string_view>> fim_groups = {
      {"<|fim_prefix|>", "<fim-prefix>",
       "<\xEF\xBD\x9C"
       "fim\xE2\x96\x81"
       "begin\xEF\xBD\x9C>",
       "<PRE>"},
      {"<|fim_suffix|>", "<fim-suffix>",
       "<\xEF\xBD\x9C"
       "fim\xE2\x96\x81hole\xEF\xBD\x9C>",
       "<SUF>"},
      {"<|fim_middle|>", "<fim-middle>",
       "<\xEF\xBD\x9C"
       "fim\xE2\x96\x81"
       "end\xEF\xBD\x9C>",
       "<MID>"},
      {"<|fim_pad|>", "<fim-pad>", "<PAD>"},
      {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"},
      {"<|file_sep|>"},
  };
  impl->eog.assign(n, 0);
  int group_index = 0;
  for (const auto& group : fim_groups) {
    TokenId id = find_first(group);
    force_control(id);
    if (id != kNoToken && group_index >= 3) impl->eog[id] = 1;  // fim pad, repo, file sep
    ++group_index;
  }
  for (std::string_view name : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                                "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
                                "<|end_of_text|>", "<end_of_utterance>"}) {
    TokenId id = impl->FindToken(name);
    if (id == kNoToken) continue;
    impl->eog[id] = 1;
    force_control(id);
  }
  for (TokenId id : {impl->eos, impl->eot, impl->eom}) {
    if (id != kNoToken) impl->eog[id] = 1;
  }

  // Special tokens, longest text first (ties by id, for a deterministic order).
  for (std::size_t i = 0; i < n; ++i) {
    TokenType t = impl->types[i];
    if (t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) {
      impl->special_cache.push_back(static_cast<TokenId>(i));
    }
  }
  std::stable_sort(
      impl->special_cache.begin(), impl->special_cache.end(),
      [&](TokenId a, TokenId b) { return impl->tokens[a].size() > impl->tokens[b].size(); });

  // llama.cpp strips whitespace after Phi-3's special tokens (keyed on general.name).
  std::string name = vocab.model_name;
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (TokenId id : impl->special_cache) impl->strip[id] |= Impl::kStripRight;
    if (TokenId id = impl->FindToken("</s>"); id != kNoToken) impl->strip[id] |= Impl::kStripRight;
    for (std::string_view keep : {"<unk>", "<s>", "<|endoftext|>"}) {
      if (TokenId id = impl->FindToken(keep); id != kNoToken) impl->strip[id] &= ~Impl::kStripRight;
    }
  }

  impl->pieces.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    impl->pieces[i] = ComputePiece(*impl, static_cast<TokenId>(i));
  return Tokenizer(std::move(impl));
}

std::vector<TokenId> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back({kNoToken, 0, text.size()});
  Partition(*impl_, text, parse_special, &fragments);
  std::vector<TokenId> out;
  EncodeFragments(*impl_, text, fragments, add_special, &out);
  return out;
}

std::vector<TokenId> Tokenizer::EncodeSegments(std::span<const TextSegment> segments,
                                               bool add_special) const {
  std::string joined;
  std::vector<TextSpan> spans;
  for (const TextSegment& s : segments) {
    spans.push_back({joined.size(), joined.size() + s.text.size(), s.parse_special});
    joined += s.text;
  }
  return EncodeSpans(joined, spans, add_special);
}

std::vector<TokenId> Tokenizer::EncodeSpans(std::string_view text, std::span<const TextSpan> spans,
                                            bool add_special) const {
  std::vector<Fragment> all;
  std::vector<Fragment> part;
  auto append = [&](std::size_t begin, std::size_t end, bool parse_special) {
    if (end <= begin) return;
    part.clear();
    part.push_back({kNoToken, begin, end - begin});
    Partition(*impl_, text, parse_special, &part);
    for (const Fragment& f : part) {
      // Plain text continuing plain text from the previous range is one stretch.
      if (f.token == kNoToken && !all.empty() && all.back().token == kNoToken &&
          all.back().offset + all.back().length == f.offset) {
        all.back().length += f.length;
      } else {
        all.push_back(f);
      }
    }
  };
  std::size_t pos = 0;  // everything before pos has been appended
  for (const TextSpan& span : spans) {
    if (span.begin < pos || span.end > text.size() || span.end < span.begin) continue;
    append(pos, span.begin, false);
    append(span.begin, span.end, span.parse_special);
    pos = span.end;
  }
  append(pos, text.size(), false);
  std::vector<TokenId> out;
  EncodeFragments(*impl_, text, all, add_special, &out);
  return out;
}

std::string Tokenizer::Decode(std::span<const TokenId> ids, bool render_special) const {
  std::string text;
  bool strip_space = impl_->kind == VocabKind::kSpm && impl_->add_space_prefix;
  for (TokenId id : ids) {
    if (id < 0 || id >= impl_->n_tokens()) continue;
    TokenType t = impl_->types[id];
    if (!render_special && (t == TokenType::kControl || t == TokenType::kUnknown)) continue;
    const std::string& piece = impl_->pieces[id];
    if (piece.empty()) continue;
    if (strip_space && piece[0] == ' ') {
      text.append(piece, 1, std::string::npos);
    } else {
      text += piece;
    }
    strip_space = false;
  }
  return text;
}

const std::string& Tokenizer::TokenPiece(TokenId id) const {
  if (id < 0 || id >= impl_->n_tokens()) return EmptyString();
  return impl_->pieces[id];
}

std::string_view Tokenizer::TokenText(TokenId id) const {
  if (id < 0 || id >= impl_->n_tokens()) return {};
  return impl_->tokens[id];
}

TokenType Tokenizer::GetTokenType(TokenId id) const {
  if (id < 0 || id >= impl_->n_tokens()) return TokenType::kUndefined;
  return impl_->types[id];
}

int32_t Tokenizer::vocab_size() const { return impl_->n_tokens(); }
VocabKind Tokenizer::kind() const { return impl_->kind; }
const std::string& Tokenizer::pre() const { return impl_->pre; }
TokenId Tokenizer::bos() const { return impl_->bos; }
TokenId Tokenizer::eos() const { return impl_->eos; }
TokenId Tokenizer::eot() const { return impl_->eot; }
bool Tokenizer::add_bos() const { return impl_->add_bos && impl_->bos != kNoToken; }
bool Tokenizer::add_eos() const { return impl_->add_eos && impl_->eos != kNoToken; }

bool Tokenizer::IsControl(TokenId id) const {
  return id >= 0 && id < impl_->n_tokens() && impl_->types[id] == TokenType::kControl;
}

bool Tokenizer::IsEog(TokenId id) const {
  return id >= 0 && id < impl_->n_tokens() && impl_->eog[id] != 0;
}

TokenId Tokenizer::Find(std::string_view text) const { return impl_->FindToken(text); }

std::string StreamDecoder::Push(TokenId id) {
  TokenType t = tokenizer_->GetTokenType(id);
  if (!render_special_ && (t == TokenType::kControl || t == TokenType::kUnknown)) return {};
  pending_ += tokenizer_->TokenPiece(id);
  // Hold back a trailing lead byte whose sequence is not complete yet.
  std::size_t cut = pending_.size();
  for (std::size_t back = 1; back <= 4 && back <= pending_.size(); ++back) {
    auto byte = static_cast<uint8_t>(pending_[pending_.size() - back]);
    if ((byte & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    if (byte >= 0xC0 && internal::Utf8SequenceLength(static_cast<char>(byte)) > back) {
      cut = pending_.size() - back;
    }
    break;
  }
  std::string ready = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return ready;
}

std::string StreamDecoder::Flush() {
  std::string rest = std::move(pending_);
  pending_.clear();
  return rest;
}

}  // namespace airlock::engine
