// Reading llama.cpp reference outputs (../shared/fixtures/engine-reference/refs/*.json.gz) and
// comparing logits with them; shared by the dense, MoE and perplexity reference tests.
#pragma once

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/session.h"

namespace airlock::testing {

using Json = nlohmann::json;
using Matrix = std::vector<std::vector<float>>;

// A gzip'd JSON file; a null Json (and a test failure) when it is missing or not JSON.
inline Json ReadGzipJson(const std::filesystem::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr) << path;
  if (f == nullptr) return Json();
  std::string text;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) text.append(buf, n);
  gzclose(f);
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << path << " is not JSON";
  return j.is_discarded() ? Json() : j;
}

inline Matrix ToMatrix(const Json& j) {
  Matrix m;
  for (const auto& row : j) m.push_back(row.get<std::vector<float>>());
  return m;
}

inline std::vector<std::int32_t> Ids(const Json& j) { return j.get<std::vector<std::int32_t>>(); }

inline int Argmax(const float* v, int n) {
  return static_cast<int>(std::max_element(v, v + n) - v);
}

// Gap between the two largest values (how near a tie the top token is).
inline float Top1Margin(const std::vector<float>& v) {
  std::vector<float> s = v;
  std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
  return s[0] - s[1];
}

// Running comparison of logits rows against reference rows.
struct LogitsDiff {
  double max_abs = 0, sum_sq = 0;
  std::size_t count = 0;
  int top1_same = 0, positions = 0;
  int argmax_mismatch_with_margin = 0;  // where the reference margin exceeds 1e-3
  bool finite = true;
  void Add(const float* got, const std::vector<float>& want) {
    for (std::size_t i = 0; i < want.size(); ++i) {
      if (!std::isfinite(got[i])) finite = false;
      const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
      max_abs = std::max(max_abs, d);
      sum_sq += d * d;
    }
    count += want.size();
    const int n = static_cast<int>(want.size());
    const bool same = Argmax(got, n) == Argmax(want.data(), n);
    top1_same += same;
    ++positions;
    if (!same && Top1Margin(want) > 1e-3f) ++argmax_mismatch_with_margin;
  }
  double rms() const { return count ? std::sqrt(sum_sq / count) : 0; }
};

// KV cache tolerances, max abs logit difference against the F32 cache (reference_test.cc).
inline constexpr double kF16KvLogitTolerance = 2e-2;
inline constexpr double kQ8KvLogitTolerance = 0.25;

// Logits of prompt (all rows) then each greedy id (teacher-forced) with `opts`.
inline Matrix TeacherForcedLogits(const engine::Model& model, const engine::SessionOptions& opts,
                                  const std::vector<std::int32_t>& prompt,
                                  const std::vector<std::int32_t>& greedy) {
  Matrix out;
  auto session = engine::Session::Create(model, opts);
  EXPECT_TRUE(session.has_value()) << session.error().message();
  if (!session.has_value()) return out;
  const int n_vocab = model.config().n_vocab;
  auto all = (*session)->Eval(prompt, /*all_logits=*/true);
  EXPECT_TRUE(all.has_value());
  for (std::size_t i = 0; i < prompt.size(); ++i)
    out.emplace_back(all->begin() + i * n_vocab, all->begin() + (i + 1) * n_vocab);
  for (std::int32_t t : greedy) {
    auto step = (*session)->Eval(std::span<const std::int32_t>(&t, 1));
    EXPECT_TRUE(step.has_value());
    out.emplace_back(step->begin(), step->end());
  }
  return out;
}

// `got` (prompt rows, then one row per greedy id, as TeacherForcedLogits gives them) against the
// reference's prompt rows and greedy rows.
inline LogitsDiff DiffTeacherForced(const Matrix& got, const Matrix& prompt_ref,
                                    const Matrix& greedy_ref) {
  LogitsDiff d;
  EXPECT_EQ(got.size(), prompt_ref.size() + greedy_ref.size());
  for (std::size_t i = 0; i < got.size() && i < prompt_ref.size() + greedy_ref.size(); ++i)
    d.Add(got[i].data(), i < prompt_ref.size() ? prompt_ref[i] : greedy_ref[i - prompt_ref.size()]);
  return d;
}

// The F16 and Q8_0 KV caches against the F32 cache with otherwise the same options, teacher-forced
// over prompt + greedy ids.
struct KvCacheDiffs {
  LogitsDiff f16, q8;
  int q8_top1_flips = 0;  // top-1 changes where the F32-cache margin exceeds 0.1
};
inline KvCacheDiffs CompareKvCacheTypes(const engine::Model& model, engine::SessionOptions opts,
                                        const std::vector<std::int32_t>& prompt,
                                        const std::vector<std::int32_t>& greedy) {
  opts.kv_type = engine::KvCacheType::kF32;
  const Matrix f32 = TeacherForcedLogits(model, opts, prompt, greedy);
  opts.kv_type = engine::KvCacheType::kF16;
  const Matrix f16 = TeacherForcedLogits(model, opts, prompt, greedy);
  opts.kv_type = engine::KvCacheType::kQ8_0;
  const Matrix q8 = TeacherForcedLogits(model, opts, prompt, greedy);
  KvCacheDiffs d;
  for (std::size_t i = 0; i < f32.size() && i < f16.size() && i < q8.size(); ++i) {
    d.f16.Add(f16[i].data(), f32[i]);
    d.q8.Add(q8[i].data(), f32[i]);
    const int n = static_cast<int>(f32[i].size());
    if (Top1Margin(f32[i]) > 0.1f && Argmax(q8[i].data(), n) != Argmax(f32[i].data(), n))
      ++d.q8_top1_flips;
  }
  return d;
}
}  // namespace airlock::testing
