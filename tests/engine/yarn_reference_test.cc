// YaRN rope scaling (arXiv:2309.00071) on a deepseek2 model, against a scalar reference written
// here from the paper's formulas (not from the engine's code): a one-layer random-weight deepseek2
// file (F32, multi-head latent attention, dense FFN) with rope.scaling.type = yarn, factor s = 4,
// original context L = 2048 (so the ramp between interpolated and extrapolated pairs falls inside
// the 8 rope pairs: low 2, high 6), mscale_all_dim 1 (yarn_log_multiplier 0.1), run over 40
// positions. The reference:
//  - frequencies theta_j = base^(-2j / n_rot), wavelengths lambda_j = 2 pi / theta_j;
//  - "NTK-by-parts" interpolation: the dimension whose wavelength fits r turns in L is
//    d(r) = n_rot ln(L / (2 pi r)) / (2 ln base); with low = floor(d(beta_fast)) and
//    high = ceil(d(beta_slow)) (as the paper's published code rounds them), the extrapolation
//    share of pair j is 1 - clamp((j - low) / (high - low), 0, 1), and
//    theta'_j = theta_j / s * (1 - share) + theta_j * share;
//  - attention temperature: softmax scale mscale^2 / sqrt(head_dim), mscale = 0.1 * mscale_all_dim
//    * ln s + 1 (DeepSeek-V2's form, which leaves cos/sin unscaled);
//  - attention in the plain (non-absorbed) MLA form: per head k = [k_b^T latent | k_pe],
//    v = v_b latent.
// The engine's exact-math logits must match to 1e-4 at every position; the same reference
// without YaRN must differ by more than 1e-2 (so the comparison can fail).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/session.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

namespace airlock::engine {
namespace {

namespace gguf = formats::gguf;

constexpr int kD = 64, kH = 2, kNope = 16, kRot = 16, kKvl = 32, kVh = 32, kFf = 64, kVocab = 32;
constexpr int kHq = kNope + kRot;
constexpr double kBase = 10000, kFactor = 4, kOrigCtx = 2048, kBetaFast = 32, kBetaSlow = 1;
constexpr double kMscaleAllDim = 1.0;

struct Weights {
  std::vector<float> embd, attn_norm, wq, wkv_a, kv_a_norm, k_b, v_b, wo, ffn_norm, gate, up, down,
      out_norm, out;
};

std::vector<float> Random(std::mt19937& rng, std::size_t n, float scale, float offset = 0) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = offset + scale * normal(rng);
  return v;
}

Weights MakeWeights() {
  std::mt19937 rng(2309);
  Weights w;
  w.embd = Random(rng, kVocab * kD, 1.0f);
  w.attn_norm = Random(rng, kD, 0.1f, 1.0f);
  w.wq = Random(rng, kH * kHq * kD, 0.3f);
  w.wkv_a = Random(rng, (kKvl + kRot) * kD, 0.3f);
  w.kv_a_norm = Random(rng, kKvl, 0.1f, 1.0f);
  w.k_b = Random(rng, kH * kKvl * kNope, 0.3f);
  w.v_b = Random(rng, kH * kVh * kKvl, 0.3f);
  w.wo = Random(rng, kD * kH * kVh, 0.1f);
  w.ffn_norm = Random(rng, kD, 0.1f, 1.0f);
  w.gate = Random(rng, kFf * kD, 0.2f);
  w.up = Random(rng, kFf * kD, 0.2f);
  w.down = Random(rng, kD * kFf, 0.2f);
  w.out_norm = Random(rng, kD, 0.1f, 1.0f);
  w.out = Random(rng, kVocab * kD, 0.3f);
  return w;
}

std::span<const std::byte> Bytes(const std::vector<float>& v) {
  return std::as_bytes(std::span<const float>(v));
}

std::string WriteModel(const Weights& w, const std::filesystem::path& path) {
  gguf::Writer f;
  const std::string a = "deepseek2.";
  f.AddString("general.architecture", "deepseek2");
  f.AddUint32(a + "context_length", 8192);
  f.AddUint32(a + "embedding_length", kD);
  f.AddUint32(a + "block_count", 1);
  f.AddUint32(a + "feed_forward_length", kFf);
  f.AddUint32(a + "attention.head_count", kH);
  f.AddUint32(a + "attention.head_count_kv", 1);
  f.AddFloat32(a + "attention.layer_norm_rms_epsilon", 1e-6f);
  f.AddFloat32(a + "rope.freq_base", static_cast<float>(kBase));
  f.AddUint32(a + "rope.dimension_count", kRot);
  f.AddUint32(a + "attention.q_lora_rank", 0);
  f.AddUint32(a + "attention.kv_lora_rank", kKvl);
  f.AddUint32(a + "attention.key_length_mla", kHq);
  f.AddUint32(a + "attention.value_length_mla", kVh);
  f.AddUint32(a + "expert_count", 2);
  f.AddUint32(a + "expert_used_count", 1);
  f.AddUint32(a + "expert_feed_forward_length", 32);
  f.AddUint32(a + "leading_dense_block_count", 1);
  f.AddString(a + "rope.scaling.type", "yarn");
  f.AddFloat32(a + "rope.scaling.factor", static_cast<float>(kFactor));
  f.AddUint32(a + "rope.scaling.original_context_length", static_cast<std::uint32_t>(kOrigCtx));
  f.AddFloat32(a + "rope.scaling.yarn_log_multiplier", static_cast<float>(0.1 * kMscaleAllDim));
  using U = std::uint64_t;
  const auto F32 = gguf::GgmlType::kF32;
  f.AddTensor("token_embd.weight", F32, {U{kD}, U{kVocab}}, Bytes(w.embd));
  f.AddTensor("output.weight", F32, {U{kD}, U{kVocab}}, Bytes(w.out));
  f.AddTensor("output_norm.weight", F32, {U{kD}}, Bytes(w.out_norm));
  f.AddTensor("blk.0.attn_norm.weight", F32, {U{kD}}, Bytes(w.attn_norm));
  f.AddTensor("blk.0.attn_q.weight", F32, {U{kD}, U{kH * kHq}}, Bytes(w.wq));
  f.AddTensor("blk.0.attn_kv_a_mqa.weight", F32, {U{kD}, U{kKvl + kRot}}, Bytes(w.wkv_a));
  f.AddTensor("blk.0.attn_kv_a_norm.weight", F32, {U{kKvl}}, Bytes(w.kv_a_norm));
  f.AddTensor("blk.0.attn_k_b.weight", F32, {U{kNope}, U{kKvl}, U{kH}}, Bytes(w.k_b));
  f.AddTensor("blk.0.attn_v_b.weight", F32, {U{kKvl}, U{kVh}, U{kH}}, Bytes(w.v_b));
  f.AddTensor("blk.0.attn_output.weight", F32, {U{kH * kVh}, U{kD}}, Bytes(w.wo));
  f.AddTensor("blk.0.ffn_norm.weight", F32, {U{kD}}, Bytes(w.ffn_norm));
  f.AddTensor("blk.0.ffn_gate.weight", F32, {U{kD}, U{kFf}}, Bytes(w.gate));
  f.AddTensor("blk.0.ffn_up.weight", F32, {U{kD}, U{kFf}}, Bytes(w.up));
  f.AddTensor("blk.0.ffn_down.weight", F32, {U{kFf}, U{kD}}, Bytes(w.down));
  EXPECT_TRUE(f.WriteFile(path.string()).ok());
  return path.string();
}

using Vec = std::vector<double>;

// out[r] = sum_c m[r * cols + c] * x[c]
Vec MatVec(const std::vector<float>& m, const Vec& x, int rows, int cols, std::size_t at = 0) {
  Vec out(rows, 0.0);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) out[r] += m[at + static_cast<std::size_t>(r) * cols + c] * x[c];
  }
  return out;
}

