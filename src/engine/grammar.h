// Grammar-constrained sampling: a JSON Schema is compiled into a context-free grammar over Unicode
// code points, and a matcher tracks every way the text generated so far can still continue a
// valid document (a set of pushdown stacks, as llama.cpp's GBNF sampler does). TokenConstraint
// binds a matcher to a vocabulary: it says which tokens' bytes can continue the document (tokens
// may span several grammar symbols, carry part of a UTF-8 sequence, or be SPM byte-fallback
// tokens), and allows only end-of-generation tokens once the document is complete.
//
// Supported schema keywords: type (string, number, integer, boolean, null, object, array, or a
// list of these), properties, required, additionalProperties (false, or absent: no extra keys;
// true or a schema only on an object without properties), items, minItems/maxItems,
// minLength/maxLength (at most 1000), enum, const, anyOf/oneOf (oneOf as anyOf), allOf with one
// entry, $ref to "#", "#/$defs/..." or "#/definitions/...", the annotations title, description,
// default, examples, $schema, $id, $comment, format (ignored: "format" is an annotation in JSON
// Schema 2020-12), and the empty schema / true (any JSON value). Anything else is an error of kind
// kUnsupported naming the keyword and where it is (a JSON pointer), so a server can answer 400.
// Objects are generated with their properties in the schema's order; required ones always,
// optional ones may be left out. Whitespace is limited to one optional space after ':' and ','
// so that a model cannot stall on endless blanks; numbers have at most 16 integer digits, 16
// fraction digits and 3 exponent digits, for the same reason.
//
// Bounds (hostile schemas): 64 levels of nesting in the schema text, 10,000 enum values, 256 KiB of
// literal text, 200,000 grammar symbols; a $ref cycle that does not consume a character first
// (left recursion) is refused. The matcher keeps at most 1,024 stacks of depth at most 256; a
// document that would need more is cut there (the path is not allowed, never a crash).
// Thread-safety: a Grammar is immutable and may be shared; a matcher or constraint is per stream.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "engine/tokenizer.h"

namespace airlock::engine {

class Grammar;

// Compiles a JSON Schema (its JSON text). Errors: kInvalidArgument (not JSON, not a schema, too
// deep or too big), kUnsupported (a keyword or value this compiler does not implement).
Result<std::shared_ptr<const Grammar>> CompileJsonSchema(std::string_view schema_json);

// Any JSON object (OpenAI's response_format {"type": "json_object"}).
std::shared_ptr<const Grammar> JsonObjectGrammar();

// The grammar in GBNF-like notation (for --verbose and tests).
std::string GrammarToText(const Grammar& grammar);

// Which continuations a byte string leaves open. Byte-level: a UTF-8 sequence may arrive in
// pieces (a partial trailing sequence is kept until completed).
class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const Grammar> grammar);
  ~GrammarMatcher();
  GrammarMatcher(const GrammarMatcher&);
  GrammarMatcher& operator=(const GrammarMatcher&);

  // Whether `bytes` can follow the text accepted so far (empty bytes: true).
  bool CanAccept(std::string_view bytes) const;
  // Consumes `bytes` when CanAccept; returns false and changes nothing otherwise.
  bool Accept(std::string_view bytes);
  // The text so far is a complete document (and no UTF-8 sequence is half done).
  bool IsComplete() const;
  // Some non-empty continuation is still possible.
  bool CanContinue() const;
  void Reset();
  // Bytes that identify the current state: equal keys, equal futures (for caching token masks).
  std::string StateKey() const;

  struct State;

 private:
  std::shared_ptr<const Grammar> grammar_;
  std::unique_ptr<State> state_;
};

// A matcher over a vocabulary's tokens (their TokenPiece bytes, as StreamDecoder emits them).
// Control, unknown and unused tokens never count as text; end-of-generation tokens (IsEog) are
// allowed exactly when the document is complete, and once it cannot continue they are the only
// tokens allowed. Masks of the last 8 distinct matcher states are cached, and so are the matcher's
// byte transitions (at most 4,096 states; then the cache starts over).
class TokenConstraint {
 public:
  TokenConstraint(std::shared_ptr<const Grammar> grammar, const Tokenizer& tokenizer);

  // allowed[id] = 1 for every token that may come next (vocab_size() entries). Returns how many.
  int Allowed(std::vector<char>& allowed) const;
  bool IsAllowed(TokenId id) const;
  // Advances over a sampled token. An end-of-generation token is accepted only when complete.
  // Returns false (and changes nothing) for a token that is not allowed.
  bool Accept(TokenId id);
  bool IsComplete() const { return matcher_.IsComplete(); }
  // The document is complete and nothing can follow it: only end-of-generation tokens remain.
  bool MustEnd() const { return matcher_.IsComplete() && !matcher_.CanContinue(); }
  // An end-of-generation token of the vocabulary, or kNoToken when it has none.
  TokenId end_token() const { return end_token_; }
  const GrammarMatcher& matcher() const { return matcher_; }
  // Back to the start of a document.
  void Restart() { matcher_.Reset(); }

 private:
  bool IsText(TokenId id) const;
  int ComputeAllowed(std::vector<char>& allowed) const;
  // Masks of recently seen matcher states: inside a free string every character leads back to
  // the same state, so the mask (the expensive part: most tokens can continue) is computed once.
  struct CachedMask {
    std::string key;
    std::vector<char> allowed;
    int count = 0;
    std::uint64_t last_use = 0;
  };
  mutable std::vector<CachedMask> cache_;
  mutable std::uint64_t uses_ = 0;
  // A deterministic automaton over matcher states, built lazily as tokens are checked: a token's
  // bytes then cost one table lookup each (most tokens revisit the same few states).
  static constexpr std::int32_t kUnknown = -2, kDead = -1, kFull = -3;
  std::int32_t StateId(const GrammarMatcher& m) const;
  std::int32_t Step(std::int32_t state, unsigned char byte) const;
  mutable std::unordered_map<std::string, std::int32_t> dfa_ids_;
  mutable std::vector<GrammarMatcher> dfa_states_;
  mutable std::vector<std::array<std::int32_t, 256>> dfa_next_;
  GrammarMatcher matcher_;
  Tokenizer tokenizer_;
  std::vector<char> is_eog_;
  TokenId end_token_ = kNoToken;
};

}  // namespace airlock::engine
