#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <vector>

namespace airlock::engine {
namespace {

TEST(Sampler, GreedyPicksArgmax) {
  SamplerOptions o;
  o.temperature = 0;
  Sampler s(o, 5);
  std::vector<float> logits{0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
  EXPECT_EQ(s.Sample(logits), 1);
}

TEST(Sampler, RepeatPenaltyDemotesSeenTokens) {
  SamplerOptions o;
  o.temperature = 0;
  o.repeat_penalty = 1.5f;
  Sampler s(o, 5);
  std::vector<float> logits{0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
  s.Accept(1);
  EXPECT_EQ(s.Sample(logits), 3);  // 2.0 / 1.5 < 1.9
  o.repeat_penalty = 1.0f;
  o.frequency_penalty = 0.05f;
  Sampler f(o, 5);
  f.Accept(1);
  EXPECT_EQ(f.Sample(logits), 1);  // 2.0 - 0.05 > 1.9
  f.Accept(1);
  f.Accept(1);
  EXPECT_EQ(f.Sample(logits), 3);  // 2.0 - 0.15 < 1.9
  o.frequency_penalty = 0;
  o.presence_penalty = 0.2f;
  Sampler p(o, 5);
  p.Accept(1);
  EXPECT_EQ(p.Sample(logits), 3);
}

TEST(Sampler, SeedMakesDrawsReproducibleAndTopKLimits) {
  SamplerOptions o;
  o.temperature = 1.0f;
  o.top_k = 2;
  o.top_p = 1.0f;
  o.min_p = 0;
  o.seed = 1234;
  std::vector<float> logits{1.0f, 1.1f, 0.9f, 1.05f, -3.0f};
  Sampler a(o, 5), b(o, 5);
  std::map<int, int> seen;
  for (int i = 0; i < 200; ++i) {
    const int x = a.Sample(logits);
    EXPECT_EQ(x, b.Sample(logits));
    ++seen[x];
  }
  EXPECT_EQ(seen.size(), 2u);  // only the two best: 1 and 3
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[3], 0);
}

TEST(Sampler, TopPAndMinPCut) {
  SamplerOptions o;
  o.temperature = 1.0f;
  o.top_k = 0;
  o.top_p = 0.5f;
  o.min_p = 0;
  std::vector<float> logits{5.0f, 0.0f, 0.0f, 0.0f};  // p0 ~ 0.98
  Sampler s(o, 4);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(logits), 0);
  o.top_p = 1.0f;
  o.min_p = 0.5f;
  std::vector<float> two{1.0f, 1.0f, -5.0f, -5.0f};
  Sampler m(o, 4);
  for (int i = 0; i < 50; ++i) EXPECT_LT(m.Sample(two), 2);
}

// Log-probabilities computed independently: long double, the textbook formula
// log p_i = l_i - log(sum_j exp(l_j)).
std::vector<long double> NaiveLogSoftmax(const std::vector<float>& logits, double temperature = 1) {
  long double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<long double>(l) / temperature);
  std::vector<long double> out;
  for (float l : logits) out.push_back(static_cast<long double>(l) / temperature - std::log(sum));
  return out;
}

TEST(SamplerLogprobs, MatchAnIndependentLogSoftmax) {
  std::vector<float> logits{0.3f, -1.2f, 2.5f, 2.4f, 0.0f, -7.0f, 1.1f};
  const auto expected = NaiveLogSoftmax(logits);
  for (float temperature : {0.0f, 0.4f, 1.0f, 1.7f}) {
    SamplerOptions o;
    o.temperature = temperature;
    o.top_k = 3;
    o.seed = 5;
    Sampler s(o, static_cast<int>(logits.size()));
    for (int i = 0; i < 20; ++i) {
      TokenLogprobs lp;
      const int t = s.Sample(logits, 5, &lp);
      EXPECT_EQ(lp.token, t);
      // The model's distribution: the same whatever the temperature and top-k.
      EXPECT_NEAR(lp.logprob, expected[t], 1e-5);
      ASSERT_EQ(lp.top.size(), 5u);
      const std::vector<int> order{2, 3, 6, 0, 4};
      for (int k = 0; k < 5; ++k) {
        EXPECT_EQ(lp.top[k].token, order[k]);
        EXPECT_NEAR(lp.top[k].logprob, expected[order[k]], 1e-5);
      }
    }
  }
}

TEST(SamplerLogprobs, StableForHugeLogits) {
  std::vector<float> logits{1e4f, 1e4f - 1.0f, -1e4f, 3e4f - 30000.0f};
  SamplerOptions o;
  o.temperature = 0;
  Sampler s(o, 4);
  TokenLogprobs lp;
  EXPECT_EQ(s.Sample(logits, 4, &lp), 0);
  // log(1 / (1 + e^-1)) with the other two terms negligible.
  EXPECT_NEAR(lp.logprob, -std::log1p(std::exp(-1.0)), 1e-5);
  ASSERT_EQ(lp.top.size(), 4u);
  double total = 0;
  for (const auto& t : lp.top) {
    EXPECT_TRUE(std::isfinite(t.logprob)) << t.logprob;
    total += std::exp(static_cast<double>(t.logprob));
  }
  EXPECT_NEAR(total, 1.0, 1e-6);
}

TEST(SamplerLogprobs, SamplingSourceIsTheDrawsDistribution) {
  std::vector<float> logits{0.3f, -1.2f, 2.5f, 2.4f, 0.0f};
  SamplerOptions o;
  o.temperature = 0.5f;
  o.top_k = 2;
  o.top_p = 1.0f;
  o.min_p = 0;
  o.logprob_source = LogprobSource::kSampling;
  Sampler s(o, 5);
  // After top-k 2 (tokens 2 and 3) at temperature 0.5.
  const auto expected = NaiveLogSoftmax({2.5f, 2.4f}, 0.5);
  for (int i = 0; i < 20; ++i) {
    TokenLogprobs lp;
    const int t = s.Sample(logits, 20, &lp);
    ASSERT_TRUE(t == 2 || t == 3);
    EXPECT_NEAR(lp.logprob, expected[t == 2 ? 0 : 1], 1e-5);
    ASSERT_EQ(lp.top.size(), 2u);  // only what the draw could pick
    EXPECT_EQ(lp.top[0].token, 2);
    EXPECT_NEAR(lp.top[0].logprob, expected[0], 1e-5);
    EXPECT_NEAR(lp.top[1].logprob, expected[1], 1e-5);
  }
  o.temperature = 0;
  Sampler greedy(o, 5);
  TokenLogprobs lp;
  EXPECT_EQ(greedy.Sample(logits, 3, &lp), 2);
  EXPECT_EQ(lp.logprob, 0.0f);
  ASSERT_EQ(lp.top.size(), 1u);
}

TEST(SamplerLogprobs, RequestingThemDoesNotChangeTheDraws) {
  std::vector<float> logits{1.0f, 1.1f, 0.9f, 1.05f, -3.0f, 0.5f};
  SamplerOptions o;
  o.temperature = 0.9f;
  o.top_k = 0;
  o.seed = 77;
  Sampler a(o, 6), b(o, 6);
  for (int i = 0; i < 100; ++i) {
    TokenLogprobs lp;
    EXPECT_EQ(a.Sample(logits), b.Sample(logits, 3, &lp));
  }
}

TEST(SamplerLogprobs, PenaltiesAreIncluded) {
  std::vector<float> logits{2.0f, 1.0f, 0.0f};
  SamplerOptions o;
  o.temperature = 0;
  o.presence_penalty = 1.5f;
  Sampler s(o, 3);
  s.Accept(0);
  TokenLogprobs lp;
  EXPECT_EQ(s.Sample(logits, 1, &lp), 1);
  const auto expected = NaiveLogSoftmax({0.5f, 1.0f, 0.0f});
  EXPECT_NEAR(lp.logprob, expected[1], 1e-5);
}

TEST(SamplerChoices, SeedsAreDistinctAndReproducible) {
  std::set<std::uint64_t> seeds;
  for (int i = 0; i < 128; ++i) seeds.insert(ChoiceSeed(1234, i));
  EXPECT_EQ(seeds.size(), 128u);
  EXPECT_EQ(ChoiceSeed(1234, 0), 1234u);
  EXPECT_EQ(ChoiceSeed(1234, 7), ChoiceSeed(1234, 7));
  EXPECT_NE(ChoiceSeed(1234, 1), ChoiceSeed(1235, 1));
}

TEST(SamplerValidation, OpenAIRangesNameTheParam) {
  auto param_of = [](const OpenAISamplingParams& p) {
    auto e = ValidateOpenAISampling(p, 8);
    return e ? e->param : std::string();
  };
  OpenAISamplingParams ok;
  ok.temperature = 2.0;
  ok.top_p = 1.0;
  ok.n = 8;
  ok.logprobs = true;
  ok.top_logprobs = 20;
  ok.presence_penalty = -2.0;
  ok.frequency_penalty = 2.0;
  ok.max_tokens = 1;
  EXPECT_EQ(param_of(ok), "");
  EXPECT_EQ(param_of({}), "");
  auto with = [&](auto change) {
    OpenAISamplingParams p = ok;
    change(p);
    return param_of(p);
  };
  EXPECT_EQ(with([](auto& p) { p.temperature = 5.0; }), "temperature");
  EXPECT_EQ(with([](auto& p) { p.temperature = -0.1; }), "temperature");
  EXPECT_EQ(with([](auto& p) { p.temperature = std::nan(""); }), "temperature");
  EXPECT_EQ(with([](auto& p) { p.top_p = 0.0; }), "top_p");
  EXPECT_EQ(with([](auto& p) { p.top_p = 1.5; }), "top_p");
  EXPECT_EQ(with([](auto& p) { p.top_p = INFINITY; }), "top_p");
  EXPECT_EQ(with([](auto& p) { p.n = 0; }), "n");
  EXPECT_EQ(with([](auto& p) { p.n = 9; }), "n");
  EXPECT_EQ(with([](auto& p) { p.presence_penalty = 2.5; }), "presence_penalty");
  EXPECT_EQ(with([](auto& p) { p.frequency_penalty = -3; }), "frequency_penalty");
  EXPECT_EQ(with([](auto& p) { p.max_tokens = 0; }), "max_tokens");
  EXPECT_EQ(with([](auto& p) { p.top_logprobs = 21; }), "top_logprobs");
  EXPECT_EQ(with([](auto& p) { p.top_logprobs = -1; }), "top_logprobs");
  EXPECT_EQ(with([](auto& p) { p.logprobs = false; }), "top_logprobs");
  const SamplerOptions so = SamplerOptionsFromOpenAI({}, 99);
  EXPECT_EQ(so.temperature, 1.0f);
  EXPECT_EQ(so.top_p, 1.0f);
  EXPECT_EQ(so.top_k, 0);
  EXPECT_EQ(so.min_p, 0.0f);
  EXPECT_EQ(so.seed, 99u);
}

}  // namespace
}  // namespace airlock::engine
