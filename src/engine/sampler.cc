#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace airlock::engine {

Sampler::Sampler(const SamplerOptions& options, int n_vocab)
    : o_(options), n_vocab_(std::max(0, n_vocab)), rng_(options.seed) {
  cand_.resize(n_vocab_);
  adjusted_.resize(n_vocab_);
  counts_.assign(n_vocab_, 0);
  history_.reserve(std::max(0, o_.penalty_last_n));
}

void Sampler::Reset() {
  history_.clear();
  history_next_ = 0;
  rng_.seed(o_.seed);
  constraint_failed_ = false;
  if (constraint_) constraint_->Restart();
}

void Sampler::SetConstraint(std::unique_ptr<TokenConstraint> constraint) {
  constraint_ = std::move(constraint);
  constraint_failed_ = false;
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

std::int32_t Sampler::Sample(std::span<const float> logits) { return Sample(logits, 0, nullptr); }

std::int32_t Sampler::Sample(std::span<const float> logits, int top_logprobs, TokenLogprobs* out) {
  const int n = std::min<int>(n_vocab_, static_cast<int>(logits.size()));
  std::copy(logits.begin(), logits.begin() + n, adjusted_.begin());
  // Penalties on tokens seen recently.
  const bool penalize =
      o_.repeat_penalty != 1.0f || o_.presence_penalty != 0.0f || o_.frequency_penalty != 0.0f;
  if (penalize && !history_.empty()) {
    for (std::int32_t t : history_) ++counts_[t];
    for (std::int32_t t : history_) {
      const int c = counts_[t];
      if (c == 0) continue;  // already applied for this token
      float& l = adjusted_[t];
      l = l > 0 ? l / o_.repeat_penalty : l * o_.repeat_penalty;
      l -= static_cast<float>(c) * o_.frequency_penalty + o_.presence_penalty;
      counts_[t] = 0;
    }
  }
  // Candidates: every token, or those the constraint allows.
  int size = 0;
  if (constraint_) {
    // Ids beyond the tokenizer's vocabulary (padded output rows) are never allowed.
    constraint_->Allowed(allowed_);
    const int known = std::min(n, static_cast<int>(allowed_.size()));
    for (int i = 0; i < known; ++i) {
      if (allowed_[i]) cand_[size++] = {i, adjusted_[i], 0.0f};
    }
    if (size == 0) {
      constraint_failed_ = !constraint_->IsComplete();
      if (out != nullptr) *out = {kNoToken, 0.0f, {}};
      return kNoToken;
    }
  } else {
    for (int i = 0; i < n; ++i) cand_[i] = {i, adjusted_[i], 0.0f};
    size = n;
  }
  if (size == 0) return kNoToken;
  top_logprobs = std::clamp(top_logprobs, 0, kMaxTopLogprobs);
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  // The model's distribution over the candidates (before truncation and temperature).
  double log_sum = 0;
  const bool model_logprobs = out != nullptr && o_.logprob_source == LogprobSource::kModel;
  if (model_logprobs) {
    float max_logit = -std::numeric_limits<float>::infinity();
    for (int i = 0; i < size; ++i) max_logit = std::max(max_logit, cand_[i].logit);
    double sum = 0;
    for (int i = 0; i < size; ++i) sum += std::exp(static_cast<double>(cand_[i].logit) - max_logit);
    log_sum = max_logit + std::log(sum);
    const int k = std::min(top_logprobs, size);
    std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.begin() + size, by_logit);
    out->top.clear();
    for (int i = 0; i < k; ++i) {
      out->top.push_back({cand_[i].id, static_cast<float>(cand_[i].logit - log_sum)});
    }
  }
  auto finish = [&](std::int32_t id) {
    if (model_logprobs) {
      out->token = id;
      out->logprob = static_cast<float>(adjusted_[id] - log_sum);
    }
    if (constraint_ && !constraint_->Accept(id)) constraint_failed_ = true;  // cannot happen
    return id;
  };
  if (o_.temperature <= 0.0f) {
    int best = 0;
    for (int i = 1; i < size; ++i) {
      if (by_logit(cand_[i], cand_[best])) best = i;
    }
    if (out != nullptr && !model_logprobs) {
      *out = {cand_[best].id, 0.0f, {}};
      if (top_logprobs > 0) out->top.push_back({cand_[best].id, 0.0f});
    }
    return finish(cand_[best].id);
  }
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
  int chosen = size - 1;
  for (int i = 0; i < size; ++i) {
    r -= cand_[i].p;
    if (r <= 0) {
      chosen = i;
      break;
    }
  }
  if (out != nullptr && !model_logprobs) {
    // The distribution of the draw: log(p_i / sum), with p_i = exp((l_i - l_0) / T).
    const double log_norm = std::log(sum);
    out->token = cand_[chosen].id;
    out->logprob = static_cast<float>(std::log(static_cast<double>(cand_[chosen].p)) - log_norm);
    out->top.clear();
    for (int i = 0; i < std::min(top_logprobs, size); ++i) {
      out->top.push_back(
          {cand_[i].id,
           static_cast<float>((cand_[i].logit - cand_[0].logit) / o_.temperature - log_norm)});
    }
  }
  return finish(cand_[chosen].id);
}

