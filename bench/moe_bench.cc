// Mixture-of-experts decode speed against the bound set by the bytes of the ACTIVE parameters.
// Generates (once) a random-weight qwen3moe model with the proportions of Qwen3-30B-A3B scaled
// down to fit a small machine: hidden 1024 (1/2), 12 layers (1/4), 16 q heads / 2 kv heads of
// 128 with q/k norms, 128 experts of width 384 (1/2) with 8 used per token, vocab 32768. That is
// ~1.94 B parameters of which ~0.21 B are used per token (10.6%; Qwen3-30B-A3B: 3.3 / 30.5 =
// 10.8%). Weight types follow llama-quantize's Q4_K_M rules (Q4_K; Q6_K for output and for
// attn_v/ffn_down on the "more bits" layers; rows of 384 fall back to Q5_0/Q8_0) or pure Q8_0.
// The router is F32 with random weights, so tokens spread over the experts as in a real model.
// Prints prompt tok/s, decode tok/s, active MB read per decoded token, the read bandwidth of a
// 2-thread sweep measured in the same run, and decode speed as a fraction of bandwidth / active
// bytes (and, for comparison, the bound a dense model of the same total size would have).
//   usage: moe_bench [--dir DIR] [--threads N] [--types Q4_K_M,Q8_0] [--prompt 64] [--gen 32]
//                    [--reps 2]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_common.h"
#include "engine/kernels.h"
#include "engine/internal/thread_pool.h"
#include "engine/model.h"
#include "engine/session.h"
#include "formats/gguf_writer.h"

