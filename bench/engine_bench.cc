// Engine throughput on random-weight models of real shapes (Qwen2.5-0.5B, Llama-3.2-1B) in
// F16, Q8_0, Q4_0 and a Q4_K_M-like mixture (llama-quantize's per-tensor rules, including the
// Q5_0/Q8_0 fallbacks for rows that are not multiples of 256). For each model it prints prompt
// tok/s (128-token prompt), decode tok/s, bytes read per decoded token, the read bandwidth
// measured by a 2-thread read sweep in the same run, and decode speed as a fraction of the
// bandwidth bound (bandwidth / bytes per token).
//   usage: engine_bench [--dir DIR] [--threads N] [--models qwen05,llama1b] [--types F16,Q8_0,...]
//                       [--prompt 128] [--gen 32] [--reps 2] [--concurrent 1,2,4]
//                       [--depth 128,4096] [--kv-type f16|f32|q8_0]
// Models are generated once into DIR (default build/bench-models) and reused; they declare the real
// models' training context (Qwen2.5-0.5B 32768, Llama-3.2-1B 131072), and a file from before that
// (context_length 4096) is made again, since the engine refuses a context above it.
// --concurrent K1,K2,...: instead, aggregate decode tok/s of K streams at once (each after its own
// prompt of --prompt tokens), two ways in the same run: per-slot (the scheme `airlock serve` had
// before batching: K sessions, each with threads/K threads (at least 1) and its own thread
// running its token loop) and batched (one engine::Batch with all threads, one forward pass per
// step for the K streams); prints both, their ratio and the batched speed-up over K=1.
// --depth N1,N2,...: instead, for each depth N: prompt processing of N tokens (from an empty
// context, in chunks of 256) and decode of --gen tokens after those N tokens of context, with
// each figure's ratio to the first depth's (measured in the same run), and decode tokens per
// CPU second (all threads, spin-waits included) with its ratio: on a busy machine the CPU-time
// figure follows the work done where wall-clock speed follows the other load. --kv-type picks
// the KV cache (default f16).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"
#include "engine/batch.h"
#include "engine/internal/thread_pool.h"
#include "engine/internal/weights.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/session.h"
#include "formats/gguf_writer.h"

