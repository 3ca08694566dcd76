// Tokenizer throughput: Encode MB/s (Google Benchmark's bytes_per_second) on the llama.cpp test
// vocabularies in ../shared/fixtures/llama-vocab (llama-bpe, qwen2, llama-spm; skipped when
// absent), on ~256 KiB of text built from that folder's mixed-script test inputs plus
// generated prose and code; and the time to build a tokenizer from a GGUF.
//   ./build/bench/tokenizer_bench --benchmark_min_time=1s
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "core/file.h"
#include "engine/tokenizer.h"
#include "formats/gguf.h"

namespace {

using airlock::engine::Tokenizer;

std::filesystem::path VocabDir() {
  if (const char* env = std::getenv("AIRLOCK_FIXTURES")) {
    return std::filesystem::path(env) / "llama-vocab";
  }
  return std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "shared" / "fixtures" /
         "llama-vocab";
}

std::filesystem::path VocabPath(const std::string& name) {
  return VocabDir() / ("ggml-vocab-" + name + ".gguf");
}

std::unique_ptr<Tokenizer> Load(const std::string& name) {
  auto mapped = airlock::core::MappedFile::Open(VocabPath(name).string());
  if (!mapped) return nullptr;
  auto file = airlock::formats::gguf::File::Parse(mapped->bytes());
  if (!file) return nullptr;
  auto t = Tokenizer::FromGguf(*file);
  if (!t) return nullptr;
  return std::make_unique<Tokenizer>(std::move(t).value());
}

const std::string& Corpus() {
  static const std::string* text = [] {
    auto* s = new std::string();
    std::ifstream in(VocabPath("llama-bpe").string() + ".inp", std::ios::binary);
    std::ostringstream mixed;
    mixed << in.rdbuf();
    const std::string prose =
        "The quick brown fox jumps over the lazy dog while 42 engineers review the model's "
        "tokenizer, asking whether it's safe to run on their own servers. ";
    const std::string code =
        "for (int i = 0; i < n; ++i) {\n    total += values[i] * 3.14159;\n}\n"
        "def tokenize(text: str) -> list[int]:\n    return [ord(c) for c in text]\n";
    while (s->size() < (256u << 10)) {
      *s += prose;
      *s += code;
      *s += mixed.str();
    }
    return s;
  }();
  return *text;
}

void BM_Encode(benchmark::State& state, const std::string& name) {
  static std::unique_ptr<Tokenizer> cache[3];
  auto& tokenizer = cache[name == "llama-bpe" ? 0 : name == "qwen2" ? 1 : 2];
  if (!tokenizer) tokenizer = Load(name);
  if (!tokenizer) {
    state.SkipWithError("vocabulary fixture not found");
    return;
  }
  const std::string& text = Corpus();
  std::size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tokenizer->Encode(text, true, false);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["bytes/token"] = static_cast<double>(text.size()) / static_cast<double>(tokens);
}

void BM_Load(benchmark::State& state, const std::string& name) {
  auto mapped = airlock::core::MappedFile::Open(VocabPath(name).string());
  if (!mapped) {
    state.SkipWithError("vocabulary fixture not found");
    return;
  }
  auto file = airlock::formats::gguf::File::Parse(mapped->bytes());
  if (!file) {
    state.SkipWithError("vocabulary fixture does not parse");
    return;
  }
  for (auto _ : state) {
    auto t = Tokenizer::FromGguf(*file);
    benchmark::DoNotOptimize(t.ok());
  }
}

BENCHMARK_CAPTURE(BM_Encode, llama_bpe, std::string("llama-bpe"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, qwen2, std::string("qwen2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, llama_spm, std::string("llama-spm"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Load, qwen2, std::string("qwen2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Load, llama_spm, std::string("llama-spm"))->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
