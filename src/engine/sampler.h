// Token sampling from logits: repetition / presence / frequency penalties over the recent
// history, then top-k, top-p (nucleus), min-p, temperature and a seeded draw (llama.cpp's order).
// Temperature <= 0 means greedy (argmax after penalties). Buffers are sized once; Sample() does
// not allocate. Not thread-safe; one sampler per generation stream.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace airlock::engine {

struct SamplerOptions {
  float temperature = 0.8f;
  int top_k = 40;           // <= 0: off
  float top_p = 0.95f;      // >= 1: off
  float min_p = 0.05f;      // <= 0: off
  float repeat_penalty = 1.0f;   // 1: off
  int penalty_last_n = 64;       // tokens of history the penalties look at
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(const SamplerOptions& options, int n_vocab);

  // Picks the next token from `logits` (n_vocab values) given the accepted history.
  std::int32_t Sample(std::span<const float> logits);
  // Records a token (prompt or generated) in the penalty history.
  void Accept(std::int32_t token);
  void Reset();

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
  std::vector<int> counts_;  // per token, rebuilt from the history for each Sample
};

}  // namespace airlock::engine