namespace {

// `bytes` with every byte that is not part of a valid UTF-8 sequence replaced by U+FFFD.
std::string ValidUtf8(std::string_view bytes) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size();) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    int len = b < 0x80                   ? 1
              : (b >= 0xC2 && b <= 0xDF) ? 2
              : (b >= 0xE0 && b <= 0xEF) ? 3
              : (b >= 0xF0 && b <= 0xF4) ? 4
                                         : 0;
    bool ok = len > 0 && i + len <= bytes.size();
    for (int k = 1; ok && k < len; ++k)
      ok = (static_cast<unsigned char>(bytes[i + k]) & 0xC0) == 0x80;
    if (ok && len >= 3) {  // overlong forms, surrogates and code points above U+10FFFF
      const auto b1 = static_cast<unsigned char>(bytes[i + 1]);
      ok = !(b == 0xE0 && b1 < 0xA0) && !(b == 0xED && b1 >= 0xA0) && !(b == 0xF0 && b1 < 0x90) &&
           !(b == 0xF4 && b1 >= 0x90);
    }
    if (!ok) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    out.append(bytes.substr(i, len));
    i += len;
  }
  return out;
}

TokenLogprobText Describe(TokenId id, float logprob, const Tokenizer& tokenizer) {
  const std::string& piece = tokenizer.TokenPiece(id);
  return {ValidUtf8(piece), std::vector<std::uint8_t>(piece.begin(), piece.end()), logprob};
}

}  // namespace

LogprobEntry DescribeLogprobs(const TokenLogprobs& lp, const Tokenizer& tokenizer) {
  LogprobEntry e;
  e.chosen = Describe(lp.token, lp.logprob, tokenizer);
  for (const TopLogprob& t : lp.top) e.top.push_back(Describe(t.token, t.logprob, tokenizer));
  return e;
}

std::uint64_t ChoiceSeed(std::uint64_t seed, int index) {
  if (index == 0) return seed;
  // splitmix64 of (seed, index): distinct, well-spread seeds for the other choices.
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(index);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::optional<ParamError> ValidateOpenAISampling(const OpenAISamplingParams& p, int max_n) {
  auto in_range = [](const std::optional<double>& v, double lo, double hi) {
    return !v || (std::isfinite(*v) && *v >= lo && *v <= hi);
  };
  if (!in_range(p.temperature, 0.0, 2.0)) {
    return ParamError{"temperature", "temperature must be a number between 0 and 2"};
  }
  if (p.top_p && !(std::isfinite(*p.top_p) && *p.top_p > 0.0 && *p.top_p <= 1.0)) {
    return ParamError{"top_p", "top_p must be greater than 0 and at most 1"};
  }
  if (!in_range(p.presence_penalty, -2.0, 2.0)) {
    return ParamError{"presence_penalty", "presence_penalty must be between -2 and 2"};
  }
  if (!in_range(p.frequency_penalty, -2.0, 2.0)) {
    return ParamError{"frequency_penalty", "frequency_penalty must be between -2 and 2"};
  }
  if (p.n && (*p.n < 1 || *p.n > max_n)) {
    return ParamError{"n", "n must be between 1 and " + std::to_string(max_n)};
  }
  if (p.max_tokens && *p.max_tokens < 1) {
    return ParamError{"max_tokens", "max_tokens must be at least 1"};
  }
  if (p.top_logprobs) {
    if (*p.top_logprobs < 0 || *p.top_logprobs > kMaxTopLogprobs) {
      return ParamError{"top_logprobs", "top_logprobs must be between 0 and 20"};
    }
    if (!p.logprobs) {
      return ParamError{"top_logprobs", "top_logprobs requires logprobs to be true"};
    }
  }
  return std::nullopt;
}

SamplerOptions SamplerOptionsFromOpenAI(const OpenAISamplingParams& p, std::uint64_t default_seed) {
  SamplerOptions o;
  o.temperature = static_cast<float>(p.temperature.value_or(1.0));
  o.top_p = static_cast<float>(p.top_p.value_or(1.0));
  o.top_k = 0;
  o.min_p = 0;
  o.presence_penalty = static_cast<float>(p.presence_penalty.value_or(0.0));
  o.frequency_penalty = static_cast<float>(p.frequency_penalty.value_or(0.0));
  o.seed = p.seed ? static_cast<std::uint64_t>(*p.seed) : default_seed;
  return o;
}

}  // namespace airlock::engine