namespace {

using namespace airlock;
using namespace airlock::bench;  // NOLINT(build/namespaces): the shared bench helpers

struct Shape {
  std::string key, arch;
  int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;
  int n_ctx_train;  // the real model's context_length (the engine refuses a longer context)
  float rope_base;
  bool qkv_bias;
};

const Shape kShapes[] = {
    {"qwen05", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1e6f, true},
    {"llama1b", "llama", 2048, 16, 32, 8, 8192, 128256, 131072, 5e5f, false},
};

gguf::Writer::FillFn ConstantF32(float value) {
  return [=](std::uint64_t offset, std::span<std::byte> out) {
    std::uint8_t b[4];
    std::memcpy(b, &value, 4);
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = static_cast<std::byte>(b[(offset + i) % 4]);
  };
}

// The type llama-quantize would give `name` (a weight with rows of `cols`) for `ftype`.
gguf::GgmlType TypeFor(const std::string& ftype, const std::string& name, int layer, int n_layer,
                       int cols) {
  using T = gguf::GgmlType;
  if (ftype == "F16") return T::kF16;
  if (ftype == "Q8_0") return T::kQ8_0;
  T t;
  const bool is_output = name == "output" || name == "token_embd";  // tied: embd is the output
  if (ftype == "Q4_0") {
    t = is_output ? T::kQ6_K : T::kQ4_0;
  } else {  // Q4_K_M
    t = T::kQ4_K;
    if (is_output) t = T::kQ6_K;
    if ((name == "attn_v" || name == "ffn_down") && UseMoreBits(layer, n_layer)) t = T::kQ6_K;
  }
  if (cols % 256 != 0) {
    if (t == T::kQ4_K) t = T::kQ5_0;
    if (t == T::kQ6_K) t = T::kQ8_0;
  }
  return t;
}

Status Generate(const Shape& s, const std::string& ftype, const std::string& path) {
  gguf::Writer w;
  const std::string a = s.arch + ".";
  w.AddString("general.architecture", s.arch);
  w.AddString("general.name", "bench-" + s.key + "-" + ftype);
  w.AddUint32(a + "context_length", static_cast<std::uint32_t>(s.n_ctx_train));
  w.AddUint32(a + "embedding_length", s.n_embd);
  w.AddUint32(a + "block_count", s.n_layer);
  w.AddUint32(a + "feed_forward_length", s.n_ff);
  w.AddUint32(a + "attention.head_count", s.n_head);
  w.AddUint32(a + "attention.head_count_kv", s.n_head_kv);
  w.AddFloat32(a + "rope.freq_base", s.rope_base);
  w.AddFloat32(a + "attention.layer_norm_rms_epsilon", 1e-6f);
  const int hd = s.n_embd / s.n_head;
  const std::uint64_t d = s.n_embd, kv = static_cast<std::uint64_t>(s.n_head_kv) * hd;
  std::uint64_t seed = 1;
  auto matrix = [&](const std::string& tensor, const std::string& kind, int layer,
                    std::uint64_t cols, std::uint64_t rows) {
    const auto type = TypeFor(ftype, kind, layer, s.n_layer, static_cast<int>(cols));
    w.AddTensorGenerated(tensor, type, {cols, rows},
                         RandomFill(type, seed++ * 0x9e3779b97f4a7c15ULL));
  };
  auto vec = [&](const std::string& tensor, std::uint64_t n, float v) {
    w.AddTensorGenerated(tensor, gguf::GgmlType::kF32, {n}, ConstantF32(v));
  };
  matrix("token_embd.weight", "token_embd", 0, d, s.n_vocab);  // tied output
  vec("output_norm.weight", d, 1.0f);
  for (int i = 0; i < s.n_layer; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    vec(b + "attn_norm.weight", d, 1.0f);
    matrix(b + "attn_q.weight", "attn_q", i, d, d);
    matrix(b + "attn_k.weight", "attn_k", i, d, kv);
    matrix(b + "attn_v.weight", "attn_v", i, d, kv);
    if (s.qkv_bias) {
      vec(b + "attn_q.bias", d, 0.0f);
      vec(b + "attn_k.bias", kv, 0.0f);
      vec(b + "attn_v.bias", kv, 0.0f);
    }
    matrix(b + "attn_output.weight", "attn_output", i, d, d);
    vec(b + "ffn_norm.weight", d, 1.0f);
    matrix(b + "ffn_gate.weight", "ffn_gate", i, d, s.n_ff);
    matrix(b + "ffn_up.weight", "ffn_up", i, d, s.n_ff);
    matrix(b + "ffn_down.weight", "ffn_down", i, s.n_ff, d);
  }
  return w.WriteFile(path);
}

// Bytes the forward pass reads per decoded token at position `pos`: every matrix, one embedding
// row, the norms and the KV cache so far.
double BytesPerToken(const engine::Model& m, int pos) {
  const auto& w = m.weights();
  const auto& c = m.config();
  double bytes = static_cast<double>(w.output.row_bytes) * w.output.rows + w.token_embd.row_bytes;
  for (const auto& l : w.layers) {
    for (const auto* mat : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      bytes += static_cast<double>(mat->row_bytes) * mat->rows;
    }
  }
  bytes += static_cast<double>(engine::KvCacheBytesPerToken(c, engine::KvCacheType::kAuto)) * pos;
  return bytes;
}

// Multiply-adds per prompt token in the layers' matrices (the prompt's share of attention and of
// the output head, computed for the last token only, is left out).
double LayerMacsPerToken(const engine::Model& m) {
  double macs = 0;
  for (const auto& l : m.weights().layers) {
    for (const auto* mat : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      macs += static_cast<double>(mat->rows) * mat->cols;
    }
  }
  return macs;
}

std::int32_t Greedy(std::span<const float> logits) {
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

struct ConcurrentResult {
  double per_slot = 0, batched = 0;  // aggregate decode tok/s, best of reps
};

// K streams decoding `gen` tokens each after their prompts (not timed), per-slot and batched.
Result<ConcurrentResult> RunConcurrent(const engine::Model& model, int k, int threads,
                                       int prompt_len, int gen, int reps) {
  const int n_vocab = model.config().n_vocab;
  std::vector<std::vector<std::int32_t>> prompts(k);
  for (int s = 0; s < k; ++s) {
    for (int i = 0; i < prompt_len; ++i)
      prompts[s].push_back(static_cast<std::int32_t>(Hash(i + 7919 * (s + 1)) % n_vocab));
  }
  ConcurrentResult r;
  // Per-slot: each stream its own session, threads / k threads and its own token loop.
  {
    std::vector<std::unique_ptr<engine::Session>> sessions;
    engine::SessionOptions so;
    so.n_threads = std::max(1, threads / k);
    so.n_ctx = prompt_len + gen + 8;
    for (int s = 0; s < k; ++s) {
      AIRLOCK_ASSIGN_OR_RETURN(auto session, engine::Session::Create(model, so));
      sessions.push_back(std::move(session));
    }
    for (int rep = 0; rep < reps; ++rep) {
      std::vector<std::int32_t> first(k);
      for (int s = 0; s < k; ++s) {
        sessions[s]->Rewind(0);
        AIRLOCK_ASSIGN_OR_RETURN(auto logits, sessions[s]->Eval(prompts[s]));
        first[s] = Greedy(logits);
      }
      std::vector<std::thread> loops;
      const auto t0 = Clock::now();
      for (int s = 0; s < k; ++s) {
        loops.emplace_back([&, s] {
          std::int32_t tok = first[s];
          for (int g = 0; g < gen; ++g) {
            auto l = sessions[s]->Eval(std::span<const std::int32_t>(&tok, 1));
            if (!l) return;
            tok = Greedy(*l);
          }
        });
      }
      for (auto& t : loops) t.join();
      r.per_slot = std::max(r.per_slot, k * gen / Seconds(t0, Clock::now()));
    }
  }
  // Batched: one pool with every thread, one step for all k streams.
  {
    engine::BatchOptions bo;
    bo.n_threads = threads;
    bo.n_ctx = prompt_len + gen + 8;
    bo.max_rows = std::max(prompt_len, k);
    AIRLOCK_ASSIGN_OR_RETURN(auto batch, engine::Batch::Create(model, bo));
    std::vector<std::unique_ptr<engine::Session>> sessions;
    for (int s = 0; s < k; ++s) {
      AIRLOCK_ASSIGN_OR_RETURN(auto session, batch->NewSession());
      sessions.push_back(std::move(session));
    }
    std::vector<std::int32_t> tok(k);
    std::vector<engine::BatchItem> items(k);
    for (int rep = 0; rep < reps; ++rep) {
      for (int s = 0; s < k; ++s) {
        sessions[s]->Rewind(0);
        AIRLOCK_ASSIGN_OR_RETURN(auto logits, sessions[s]->Eval(prompts[s]));
        tok[s] = Greedy(logits);
      }
      const auto t0 = Clock::now();
      for (int g = 0; g < gen; ++g) {
        for (int s = 0; s < k; ++s) {
          items[s].session = sessions[s].get();
          items[s].tokens = std::span<const std::int32_t>(&tok[s], 1);
        }
        AIRLOCK_TRY(batch->Step(items));
        for (int s = 0; s < k; ++s) tok[s] = Greedy(items[s].logits);
      }
      r.batched = std::max(r.batched, k * gen / Seconds(t0, Clock::now()));
    }
  }
  return r;
}

struct DepthResult {
  double prompt = 0, decode = 0;  // tok/s, best of reps
  double decode_cpu = 0;          // decoded tokens per CPU second (all threads), best of reps
  double cpu_share = 0;           // CPU time / (wall time x threads), over the whole measurement
};

// Prompt processing of `depth` tokens from an empty context, then `gen` decoded tokens after it.
Result<DepthResult> RunDepth(const engine::Model& model, int threads, int depth, int gen, int reps,
                             engine::KvCacheType kv_type) {
  engine::SessionOptions so;
  so.n_threads = threads;
  so.n_ctx = depth + gen + 8;
  so.kv_type = kv_type;
  AIRLOCK_ASSIGN_OR_RETURN(auto session, engine::Session::Create(model, so));
  const int n_vocab = model.config().n_vocab;
  std::vector<std::int32_t> prompt(std::max(depth, 1));
  for (int i = 0; i < static_cast<int>(prompt.size()); ++i)
    prompt[i] = static_cast<std::int32_t>(Hash(i) % n_vocab);
  DepthResult r;
  double cpu = 0, wall = 0;
  for (int rep = 0; rep < reps; ++rep) {
    session->Rewind(0);
    const double c0 = CpuSeconds();
    const auto t0 = Clock::now();
    AIRLOCK_ASSIGN_OR_RETURN(auto logits, session->Eval(prompt));
    const auto t1 = Clock::now();
    if (depth > 0) r.prompt = std::max(r.prompt, depth / Seconds(t0, t1));
    std::int32_t tok = Greedy(logits);
    const auto t2 = Clock::now();
    const double c2 = CpuSeconds();
    for (int g = 0; g < gen; ++g) {
      AIRLOCK_ASSIGN_OR_RETURN(auto l, session->Eval(std::span<const std::int32_t>(&tok, 1)));
      tok = Greedy(l);
    }
    r.decode = std::max(r.decode, gen / Seconds(t2, Clock::now()));
    r.decode_cpu = std::max(r.decode_cpu, gen / (CpuSeconds() - c2));
    cpu += CpuSeconds() - c0;
    wall += Seconds(t0, Clock::now());
  }
  r.cpu_share = cpu / (wall * threads);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "build/bench-models";
  std::string models = "qwen05,llama1b";
  std::string types = "Q8_0,Q4_K_M,Q4_0,F16";
  std::string concurrent, depths;
  engine::KvCacheType kv_type = engine::KvCacheType::kAuto;
  int threads = 2, prompt_len = 128, gen = 32, reps = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir")
      dir = v;
    else if (k == "--models")
      models = v;
    else if (k == "--types")
      types = v;
    else if (k == "--threads")
      threads = std::stoi(v);
    else if (k == "--prompt")
      prompt_len = std::stoi(v);
    else if (k == "--gen")
      gen = std::stoi(v);
    else if (k == "--reps")
      reps = std::stoi(v);
    else if (k == "--concurrent")
      concurrent = v;
    else if (k == "--depth")
      depths = v;
    else if (k == "--kv-type" && engine::ParseKvCacheType(v))
      kv_type = *engine::ParseKvCacheType(v);
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  std::filesystem::create_directories(dir);
  if (!concurrent.empty()) {
    std::printf(
        "engine_bench --concurrent: kernels %s, %d threads, prompt %d, decode %d tokens per "
        "stream, best of %d\n\n",
        engine::BestKernels().name, threads, prompt_len, gen, reps);
    std::printf(
        "| model | type | streams | per-slot tok/s (all streams) | batched tok/s (all streams) "
        "| batched / per-slot | batched / batched K=1 |\n|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
  }
  if (!depths.empty()) {
    std::printf(
        "engine_bench --depth: kernels %s, %d threads, kv cache %s, decode %d tokens, best of "
        "%d; load average at start %s\n\n",
        engine::BestKernels().name, threads, engine::KvCacheTypeName(kv_type), gen, reps,
        LoadAverage().c_str());
    std::printf(
        "| model | type | depth | prompt tok/s (depth tokens) | decode tok/s (after depth) | "
        "prompt / first depth's | decode / first depth's | CPU share | decode tok/CPU-s | "
        "decode tok/CPU-s / first depth's |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
  }
  double bw = 0, int8_peak = 0;
  if (concurrent.empty() && depths.empty()) {
    std::printf("engine_bench: kernels %s, %d threads, prompt %d, decode %d tokens, best of %d\n",
                engine::BestKernels().name, threads, prompt_len, gen, reps);
    bw = MeasureReadBandwidth(threads);
    std::printf("read bandwidth (%d threads, 1 GiB sweep, best of 3): %.1f GB/s\n", threads, bw);
    const char* peak_what = "none";
    int8_peak = MeasureInt8Peak(threads, &peak_what);
    std::printf("int8 multiply-add peak (%d threads, %s, best of 3): %.1f G/s\n\n", threads,
                peak_what, int8_peak / 1e9);
    std::fflush(stdout);
    std::printf(
        "| model | type | weights MB | prompt tok/s | decode tok/s | MB/token | bound tok/s | "
        "fraction of bound | CPU share | prompt tok/CPU-s | decode tok/CPU-s | prompt G mul-add/s "
        "| prompt / int8 peak |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
  }
  for (const std::string& key : Split(models)) {
    const Shape* shape = nullptr;
    for (const auto& s : kShapes) {
      if (s.key == key) shape = &s;
    }
    if (shape == nullptr) {
      std::fprintf(stderr, "unknown model %s\n", key.c_str());
      return 2;
    }
    for (const std::string& type : Split(types)) {
      const std::string path = dir + "/" + key + "-" + type + ".gguf";
      // Files from before the real context lengths (4096) are made again.
      bool fresh = std::filesystem::exists(path);
      if (fresh) {
        auto old = engine::Model::Load(path);
        fresh = old.has_value() && (*old)->config().n_ctx_train == shape->n_ctx_train;
      }
      if (!fresh) {
        std::fprintf(stderr, "generating %s...\n", path.c_str());
        Status st = Generate(*shape, type, path);
        if (!st.ok()) {
          std::fprintf(stderr, "%s\n", st.ToString().c_str());
          return 1;
        }
      }
      auto model = engine::Model::Load(path);
      if (!model) {
        std::fprintf(stderr, "%s\n", model.error().ToString().c_str());
        return 1;
      }
      if (!depths.empty()) {
        DepthResult first;
        bool have_first = false;
        for (const std::string& ds : Split(depths)) {
          const int depth = std::max(0, std::stoi(ds));
          auto r = RunDepth(**model, threads, depth, gen, reps, kv_type);
          if (!r) {
            std::fprintf(stderr, "%s\n", r.error().ToString().c_str());
            return 1;
          }
          if (!have_first) first = *r;
          have_first = true;
          auto ratio = [](double a, double b) {
            return b > 0 && a > 0 ? std::to_string(a / b).substr(0, 4) : std::string("-");
          };
          std::printf("| %s | %s | %d | %.1f | %.1f | %s | %s | %.2f | %.1f | %s |\n", key.c_str(),
                      type.c_str(), depth, r->prompt, r->decode,
                      ratio(r->prompt, first.prompt).c_str(),
                      ratio(r->decode, first.decode).c_str(), r->cpu_share, r->decode_cpu,
                      ratio(r->decode_cpu, first.decode_cpu).c_str());
          std::fflush(stdout);
        }
        continue;
      }
      if (!concurrent.empty()) {
        double batched_one = 0;
        for (const std::string& ks : Split(concurrent)) {
          const int k = std::max(1, std::stoi(ks));
          auto r = RunConcurrent(**model, k, threads, prompt_len, gen, reps);
          if (!r) {
            std::fprintf(stderr, "%s\n", r.error().ToString().c_str());
            return 1;
          }
          if (k == 1) batched_one = r->batched;
          std::printf("| %s | %s | %d | %.1f | %.1f | %.2f | %s |\n", key.c_str(), type.c_str(), k,
                      r->per_slot, r->batched, r->batched / r->per_slot,
                      batched_one > 0
                          ? std::to_string(r->batched / batched_one).substr(0, 4).c_str()
                          : "-");
          std::fflush(stdout);
        }
        continue;
      }
      engine::SessionOptions so;
      so.n_threads = threads;
      so.n_ctx = prompt_len + gen + 8;
      auto session = engine::Session::Create(**model, so);
      if (!session) return 1;
      std::vector<std::int32_t> prompt(prompt_len);
      for (int i = 0; i < prompt_len; ++i)
        prompt[i] = static_cast<std::int32_t>(Hash(i) % shape->n_vocab);
      double best_pp = 0, best_tg = 0, cpu = 0, wall = 0, pp_cpu = 1e30, tg_cpu = 1e30;
      for (int rep = 0; rep < reps; ++rep) {
        (*session)->Rewind(0);
        const double c0 = CpuSeconds();
        const auto t0 = Clock::now();
        auto logits = (*session)->Eval(prompt);
        const auto t1 = Clock::now();
        if (!logits) return 1;
        best_pp = std::max(best_pp, prompt_len / Seconds(t0, t1));
        const double c1 = CpuSeconds();
        pp_cpu = std::min(pp_cpu, c1 - c0);
        std::int32_t tok = static_cast<std::int32_t>(
            std::max_element(logits->begin(), logits->end()) - logits->begin());
        const auto t2 = Clock::now();
        for (int g = 0; g < gen; ++g) {
          auto l = (*session)->Eval(std::span<const std::int32_t>(&tok, 1));
          if (!l) return 1;
          tok = static_cast<std::int32_t>(std::max_element(l->begin(), l->end()) - l->begin());
        }
        best_tg = std::max(best_tg, gen / Seconds(t2, Clock::now()));
        tg_cpu = std::min(tg_cpu, CpuSeconds() - c1);
        cpu += CpuSeconds() - c0;
        wall += Seconds(t0, Clock::now());
      }
      const double bpt = BytesPerToken(**model, prompt_len + gen / 2);
      const double bound = bw * 1e9 / bpt;
      // CPU share: CPU time this process got / (wall time x threads). Well below 1 means other
      // processes held the cores, and the tok/s figures understate the engine.
      // tok/CPU-s: tokens per CPU-second (user+sys, spin-waits included), comparable across
      // loads; a 2-thread run on an idle machine gets at most 2 CPU-seconds per second.
      // Prompt multiply-adds per second against the int8 peak of the same run (F16 weights run
      // in float, so their fraction is only indicative).
      const double prompt_macs = best_pp * LayerMacsPerToken(**model);
      std::printf(
          "| %s | %s | %.0f | %.1f | %.1f | %.0f | %.1f | %.2f | %.2f | %.1f | %.1f | %.1f | %.2f "
          "|\n",
          key.c_str(), type.c_str(), (*model)->config().weight_bytes / 1e6, best_pp, best_tg,
          bpt / 1e6, bound, best_tg / bound, cpu / (wall * threads), prompt_len / pp_cpu,
          gen / tg_cpu, prompt_macs / 1e9, int8_peak > 0 ? prompt_macs / int8_peak : 0.0);
      std::fflush(stdout);
    }
  }
  return 0;
}
