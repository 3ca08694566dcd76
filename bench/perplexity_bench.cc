// Perplexity throughput next to prompt-processing speed, on the same model, context and thread
// count, measured in the same run. Prompt processing = one Session::Eval of n_ctx tokens that
// returns only the last row of logits (what `airlock run` does with a prompt); perplexity =
// RunPerplexity over the same number of chunks (per chunk: evaluate n_ctx tokens, logits for the
// scored half, log-softmax per scored token). Token ids are pseudo-random (no tokenizer needed),
// so any GGUF the engine loads works, e.g. the engine_bench models (build/bench-models).
//   usage: perplexity_bench [--model PATH] [--ctx 128] [--chunks 4] [--threads N] [--reps 2]
// Default model: ../shared/fixtures/engine-reference/models/llama-Q8_0.gguf.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/perplexity.h"
#include "engine/session.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace airlock::engine;
  std::string model_path;
  int ctx = 128, chunks = 4, threads = 0, reps = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") {
      model_path = v;
    } else if (k == "--ctx") {
      ctx = std::atoi(v.c_str());
    } else if (k == "--chunks") {
      chunks = std::atoi(v.c_str());
    } else if (k == "--threads") {
      threads = std::atoi(v.c_str());
    } else if (k == "--reps") {
      reps = std::max(1, std::atoi(v.c_str()));
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (model_path.empty()) {
    const char* fx = std::getenv("AIRLOCK_FIXTURES");
    // bench/ -> repository root -> ../shared/fixtures
    std::filesystem::path root =
        fx ? fx
           : std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "shared" / "fixtures";
    model_path = (root / "engine-reference" / "models" / "llama-Q8_0.gguf").string();
  }
  auto model = Model::Load(model_path);
  if (!model.has_value()) {
    std::fprintf(stderr, "perplexity_bench: %s\n", model.error().message().c_str());
    return 1;
  }
  const ModelConfig& c = (*model)->config();
  ctx = std::min(ctx, c.n_ctx_train > 0 ? c.n_ctx_train : ctx);
  SessionOptions so;
  so.n_ctx = ctx;
  so.n_threads = threads;
  auto session = Session::Create(**model, so);
  if (!session.has_value()) {
    std::fprintf(stderr, "perplexity_bench: %s\n", session.error().message().c_str());
    return 1;
  }
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(ctx) * std::max(chunks, 2));
  std::uint32_t x = 12345;
  for (auto& t : tokens) {
    x = x * 1664525u + 1013904223u;
    t = static_cast<std::int32_t>((x >> 8) % static_cast<std::uint32_t>(c.n_vocab));
  }
  tokens[0] = 1 % c.n_vocab;

  // Wall-clock tok/s (best of reps) and tokens per CPU-second of the process (all threads), which
  // survives a machine shared with other jobs better than wall time.
  double best_pp = 0, best_ppl = 0, ppl_value = 0, cpu_pp = 0, cpu_ppl = 0;
  for (int r = 0; r < reps; ++r) {
    std::clock_t c0 = std::clock();
    auto t0 = Clock::now();
    for (int k = 0; k < chunks; ++k) {
      (*session)->Rewind(0);
      auto out = (*session)->Eval(
          std::span<const std::int32_t>(tokens.data() + static_cast<std::size_t>(k) * ctx, ctx),
          false);
      if (!out.has_value()) return 1;
    }
    best_pp = std::max(best_pp, chunks * static_cast<double>(ctx) / Seconds(t0));
    cpu_pp = std::max(cpu_pp, chunks * static_cast<double>(ctx) * CLOCKS_PER_SEC /
                                  static_cast<double>(std::clock() - c0));
    c0 = std::clock();
    PerplexityOptions o;
    o.n_ctx = ctx;
    o.max_chunks = chunks;
    o.bos = 1 % c.n_vocab;
    auto run = RunPerplexity(**session, tokens, o);
    if (!run.has_value()) {
      std::fprintf(stderr, "perplexity_bench: %s\n", run.error().message().c_str());
      return 1;
    }
    best_ppl = std::max(best_ppl, run->tokens_evaluated / run->seconds);
    cpu_ppl = std::max(cpu_ppl, run->tokens_evaluated * static_cast<double>(CLOCKS_PER_SEC) /
                                    static_cast<double>(std::clock() - c0));
    ppl_value = run->ppl.value;
  }
  std::printf(
      "| model | n_vocab | ctx x chunks | threads | prompt tok/s | perplexity tok/s | ratio | "
      "prompt tok/CPU-s | perplexity tok/CPU-s | ratio |\n");
  std::printf("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
  std::printf("| %s | %d | %d x %d | %d | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |\n",
              std::filesystem::path(model_path).filename().c_str(), c.n_vocab, ctx, chunks,
              (*session)->n_threads(), best_pp, best_ppl, best_ppl / best_pp, cpu_pp, cpu_ppl,
              cpu_ppl / cpu_pp);
  std::printf("(PPL of the random token stream: %.1f; best of %d runs; kernels %s)\n", ppl_value,
              reps, (*session)->kernel_name());
  return 0;
}
