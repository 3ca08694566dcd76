// Token sampling from logits: repetition / presence / frequency penalties over the recent
// history, an optional grammar constraint (engine/grammar.h: tokens that cannot continue the
// document are removed), then top-k, top-p (nucleus), min-p, temperature and a seeded draw
// (llama.cpp's order). Temperature <= 0 means greedy (argmax after penalties and the constraint;
// ties go to the lowest id). On request, Sample() also reports the sampled token's log-probability
// and the most likely alternatives (OpenAI's logprobs / top_logprobs).
//
// Log-probabilities (LogprobSource): by default (kModel) they are a numerically stable
// log-softmax of the logits after penalties and the grammar constraint, at temperature 1 and
// before top-k/top-p/min-p: the model's own distribution over the tokens that were possible, as
// OpenAI's values (which do not change with temperature) and vLLM's are; tokens the grammar
// forbids have probability 0 and are never listed. kSampling gives the distribution the draw
// actually used instead (after truncation and temperature; greedy: the token has log-probability
// 0 and is the only one listed).
//
// Buffers are sized once; Sample() without logprobs does not allocate (with a constraint, its
// matcher does). Not thread-safe; one sampler per generation stream.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/grammar.h"

namespace airlock::engine {

enum class LogprobSource { kModel, kSampling };

struct SamplerOptions {
  float temperature = 0.8f;
  int top_k = 40;               // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int penalty_last_n = 64;      // tokens of history the penalties look at
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::uint64_t seed = 0;
  LogprobSource logprob_source = LogprobSource::kModel;
};

struct TopLogprob {
  std::int32_t token = 0;
  float logprob = 0;
};

// One generated token with its log-probability and the alternatives, most likely first (the
// token itself is among them when it is likely enough). Text and bytes: Tokenizer::TokenPiece.
struct TokenLogprobs {
  std::int32_t token = 0;
  float logprob = 0;
  std::vector<TopLogprob> top;
};

// A token as OpenAI's logprobs report it: `token` is its text as valid UTF-8 (bytes that are not,
// such as half of a character, become U+FFFD), `bytes` the exact bytes it stands for.
struct TokenLogprobText {
  std::string token;
  std::vector<std::uint8_t> bytes;
  float logprob = 0;
};
struct LogprobEntry {
  TokenLogprobText chosen;
  std::vector<TokenLogprobText> top;
};
LogprobEntry DescribeLogprobs(const TokenLogprobs& logprobs, const Tokenizer& tokenizer);

// The most alternatives OpenAI's API lets a request ask for (top_logprobs).
inline constexpr int kMaxTopLogprobs = 20;

class Sampler {
 public:
  Sampler(const SamplerOptions& options, int n_vocab);

  // Picks the next token from `logits` (n_vocab values) given the accepted history. With a
  // constraint, the token is also fed to it (so call Sample once per generated token). Returns
  // kNoToken when the constraint allows no token at all: the vocabulary has no end token and the
  // document is complete, or a dead end (constraint_failed() then says so).
  std::int32_t Sample(std::span<const float> logits);
  // The same, also filling `out` (when not null) with the token's log-probability and its
  // `top_logprobs` (clamped to [0, kMaxTopLogprobs]) most likely alternatives.
  std::int32_t Sample(std::span<const float> logits, int top_logprobs, TokenLogprobs* out);
  // Records a token (prompt or generated) in the penalty history. The constraint never sees
  // these: it follows the tokens Sample() returned.
  void Accept(std::int32_t token);
  // Clears the penalty history, reseeds, and restarts the constraint's document.
  void Reset();

  // Restricts sampling to tokens that continue a document of the grammar (nullptr: none).
  void SetConstraint(std::unique_ptr<TokenConstraint> constraint);
  const TokenConstraint* constraint() const { return constraint_.get(); }
  // The constraint found no token that could continue an unfinished document.
  bool constraint_failed() const { return constraint_failed_; }

 private:
  struct Candidate {
    std::int32_t id;
    float logit;
    float p;
  };
  SamplerOptions o_;
  int n_vocab_;
  std::mt19937_64 rng_;
  std::vector<std::int32_t> history_;  // ring of the last penalty_last_n tokens
  std::size_t history_next_ = 0;
  std::vector<Candidate> cand_;
  std::vector<float> adjusted_;  // logits after penalties, by token id
  std::vector<int> counts_;      // per token, rebuilt from the history for each Sample
  std::unique_ptr<TokenConstraint> constraint_;
  std::vector<char> allowed_;
  bool constraint_failed_ = false;
};

// The seed of choice `index` of a request with `seed` (OpenAI's `n`): choice 0 keeps the seed,
// the others get distinct well-mixed seeds, so n choices sample independently and reproducibly.
std::uint64_t ChoiceSeed(std::uint64_t seed, int index);

// OpenAI request parameters that reach the sampler, as the request parser read them (unset:
// absent from the request).
struct OpenAISamplingParams {
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<double> presence_penalty;
  std::optional<double> frequency_penalty;
  std::optional<long long> n;
  std::optional<long long> max_tokens;
  bool logprobs = false;
  std::optional<long long> top_logprobs;
  std::optional<long long> seed;
};

// What is wrong with a request, for a 400: OpenAI's `param` name and a message.
struct ParamError {
  std::string param;
  std::string message;
};

// Checks ranges as OpenAI does: temperature in [0, 2], top_p in (0, 1], presence_penalty and
// frequency_penalty in [-2, 2], n in [1, max_n], max_tokens >= 1, top_logprobs in [0, 20] and only
// with logprobs; NaN and infinities are refused. The first problem found, or nullopt.
std::optional<ParamError> ValidateOpenAISampling(const OpenAISamplingParams& params, int max_n);

// Sampler options for validated parameters: OpenAI's defaults (temperature 1, top_p 1), no top-k
// or min-p (the API has neither), penalties as given, the seed or `default_seed`.
SamplerOptions SamplerOptionsFromOpenAI(const OpenAISamplingParams& params,
                                        std::uint64_t default_seed);

}  // namespace airlock::engine
