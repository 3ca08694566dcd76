// Pre-tokenization for byte-level BPE: the regex cascade llama.cpp applies before merging. Each
// regex splits every piece produced by the previous one; text between matches is kept as its own
// piece. Regexes that use \p{..} classes run byte-wise (PCRE2, JIT when available) over a
// "collapsed" copy of the text where each code point >= 128 is one class byte; the others run in
// UTF mode over the code points with non-ASCII whitespace mapped to \v. This reproduces
// llama.cpp's unicode_regex_split, including its quirks, without its std::regex.
// Thread-safety: a PreTokenizer is immutable after Create; Split may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace airlock::engine::internal {

// The regex list for a `tokenizer.ggml.pre` name, or kUnsupported for names we do not know.
// Also reports the flags llama.cpp ties to the name.
struct PreTokenizerSpec {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  bool add_bos = false;  // default when the GGUF has no add_bos_token key
};
Result<PreTokenizerSpec> PreTokenizerSpecFor(std::string_view pre_name);

class PreTokenizer {
 public:
  static Result<PreTokenizer> Create(const std::vector<std::string>& regexes);

  // Splits the code points `cps` into words; returns [begin, end) code point ranges covering the
  // input in order (empty input: no words).
  std::vector<std::pair<std::size_t, std::size_t>> Split(const std::vector<uint32_t>& cps) const;

 private:
  struct Compiled;
  std::vector<std::shared_ptr<const Compiled>> regexes_;
  bool needs_collapsed_ = false;
  bool needs_utf8_ = false;
};

}  // namespace airlock::engine::internal
