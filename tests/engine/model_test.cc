// Model loading and session behaviour on small GGUF files written here with the gguf writer:
// refusals (unsupported type/architecture, wrong shapes, damaged files), batched prompt
// processing against token-by-token decoding, rewinding, and input validation.
#include "engine/model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/file.h"
#include "engine/kernels.h"
#include "engine/session.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

namespace airlock::engine {
namespace {

namespace gguf = formats::gguf;

struct TinyOptions {
  std::string arch = "llama";
  gguf::GgmlType matrix_type = gguf::GgmlType::kF32;
  std::uint32_t attn_q_type_override = 0xffffffff;
  std::uint64_t q_rows = 64;  // a wrong value makes the attn_q shape inconsistent
  bool rope_freqs = false;
  bool tied = false;
};

std::vector<std::byte> RandomTensor(gguf::GgmlType type, std::uint64_t cols, std::uint64_t rows,
                                    std::mt19937& rng, float scale = 0.1f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> f(cols * rows);
  for (auto& v : f) v = normal(rng);
  std::vector<std::byte> out;
  if (type == gguf::GgmlType::kF32) {
    out.resize(f.size() * 4);
    std::memcpy(out.data(), f.data(), out.size());
  } else if (type == gguf::GgmlType::kF16) {
    out.resize(f.size() * 2);
    for (std::size_t i = 0; i < f.size(); ++i) {
      const std::uint16_t h = Fp32ToFp16(f[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  } else {  // Q8_0
    out.resize(f.size() / 32 * sizeof(BlockQ8_0));
    for (std::size_t b = 0; b < f.size() / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(f[b * 32 + j]));
      BlockQ8_0 blk;
      const float d = amax / 127;
      blk.d = Fp32ToFp16(d);
      for (int j = 0; j < 32; ++j)
        blk.qs[j] = static_cast<std::int8_t>(std::lround(d ? f[b * 32 + j] / d : 0));
      std::memcpy(out.data() + b * sizeof(blk), &blk, sizeof(blk));
    }
  }
  return out;
}

// A 2-layer model: n_embd 64, 4 heads of 16 (2 KV heads), ff 128, vocab 96.
std::string TinyModel(const TinyOptions& o) {
  std::mt19937 rng(5);
  gguf::Writer w;
  const std::string a = o.arch + ".";
  w.AddString("general.architecture", o.arch);
  w.AddUint32(a + "context_length", 128);
  w.AddUint32(a + "embedding_length", 64);
  w.AddUint32(a + "block_count", 2);
  w.AddUint32(a + "feed_forward_length", 128);
  w.AddUint32(a + "attention.head_count", 4);
  w.AddUint32(a + "attention.head_count_kv", 2);
  w.AddFloat32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  std::size_t count = 0;
  auto matrix = [&](const std::string& name, std::uint64_t cols, std::uint64_t rows) {
    w.AddTensor(name, o.matrix_type, {cols, rows}, RandomTensor(o.matrix_type, cols, rows, rng));
    ++count;
  };
  auto ones = [&](const std::string& name, std::uint64_t n, float v = 1.0f) {
    std::vector<float> f(n, v);
    w.AddTensor(name, gguf::GgmlType::kF32, {n}, std::as_bytes(std::span<const float>(f)));
    ++count;
  };
  matrix("token_embd.weight", 64, 96);
  if (!o.tied) matrix("output.weight", 64, 96);
  ones("output_norm.weight", 64);
  if (o.rope_freqs) ones("rope_freqs.weight", 8);
  for (int i = 0; i < 2; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    ones(b + "attn_norm.weight", 64);
    matrix(b + "attn_q.weight", 64, o.q_rows);
    if (i == 0 && o.attn_q_type_override != 0xffffffff) {
      w.OverrideTensorType(count - 1, o.attn_q_type_override);
    }
    matrix(b + "attn_k.weight", 64, 32);
    matrix(b + "attn_v.weight", 64, 32);
    matrix(b + "attn_output.weight", 64, 64);
    ones(b + "ffn_norm.weight", 64);
    matrix(b + "ffn_gate.weight", 64, 128);
    matrix(b + "ffn_up.weight", 64, 128);
    matrix(b + "ffn_down.weight", 128, 64);
  }
  return w.Build();
}

Result<std::unique_ptr<Model>> LoadBytes(const std::string& bytes, testing::TempDir& dir,
                                         const std::string& name = "m.gguf") {
  const std::string path = (dir.path() / name).string();
  EXPECT_TRUE(core::WriteFileAtomic(path, bytes).ok());
  return Model::Load(path);
}

std::vector<float> EvalAll(Session& s, const std::vector<std::int32_t>& ids) {
  auto r = s.Eval(ids, /*all_logits=*/true);
  EXPECT_TRUE(r.has_value());
  return r ? std::vector<float>(r->begin(), r->end()) : std::vector<float>{};
}

TEST(Model, LoadsAndBatchedPromptMatchesTokenByToken) {
  for (auto type : {gguf::GgmlType::kF32, gguf::GgmlType::kF16, gguf::GgmlType::kQ8_0}) {
    testing::TempDir dir;
    TinyOptions o;
    o.matrix_type = type;
    auto model = LoadBytes(TinyModel(o), dir);
    ASSERT_TRUE(model.has_value()) << model.error().message();
    EXPECT_EQ((*model)->config().n_vocab, 96);
    EXPECT_FALSE((*model)->config().tied_output);
    const std::vector<std::int32_t> ids = {1, 5, 9, 33, 95, 0, 17, 42, 8, 8, 8};
    SessionOptions so;
    so.n_threads = 2;
    so.max_batch = 4;  // several chunks
    auto batched = Session::Create(**model, so);
    ASSERT_TRUE(batched.has_value());
    const auto all = EvalAll(**batched, ids);
    ASSERT_EQ(all.size(), ids.size() * 96);
    auto single = Session::Create(**model, so);
    ASSERT_TRUE(single.has_value());
    double max_diff = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      auto r = (*single)->Eval(std::span<const std::int32_t>(&ids[i], 1));
      ASSERT_TRUE(r.has_value());
      for (int v = 0; v < 96; ++v)
        max_diff = std::max(max_diff, std::fabs(double((*r)[v]) - all[i * 96 + v]));
    }
    // Same math except for the order of float sums and activation rounding in batch kernels.
    EXPECT_LT(max_diff, type == gguf::GgmlType::kQ8_0 ? 0.05 : 1e-4) << static_cast<int>(type);
    // Last-token-only evaluation over several chunks gives the last row of the full result.
    auto last_only = Session::Create(**model, so);
    ASSERT_TRUE(last_only.has_value());
    auto last = (*last_only)->Eval(ids);
    ASSERT_TRUE(last.has_value());
    ASSERT_EQ(last->size(), 96u);
    // (The batch path may use tile kernels, whose float sums run in another order.)
    for (int v = 0; v < 96; ++v) ASSERT_NEAR((*last)[v], all[(ids.size() - 1) * 96 + v], 1e-4);
    EXPECT_EQ((*last_only)->position(), static_cast<int>(ids.size()));
    // Rewind and redo the tail: same logits as the first time.
    (*batched)->Rewind(5);
    EXPECT_EQ((*batched)->position(), 5);
    const std::vector<std::int32_t> tail(ids.begin() + 5, ids.end());
    const auto again = EvalAll(**batched, tail);
    for (std::size_t i = 0; i < tail.size() * 96; ++i) ASSERT_NEAR(again[i], all[5 * 96 + i], 1e-5);
  }
}

TEST(Model, TiedOutputAndUnitRopeFactors) {
  testing::TempDir dir;
  TinyOptions o;
  o.tied = true;
  auto tied = LoadBytes(TinyModel(o), dir, "tied.gguf");
  ASSERT_TRUE(tied.has_value()) << tied.error().message();
  EXPECT_TRUE((*tied)->config().tied_output);
  o.rope_freqs = true;  // factors of 1 change nothing
  auto with_freqs = LoadBytes(TinyModel(o), dir, "freqs.gguf");
  ASSERT_TRUE(with_freqs.has_value()) << with_freqs.error().message();
  EXPECT_TRUE((*with_freqs)->config().has_rope_freqs);
  auto s1 = Session::Create(**tied);
  auto s2 = Session::Create(**with_freqs);
  const std::vector<std::int32_t> ids = {3, 4, 5, 6};
  const auto a = EvalAll(**s1, ids), b = EvalAll(**s2, ids);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_FLOAT_EQ(a[i], b[i]);
}

TEST(Model, RefusesUnsupportedTypeNamingTheTensor) {
  testing::TempDir dir;
  TinyOptions o;
  o.matrix_type = gguf::GgmlType::kF16;
  // I16 has F16's element size, so the file stays structurally valid for the parser.
  o.attn_q_type_override = static_cast<std::uint32_t>(gguf::GgmlType::kI16);
  auto r = LoadBytes(TinyModel(o), dir);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kUnsupported) << r.error().message();
  EXPECT_NE(r.error().message().find("blk.0.attn_q.weight"), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("I16"), std::string::npos) << r.error().message();
}

TEST(Model, RefusesUnknownArchitectureBadShapesAndDamagedFiles) {
  testing::TempDir dir;
  TinyOptions o;
  o.arch = "gpt2";
  auto arch = LoadBytes(TinyModel(o), dir, "a.gguf");
  ASSERT_FALSE(arch.has_value());
  EXPECT_EQ(arch.error().code(), StatusCode::kUnsupported);
  EXPECT_NE(arch.error().message().find("gpt2"), std::string::npos);

  TinyOptions shape;
  shape.q_rows = 32;  // attn_q must be 64 x 64
  auto bad = LoadBytes(TinyModel(shape), dir, "b.gguf");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), StatusCode::kCorrupt);
  EXPECT_NE(bad.error().message().find("attn_q"), std::string::npos) << bad.error().message();

