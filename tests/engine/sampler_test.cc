#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <map>
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

}  // namespace
}  // namespace airlock::engine
