#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace airlock::engine {

Sampler::Sampler(const SamplerOptions& options, int n_vocab)
    : o_(options), n_vocab_(n_vocab), rng_(options.seed) {
  cand_.resize(n_vocab);
  counts_.assign(n_vocab, 0);
  history_.reserve(std::max(0, o_.penalty_last_n));
}

void Sampler::Reset() {
  history_.clear();
  history_next_ = 0;
  rng_.seed(o_.seed);
}

void Sampler::Accept(std::int32_t token) {
  if (o_.penalty_last_n <= 0 || token < 0 || token >= n_vocab_) return;
  if (history_.size() < static_cast<std::size_t>(o_.penalty_last_n)) {
    history_.push_back(token);
  } else {
    history_[history_next_] = token;
    history_next_ = (history_next_ + 1) % history_.size();
  }
}

std::int32_t Sampler::Sample(std::span<const float> logits) {
  const int n = std::min<int>(n_vocab_, static_cast<int>(logits.size()));
  for (int i = 0; i < n; ++i) cand_[i] = {i, logits[i], 0.0f};
  // Penalties on tokens seen recently.
  const bool penalize =
      o_.repeat_penalty != 1.0f || o_.presence_penalty != 0.0f || o_.frequency_penalty != 0.0f;
  if (penalize && !history_.empty()) {
    for (std::int32_t t : history_) ++counts_[t];
    for (std::int32_t t : history_) {
      const int c = counts_[t];
      if (c == 0) continue;  // already applied for this token
      float& l = cand_[t].logit;
      l = l > 0 ? l / o_.repeat_penalty : l * o_.repeat_penalty;
      l -= static_cast<float>(c) * o_.frequency_penalty + o_.presence_penalty;
      counts_[t] = 0;
    }
  }
  if (o_.temperature <= 0.0f) {
    int best = 0;
    for (int i = 1; i < n; ++i) {
      if (cand_[i].logit > cand_[best].logit) best = i;
    }
    return cand_[best].id;
  }
  auto by_logit = [](const Candidate& a, const Candidate& b) { return a.logit > b.logit; };
  int size = n;
  if (o_.top_k > 0 && o_.top_k < size) {
    std::partial_sort(cand_.begin(), cand_.begin() + o_.top_k, cand_.begin() + size, by_logit);
    size = o_.top_k;
  } else {
    std::sort(cand_.begin(), cand_.begin() + size, by_logit);
  }
  // Softmax over the remaining candidates (sorted, so [0] is the max).
  double sum = 0;
  for (int i = 0; i < size; ++i) {
    cand_[i].p = std::exp(cand_[i].logit - cand_[0].logit);
    sum += cand_[i].p;
  }
  for (int i = 0; i < size; ++i) cand_[i].p = static_cast<float>(cand_[i].p / sum);
  if (o_.top_p < 1.0f) {
    double cum = 0;
    for (int i = 0; i < size; ++i) {
      cum += cand_[i].p;
      if (cum >= o_.top_p) {
        size = i + 1;
        break;
      }
    }
  }
  if (o_.min_p > 0.0f) {
    const float floor = cand_[0].p * o_.min_p;
    int keep = 1;
    while (keep < size && cand_[keep].p >= floor) ++keep;
    size = keep;
  }
  // Temperature, then draw.
  sum = 0;
  for (int i = 0; i < size; ++i) {
    cand_[i].p = std::exp((cand_[i].logit - cand_[0].logit) / o_.temperature);
    sum += cand_[i].p;
  }
  std::uniform_real_distribution<double> uniform(0.0, sum);
  double r = uniform(rng_);
  for (int i = 0; i < size; ++i) {
    r -= cand_[i].p;
    if (r <= 0) return cand_[i].id;
  }
  return cand_[size - 1].id;
}

}  // namespace airlock::engine