Vec RmsNorm(const Vec& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double scale = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * w[i];
  return out;
}

// The YaRN frequencies theta'_j (see the file comment); plain theta_j when !yarn.
Vec Frequencies(bool yarn) {
  Vec theta(kRot / 2);
  auto corr_dim = [](double turns) {
    return kRot * std::log(kOrigCtx / (turns * 2 * std::numbers::pi)) / (2 * std::log(kBase));
  };
  const double low = std::max(0.0, std::floor(corr_dim(kBetaFast)));
  const double high = std::min(kRot - 1.0, std::ceil(corr_dim(kBetaSlow)));
  for (int j = 0; j < kRot / 2; ++j) {
    const double t = std::pow(kBase, -2.0 * j / kRot);
    if (!yarn) {
      theta[j] = t;
      continue;
    }
    const double interp_share = std::clamp((j - low) / std::max(1e-3, high - low), 0.0, 1.0);
    const double extrap_share = 1.0 - interp_share;
    theta[j] = t / kFactor * (1 - extrap_share) + t * extrap_share;
  }
  return theta;
}

// Rotates pairs (2j, 2j+1) of v[offset ..] by pos * theta_j.
void Rope(Vec& v, int offset, int pos, const Vec& theta) {
  for (int j = 0; j < kRot / 2; ++j) {
    const double a = pos * theta[j], c = std::cos(a), s = std::sin(a);
    const double x0 = v[offset + 2 * j], x1 = v[offset + 2 * j + 1];
    v[offset + 2 * j] = x0 * c - x1 * s;
    v[offset + 2 * j + 1] = x0 * s + x1 * c;
  }
}