namespace {

using namespace airlock;
using namespace airlock::bench;  // NOLINT(build/namespaces): the shared bench helpers

constexpr int kEmbd = 1024, kLayers = 12, kHeads = 16, kHeadsKv = 2, kHeadDim = 128;
constexpr int kExperts = 128, kExpertsUsed = 8, kFfExp = 384, kVocab = 32768;

// F32 values: `base` + hashed noise in [-spread, spread).
gguf::Writer::FillFn F32Fill(float base, float spread, std::uint64_t seed) {
  return [=](std::uint64_t offset, std::span<std::byte> out) {
    for (std::size_t i = 0; i < out.size(); ++i) {
      const std::uint64_t pos = offset + i, elem = pos / 4;
      const float f =
          base + spread * (static_cast<float>(Hash(elem ^ seed) % 20000) / 10000.0f - 1.0f);
      std::uint8_t b[4];
      std::memcpy(b, &f, 4);
      out[i] = static_cast<std::byte>(b[pos % 4]);
    }
  };
}

gguf::GgmlType TypeFor(const std::string& ftype, const std::string& kind, int layer, int cols) {
  using T = gguf::GgmlType;
  if (ftype == "Q8_0") return T::kQ8_0;
  T t = T::kQ4_K;
  if (kind == "output") t = T::kQ6_K;
  if ((kind == "attn_v" || kind == "ffn_down") && UseMoreBits(layer, kLayers)) t = T::kQ6_K;
  if (cols % 256 != 0) t = t == T::kQ6_K ? T::kQ8_0 : T::kQ5_0;
  return t;
}

Status Generate(const std::string& ftype, const std::string& path) {
  gguf::Writer w;
  const std::string a = "qwen3moe.";
  w.AddString("general.architecture", "qwen3moe");
  w.AddString("general.name", "bench-qwen3moe-mini-" + ftype);
  w.AddUint32(a + "context_length", 4096);
  w.AddUint32(a + "embedding_length", kEmbd);
  w.AddUint32(a + "block_count", kLayers);
  w.AddUint32(a + "feed_forward_length", 3 * kEmbd);
  w.AddUint32(a + "attention.head_count", kHeads);
  w.AddUint32(a + "attention.head_count_kv", kHeadsKv);
  w.AddUint32(a + "attention.key_length", kHeadDim);
  w.AddUint32(a + "attention.value_length", kHeadDim);
  w.AddUint32(a + "expert_count", kExperts);
  w.AddUint32(a + "expert_used_count", kExpertsUsed);
  w.AddUint32(a + "expert_feed_forward_length", kFfExp);
  w.AddFloat32(a + "rope.freq_base", 1e6f);
  w.AddFloat32(a + "attention.layer_norm_rms_epsilon", 1e-6f);
  const std::uint64_t d = kEmbd, q = kHeads * kHeadDim, kv = kHeadsKv * kHeadDim;
  std::uint64_t seed = 1;
  auto matrix = [&](const std::string& name, const std::string& kind, int layer,
                    std::vector<std::uint64_t> ne) {
    const auto type = TypeFor(ftype, kind, layer, static_cast<int>(ne[0]));
    w.AddTensorGenerated(name, type, std::move(ne),
                         RandomFill(type, seed++ * 0x9e3779b97f4a7c15ULL));
  };
  auto vec = [&](const std::string& name, std::uint64_t n) {
    w.AddTensorGenerated(name, gguf::GgmlType::kF32, {n}, F32Fill(1.0f, 0.0f, 0));
  };
  matrix("token_embd.weight", "token_embd", 0, {d, kVocab});
  matrix("output.weight", "output", 0, {d, kVocab});
  vec("output_norm.weight", d);
  for (int i = 0; i < kLayers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    vec(b + "attn_norm.weight", d);
    matrix(b + "attn_q.weight", "attn_q", i, {d, q});
    matrix(b + "attn_k.weight", "attn_k", i, {d, kv});
    matrix(b + "attn_v.weight", "attn_v", i, {d, kv});
    vec(b + "attn_q_norm.weight", kHeadDim);
    vec(b + "attn_k_norm.weight", kHeadDim);
    matrix(b + "attn_output.weight", "attn_output", i, {q, d});
    vec(b + "ffn_norm.weight", d);
    w.AddTensorGenerated(b + "ffn_gate_inp.weight", gguf::GgmlType::kF32, {d, kExperts},
                         F32Fill(0.0f, 0.05f, seed++));
    matrix(b + "ffn_gate_exps.weight", "ffn_gate", i, {d, kFfExp, kExperts});
    matrix(b + "ffn_up_exps.weight", "ffn_up", i, {d, kFfExp, kExperts});
    matrix(b + "ffn_down_exps.weight", "ffn_down", i, {kFfExp, d, kExperts});
  }
  return w.WriteFile(path);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "build/bench-models", types = "Q4_K_M";
  int threads = 2, prompt_len = 64, gen = 32, reps = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") {
      dir = v;
    } else if (k == "--types") {
      types = v;
    } else if (k == "--threads") {
      threads = std::stoi(v);
    } else if (k == "--prompt") {
      prompt_len = std::stoi(v);
    } else if (k == "--gen") {
      gen = std::stoi(v);
    } else if (k == "--reps") {
      reps = std::stoi(v);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  std::filesystem::create_directories(dir);
  std::printf("moe_bench: kernels %s, %d threads, prompt %d, decode %d tokens, best of %d\n",
              engine::BestKernels().name, threads, prompt_len, gen, reps);
  const double bw = MeasureReadBandwidth(threads);
  std::printf("read bandwidth (%d threads, 1 GiB sweep, best of 3): %.1f GB/s\n\n", threads, bw);
  std::printf(
      "| model | type | weights MB | active MB/token | prompt tok/s | decode tok/s | "
      "active bound tok/s | fraction of bound | dense-size bound tok/s | CPU share |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  std::fflush(stdout);
  for (const std::string& type : Split(types)) {
    const std::string path = dir + "/qwen3moe-mini-" + type + ".gguf";
    if (!std::filesystem::exists(path)) {
      std::fprintf(stderr, "generating %s...\n", path.c_str());
      if (Status st = Generate(type, path); !st.ok()) {
        std::fprintf(stderr, "%s\n", st.ToString().c_str());
        return 1;
      }
    }
    auto model = engine::Model::Load(path);
    if (!model) {
      std::fprintf(stderr, "%s\n", model.error().ToString().c_str());
      return 1;
    }
    const engine::ModelConfig& c = (*model)->config();
    engine::SessionOptions so;
    so.n_threads = threads;
    so.n_ctx = prompt_len + gen + 8;
    auto session = engine::Session::Create(**model, so);
    if (!session) return 1;
    std::vector<std::int32_t> prompt(prompt_len);
    for (int i = 0; i < prompt_len; ++i) prompt[i] = static_cast<std::int32_t>(Hash(i) % kVocab);
    double best_pp = 0, best_tg = 0, cpu = 0, wall = 0;
    for (int rep = 0; rep < reps; ++rep) {
      (*session)->Rewind(0);
      const double c0 = CpuSeconds();
      const auto t0 = Clock::now();
      auto logits = (*session)->Eval(prompt);
      const auto t1 = Clock::now();
      if (!logits) return 1;
      best_pp = std::max(best_pp, prompt_len / Seconds(t0, t1));
      auto tok = static_cast<std::int32_t>(std::max_element(logits->begin(), logits->end()) -
                                           logits->begin());
      const auto t2 = Clock::now();
      for (int g = 0; g < gen; ++g) {
        auto l = (*session)->Eval(std::span<const std::int32_t>(&tok, 1));
        if (!l) return 1;
        tok = static_cast<std::int32_t>(std::max_element(l->begin(), l->end()) - l->begin());
      }
      best_tg = std::max(best_tg, gen / Seconds(t2, Clock::now()));
      cpu += CpuSeconds() - c0;
      wall += Seconds(t0, Clock::now());
    }
    // Bytes per decoded token: the active weights plus the KV cache read at the mean position.
    const double kv =
        2.0 * c.n_layer * c.n_head_kv * c.head_dim * sizeof(float) * (prompt_len + gen / 2);
    const double active = static_cast<double>(c.moe.active_weight_bytes) + kv;
    const double bound = bw * 1e9 / active;
    const double dense_bound = bw * 1e9 / (static_cast<double>(c.weight_bytes) + kv);
    std::printf(
        "| qwen3moe-mini (128 experts, 8 used) | %s | %.0f | %.0f | %.1f | %.1f | %.1f | "
        "%.2f | %.1f | %.2f |\n",
        type.c_str(), c.weight_bytes / 1e6, active / 1e6, best_pp, best_tg, bound, best_tg / bound,
        dense_bound, cpu / (wall * threads));
    std::fflush(stdout);
  }
  return 0;
}
