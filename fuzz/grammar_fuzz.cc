// Grammar fuzz target: the JSON-Schema-to-grammar compiler on hostile schemas (deep nesting, huge
// enums, $ref cycles, wrong types) and the matcher on hostile documents. Input: a schema, a NUL
// byte, then a document fed in pieces of 1..8 bytes (so UTF-8 sequences split anywhere); without a
// NUL the whole input is a document of the any-JSON-object grammar. Checks: CanAccept agrees with
// Accept, a refused piece changes nothing, and a token constraint over a small vocabulary never
// allows a token the matcher refuses.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "engine/grammar.h"
#include "engine/tokenizer.h"

namespace {

using namespace airlock::engine;

const Tokenizer& SmallVocabulary() {
  static const Tokenizer tokenizer = [] {
    Vocabulary v;
    v.kind = VocabKind::kBpe;
    v.tokens = {"{", "}", "\"", "a", "\":", "true", "null", "[", "]",
                ",", "1", ".",  "Ã", "©",   "\\",   "u",    "Ġ", "</s>"};
    v.types.assign(v.tokens.size(), TokenType::kNormal);
    v.types.back() = TokenType::kControl;
    v.eos = static_cast<TokenId>(v.tokens.size() - 1);
    auto t = Tokenizer::FromVocabulary(v);
    if (!t) std::abort();
    return std::move(*t);
  }();
  return tokenizer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = input.find('\0');
  std::shared_ptr<const Grammar> grammar = JsonObjectGrammar();
  std::string_view doc = input;
  if (nul != std::string_view::npos) {
    auto compiled = CompileJsonSchema(input.substr(0, nul));
    if (compiled) {
      grammar = *compiled;
      if (GrammarToText(*grammar).empty()) std::abort();
    } else if (compiled.error().message().empty()) {
      std::abort();  // errors must say what is wrong
    }
    doc = input.substr(nul + 1);
  }
  GrammarMatcher matcher(grammar);
  TokenConstraint constraint(grammar, SmallVocabulary());
  std::vector<char> allowed;
  for (std::size_t i = 0; i < doc.size();) {
    const std::size_t n = 1 + static_cast<unsigned char>(doc[i]) % 8;
    const std::string_view piece = doc.substr(i, n);
    i += n;
    const bool can = matcher.CanAccept(piece);
    const bool was_complete = matcher.IsComplete();
    if (matcher.Accept(piece) != can) std::abort();
    if (!can && matcher.IsComplete() != was_complete) std::abort();
    if (i < 64) {  // the token mask is slower: check it on the first pieces only
      constraint.Allowed(allowed);
      for (std::size_t t = 0; t < allowed.size(); ++t) {
        if (allowed[t] != constraint.IsAllowed(static_cast<TokenId>(t))) std::abort();
      }
    }
  }
  (void)matcher.CanContinue();
  return 0;
}