// Logits of every position of `tokens` by the reference forward pass.
std::vector<Vec> ReferenceLogits(const Weights& w, const std::vector<int>& tokens, bool yarn) {
  const double eps = 1e-6;
  const Vec theta = Frequencies(yarn);
  const double mscale = yarn ? 0.1 * kMscaleAllDim * std::log(kFactor) + 1 : 1.0;
  const double scale = mscale * mscale / std::sqrt(static_cast<double>(kHq));
  std::vector<Vec> latents, k_pes, logits;
  for (std::size_t pos = 0; pos < tokens.size(); ++pos) {
    Vec x(w.embd.begin() + tokens[pos] * kD, w.embd.begin() + (tokens[pos] + 1) * kD);
    Vec xn = RmsNorm(x, w.attn_norm, eps);
    Vec q = MatVec(w.wq, xn, kH * kHq, kD);
    Vec kv = MatVec(w.wkv_a, xn, kKvl + kRot, kD);
    Rope(kv, kKvl, static_cast<int>(pos), theta);
    Vec latent = RmsNorm(Vec(kv.begin(), kv.begin() + kKvl), w.kv_a_norm, eps);
    latents.push_back(latent);
    k_pes.emplace_back(kv.begin() + kKvl, kv.end());
    Vec attn(kH * kVh, 0.0);
    for (int h = 0; h < kH; ++h) {
      Vec qh(q.begin() + h * kHq, q.begin() + (h + 1) * kHq);
      Rope(qh, kNope, static_cast<int>(pos), theta);
      Vec scores(pos + 1);
      double m = -INFINITY;
      for (std::size_t t = 0; t <= pos; ++t) {
        double s = 0;
        for (int c = 0; c < kNope; ++c) {  // k_nope[c] = sum_r k_b[h][r][c] latent[r]
          double k_nope = 0;
          for (int r = 0; r < kKvl; ++r)
            k_nope += w.k_b[(static_cast<std::size_t>(h) * kKvl + r) * kNope + c] * latents[t][r];
          s += qh[c] * k_nope;
        }
        for (int e = 0; e < kRot; ++e) s += qh[kNope + e] * k_pes[t][e];
        scores[t] = s * scale;
        m = std::max(m, scores[t]);
      }
      double sum = 0;
      for (double& s : scores) sum += s = std::exp(s - m);
      for (std::size_t t = 0; t <= pos; ++t) {
        const Vec v =
            MatVec(w.v_b, latents[t], kVh, kKvl, static_cast<std::size_t>(h) * kVh * kKvl);
        for (int o = 0; o < kVh; ++o) attn[h * kVh + o] += scores[t] / sum * v[o];
      }
    }
    Vec o = MatVec(w.wo, attn, kD, kH * kVh);
    for (int i = 0; i < kD; ++i) x[i] += o[i];
    xn = RmsNorm(x, w.ffn_norm, eps);
    Vec g = MatVec(w.gate, xn, kFf, kD), u = MatVec(w.up, xn, kFf, kD);
    for (int i = 0; i < kFf; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    Vec dn = MatVec(w.down, g, kD, kFf);
    for (int i = 0; i < kD; ++i) x[i] += dn[i];
    logits.push_back(MatVec(w.out, RmsNorm(x, w.out_norm, eps), kVocab, kD));
  }
  return logits;
}

TEST(YarnReference, Deepseek2WithYarnMatchesPaperFormulas) {
  testing::TempDir dir;
  const Weights w = MakeWeights();
  const std::string path = WriteModel(w, dir.path() / "yarn.gguf");
  auto model = Model::Load(path);
  ASSERT_TRUE(model.has_value()) << model.error().message();
  ASSERT_TRUE((*model)->config().yarn.enabled);
  std::vector<int> tokens;
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 40; ++i) {
    tokens.push_back((i * 7 + 3) % kVocab);
    ids.push_back(tokens.back());
  }
  SessionOptions so;
  so.exact_math = true;
  so.n_threads = 2;
  so.n_ctx = 64;
  auto session = Session::Create(**model, so);
  ASSERT_TRUE(session.has_value()) << session.error().message();
  auto got = (*session)->Eval(ids, /*all_logits=*/true);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  const auto want = ReferenceLogits(w, tokens, /*yarn=*/true);
  const auto plain = ReferenceLogits(w, tokens, /*yarn=*/false);
  double worst = 0, yarn_effect = 0;
  for (std::size_t p = 0; p < tokens.size(); ++p) {
    for (int v = 0; v < kVocab; ++v) {
      worst = std::max(worst, std::fabs((*got)[p * kVocab + v] - want[p][v]));
      yarn_effect = std::max(yarn_effect, std::fabs(want[p][v] - plain[p][v]));
    }
  }
  std::printf("max |engine - YaRN reference| = %.3g; YaRN moves the reference by up to %.3g\n",
              worst, yarn_effect);
  EXPECT_LE(worst, 1e-4);
  EXPECT_GT(yarn_effect, 1e-2);
}

}  // namespace
}  // namespace airlock::engine
