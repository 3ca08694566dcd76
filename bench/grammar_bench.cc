// Grammar-constrained sampling cost: the time to compute one token mask (TokenConstraint::Allowed)
// over the Qwen2 vocabulary (151,936 tokens, ../shared/fixtures/llama-vocab; skipped when absent)
// at three points of a JSON document: where only '{' may come (structure), inside a free string
// (nearly every token can continue), and inside an enum value. Also the schema compile time.
//   ./build/bench/grammar_bench --benchmark_min_time=1s
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "core/file.h"
#include "engine/grammar.h"
#include "engine/tokenizer.h"
#include "formats/gguf.h"

namespace {

using namespace airlock::engine;

const char* kSchema = R"({"type":"object","properties":{"name":{"type":"string"},
  "color":{"enum":["red","green","blue"]},"happy":{"type":"boolean"}},
  "required":["name","color","happy"]})";

std::unique_ptr<Tokenizer> LoadQwen2() {
  std::filesystem::path dir;
  if (const char* env = std::getenv("AIRLOCK_FIXTURES")) {
    dir = std::filesystem::path(env) / "llama-vocab";
  } else {
    dir = std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "shared" / "fixtures" /
          "llama-vocab";
  }
  auto mapped = airlock::core::MappedFile::Open((dir / "ggml-vocab-qwen2.gguf").string());
  if (!mapped) return nullptr;
  auto file = airlock::formats::gguf::File::Parse(mapped->bytes());
  if (!file) return nullptr;
  auto t = Tokenizer::FromGguf(*file);
  if (!t) return nullptr;
  return std::make_unique<Tokenizer>(std::move(*t));
}

// cached: the mask of a state seen before (TokenConstraint keeps the last 8); otherwise the
// first time a state is met.
void BM_Mask(benchmark::State& state, const char* prefix, bool cached) {
  static std::unique_ptr<Tokenizer> tok = LoadQwen2();
  if (!tok) {
    state.SkipWithError("ggml-vocab-qwen2.gguf not found");
    return;
  }
  auto grammar = CompileJsonSchema(kSchema);
  if (!grammar) {
    state.SkipWithError(grammar.error().ToString().c_str());
    return;
  }
  TokenConstraint c(*grammar, *tok);
  GrammarMatcher m(*grammar);
  std::vector<char> allowed;
  // Advance the constraint over the prefix through the matcher's bytes, one token per byte
  // where the vocabulary has it.
  for (const char* p = prefix; *p != '\0'; ++p) {
    const TokenId id = tok->Find(std::string(1, *p));
    if (id == kNoToken || !c.Accept(id)) {
      state.SkipWithError("prefix not reachable");
      return;
    }
  }
  int count = 0;
  for (auto _ : state) {
    if (cached) {
      count = c.Allowed(allowed);
    } else {
      state.PauseTiming();
      TokenConstraint fresh = c;  // c never computed a mask: its cache is empty
      state.ResumeTiming();
      count = fresh.Allowed(allowed);
    }
    benchmark::DoNotOptimize(count);
  }
  state.counters["allowed"] = count;
}
BENCHMARK_CAPTURE(BM_Mask, structure, "", false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Mask, in_string, "{\"name\":\"ab", false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Mask, in_string_cached, "{\"name\":\"ab", true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Mask, in_enum, "{\"name\":\"ab\",\"color\":\"gr", false)
    ->Unit(benchmark::kMillisecond);

void BM_CompileSchema(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(CompileJsonSchema(kSchema));
}
BENCHMARK(BM_CompileSchema)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
