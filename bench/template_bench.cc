// Chat-template rendering cost: a Qwen3-style template (the fuzz seed, written for this project)
// over conversations of N turns, and parsing/analysis of the same template. Reports bytes of
// prompt produced per second; the baseline in the same run is a plain string concatenation of the
// same messages (what rendering costs beyond copying the text).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "template/analyze.h"
#include "template/chat.h"

namespace {

std::string LoadSeed() {
  // The checkout root is two levels above this file.
  auto root = std::filesystem::path(__FILE__).parent_path().parent_path();
  std::ifstream f(root / "fuzz" / "corpus" / "template_fuzz" / "qwen3style.jinja");
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::vector<airlock::tmpl::ChatMessage> Conversation(int turns) {
  std::vector<airlock::tmpl::ChatMessage> msgs;
  std::string filler;
  for (int i = 0; i < 40; ++i) filler += "lorem ipsum ";
  for (int i = 0; i < turns; ++i) {
    airlock::tmpl::ChatMessage u, a;
    u.role = "user";
    u.content = airlock::tmpl::Value::String("Question " + std::to_string(i) + ": " + filler);
    a.role = "assistant";
    a.content = airlock::tmpl::Value::String("<think>\nthinking\n</think>\n\nAnswer " + filler);
    msgs.push_back(u);
    msgs.push_back(a);
  }
  return msgs;
}

void BM_RenderChat(benchmark::State& state) {
  auto tmpl = airlock::tmpl::Template::Parse(LoadSeed());
  if (!tmpl) {
    state.SkipWithError("template did not parse");
    return;
  }
  auto msgs = Conversation(int(state.range(0)));
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto r = airlock::tmpl::RenderChat(*tmpl, msgs);
    if (!r) {
      state.SkipWithError(r.error().message().c_str());
      return;
    }
    bytes += r->text.size();
    benchmark::DoNotOptimize(r->segments.data());
  }
  state.SetBytesProcessed(std::int64_t(bytes));
}
BENCHMARK(BM_RenderChat)->Arg(1)->Arg(10)->Arg(500);

void BM_ConcatBaseline(benchmark::State& state) {
  auto msgs = Conversation(int(state.range(0)));
  std::size_t bytes = 0;
  for (auto _ : state) {
    std::string out;
    for (const auto& m : msgs)
      out += "<|im_start|>" + m.role + "\n" + m.content.str() + "<|im_end|>\n";
    bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(std::int64_t(bytes));
}
BENCHMARK(BM_ConcatBaseline)->Arg(1)->Arg(10)->Arg(500);

void BM_ParseAndAnalyze(benchmark::State& state) {
  std::string src = LoadSeed();
  for (auto _ : state) {
    auto t = airlock::tmpl::Template::Parse(src);
    auto a = airlock::tmpl::AnalyzeTemplate(src);
    benchmark::DoNotOptimize(a.findings.data());
    benchmark::DoNotOptimize(t.ok());
  }
  state.SetBytesProcessed(std::int64_t(state.iterations() * src.size() * 2));
}
BENCHMARK(BM_ParseAndAnalyze);

}  // namespace

BENCHMARK_MAIN();
