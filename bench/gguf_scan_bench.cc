// GGUF scan throughput against plain read speed of the same file, in the same run. Generates a
// 256 MiB llama-shaped GGUF (Q8_0 and F32 tensors, 32k-token vocabulary) once in
// $AIRLOCK_BENCH_DIR (default: the temp folder). Scanning reads only the header, so its bytes/s is
// "file size / scan time"; --hash reads everything (SHA-256), which is the fair comparison with a
// plain read.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/file.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "scan/scan.h"

namespace {

namespace gguf = airlock::formats::gguf;

const std::string& ModelPath() {
  static const std::string path = [] {
    const char* dir = std::getenv("AIRLOCK_BENCH_DIR");
    std::string p = (dir ? std::filesystem::path(dir) : std::filesystem::temp_directory_path()) /
                    "airlock_gguf_scan_bench.gguf";
    if (std::filesystem::exists(p)) return p;
    gguf::Writer w;
    w.AddString("general.architecture", "llama");
    w.AddUint32("general.quantization_version", 2);
    w.AddUint32("llama.block_count", 16);
    w.AddUint32("llama.context_length", 4096);
    w.AddUint32("llama.embedding_length", 1024);
    w.AddUint32("llama.attention.head_count", 16);
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<std::int32_t> types;
    for (int i = 0; i < 32000; ++i) {
      tokens.push_back("tok" + std::to_string(i));
      scores.push_back(-static_cast<float>(i));
      types.push_back(1);
    }
    w.AddStringArray("tokenizer.ggml.tokens", tokens);
    w.AddFloat32Array("tokenizer.ggml.scores", scores);
    w.AddInt32Array("tokenizer.ggml.token_type", types);
    auto fill = [](std::uint64_t off, std::span<std::byte> out) {
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((off + i) * 131);
    };
    // 16 layers x 4 Q8_0 matrices of 1024 x 3584 (~3.9 MB each) + norms: ~256 MiB.
    for (int l = 0; l < 16; ++l) {
      for (const char* m : {"attn_qkv", "attn_output", "ffn_up", "ffn_down"}) {
        w.AddTensorGenerated("blk." + std::to_string(l) + "." + m + ".weight",
                             gguf::GgmlType::kQ8_0, {1024, 3584}, fill);
      }
      w.AddTensorGenerated("blk." + std::to_string(l) + ".attn_norm.weight", gguf::GgmlType::kF32,
                           {1024}, fill);
    }
    auto s = w.WriteFile(p);
    if (!s.ok()) std::fprintf(stderr, "%s\n", s.message().c_str());
    return p;
  }();
  return path;
}

std::uint64_t FileSize() { return std::filesystem::file_size(ModelPath()); }

void BM_PlainRead(benchmark::State& state) {
  std::vector<char> buf(1 << 20);
  for (auto _ : state) {
    int fd = ::open(ModelPath().c_str(), O_RDONLY);
    std::uint64_t total = 0;
    ssize_t n;
    while ((n = ::read(fd, buf.data(), buf.size())) > 0) total += static_cast<std::uint64_t>(n);
    ::close(fd);
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * FileSize()));
}

void BM_ParseHeader(benchmark::State& state) {
  auto mapped = airlock::core::MappedFile::Open(ModelPath());
  for (auto _ : state) {
    auto f = gguf::File::Parse(mapped->bytes());
    benchmark::DoNotOptimize(f.ok());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * FileSize()));
}

void BM_Scan(benchmark::State& state) {
  airlock::scan::ScanOptions options;
  options.hash = state.range(0) != 0;
  for (auto _ : state) {
    auto r = airlock::scan::ScanPaths({ModelPath()}, options);
    if (!r.ok() || r->verdict != airlock::scan::Verdict::kClean)
      state.SkipWithError("scan not clean");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * FileSize()));
}

BENCHMARK(BM_PlainRead)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ParseHeader)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Scan)->Arg(0)->Arg(1)->ArgName("hash")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