  std::string bytes = TinyModel(TinyOptions{});
  bytes.resize(bytes.size() / 2);  // truncated: the parser refuses it
  auto cut = LoadBytes(bytes, dir, "c.gguf");
  ASSERT_FALSE(cut.has_value());
  EXPECT_NE(cut.error().message().find("structural checks"), std::string::npos)
      << cut.error().message();
}

TEST(Session, ValidatesTokensAndContext) {
  testing::TempDir dir;
  auto model = LoadBytes(TinyModel(TinyOptions{}), dir);
  ASSERT_TRUE(model.has_value());
  SessionOptions so;
  so.n_ctx = 8;
  auto s = Session::Create(**model, so);
  ASSERT_TRUE(s.has_value());
  const std::vector<std::int32_t> bad = {1, 96};
  auto r = (*s)->Eval(bad);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*s)->position(), 0);
  EXPECT_FALSE((*s)->Eval(std::vector<std::int32_t>{}).has_value());
  const std::vector<std::int32_t> six = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE((*s)->Eval(six).has_value());
  auto full = (*s)->Eval(std::vector<std::int32_t>{1, 2, 3});
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error().code(), StatusCode::kLimitExceeded);
  ASSERT_TRUE((*s)->Eval(std::vector<std::int32_t>{1, 2}).has_value());
  EXPECT_EQ((*s)->position(), 8);
}

}  // namespace
}  // namespace airlock::engine
