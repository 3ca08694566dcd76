// Perplexity and KL divergence (engine/perplexity.h, airlock perplexity).
//  - statistics on hand-computed cases (uniform logits, a 3-token KL, top-k lower bound);
//  - on the engine-reference fixtures: PPL and KL computed from airlock's own logits against the
//    same numbers computed from llama.cpp's recorded logits. Tolerances follow from the MANIFEST's
//    per-logit bounds: if every logit is within eps, every log-softmax value moves by <= 2 eps, so
//    |d ln PPL| <= 2 eps, and mean KL moves by <= 4 eps + (e^(2 eps) - 1) (M + 4 eps), M the
//    largest |log p_ref - log p_test| in the reference data. eps = 1e-3 for the exact-math session
//    against llama.cpp on the dequantized weights (MANIFEST: "1e-3 max abs"), and the family's
//    as-is tolerance (F16 0.03, quantized 0.6 sigma) for the default session;
//  - saved-logits round trip, KL(ref, ref) == 0, Q4_K_M against F16, corrupted files, the CLI.
#include "engine/perplexity.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/session.h"
#include "reference_logits.h"
#include "test_util.h"

namespace airlock::engine {
namespace {

using airlock::testing::ReadFileText;

using namespace airlock::testing;  // NOLINT(build/namespaces): reference helpers
namespace fs = std::filesystem;

// ------------------------------------------------------------------------------------------
// Statistics

TEST(PerplexityStats, UniformLogitsGiveVocabularySize) {
  std::vector<float> logits(512, 0.25f);
  NllAccumulator acc;
  for (int i = 0; i < 10; ++i) acc.Add(TokenNll(logits, i));
  EXPECT_NEAR(acc.Perplexity().value, 512.0, 1e-9);
  EXPECT_EQ(acc.Perplexity().error, 0.0);
}

TEST(PerplexityStats, ErrorIsStandardErrorOfMeanNll) {
  NllAccumulator acc;
  const std::vector<double> nll = {1.0, 2.0, 3.0, 4.0};
  for (double v : nll) acc.Add(v);
  // mean 2.5, population variance 1.25, stderr sqrt(1.25 / 3)
  EXPECT_NEAR(acc.MeanNll().value, 2.5, 1e-12);
  EXPECT_NEAR(acc.MeanNll().error, std::sqrt(1.25 / 3), 1e-12);
  EXPECT_NEAR(acc.Perplexity().value, std::exp(2.5), 1e-9);
  EXPECT_NEAR(acc.Perplexity().error, std::exp(2.5) * std::sqrt(1.25 / 3), 1e-9);
}

TEST(PerplexityStats, KlOfThreeTokenDistributions) {
  const std::vector<float> p_logits = {2.0f, 1.0f, 0.0f};
  const std::vector<float> q_logits = {1.0f, 1.5f, -0.5f};
  auto softmax = [](const std::vector<float>& l) {
    double s = 0;
    for (float v : l) s += std::exp(v);
    std::vector<double> p;
    for (float v : l) p.push_back(std::exp(v) / s);
    return p;
  };
  const auto p = softmax(p_logits), q = softmax(q_logits);
  double want = 0;
  for (int i = 0; i < 3; ++i) want += p[i] * std::log(p[i] / q[i]);
  KlAccumulator exact;
  auto got = exact.Add(MakeReferenceRow(p_logits, 1, 3), q_logits);
  ASSERT_TRUE(got.has_value());
  EXPECT_NEAR(*got, want, 1e-6);
  const KlSummary s = exact.Summarize();
  EXPECT_EQ(s.top1_agreement.value, 0.0);  // argmax 0 vs 1
  EXPECT_NEAR(s.delta_p.value, q[1] - p[1], 1e-6);
  EXPECT_NEAR(s.ppl.value, 1 / q[1], 1e-4);
  EXPECT_NEAR(s.ppl_ref.value, 1 / p[1], 1e-4);
  // Top-1 only: KL over {token 0, rest}, a lower bound of the full KL.
  KlAccumulator top1;
  auto bound = top1.Add(MakeReferenceRow(p_logits, 1, 1), q_logits);
  ASSERT_TRUE(bound.has_value());
  const double want_bound =
      p[0] * std::log(p[0] / q[0]) + (1 - p[0]) * std::log((1 - p[0]) / (1 - q[0]));
  EXPECT_NEAR(*bound, want_bound, 1e-6);
  EXPECT_LE(*bound, *got + 1e-9);
}

TEST(PerplexityStats, IdenticalDistributionsHaveZeroKl) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0, 1.3f);
  KlAccumulator acc;
  for (int pos = 0; pos < 50; ++pos) {
    std::vector<float> logits(300);
    for (float& v : logits) v = normal(rng);
    for (int k : {1, 16, 300}) {
      auto kl = acc.Add(MakeReferenceRow(logits, pos % 300, k), logits);
      ASSERT_TRUE(kl.has_value());
      EXPECT_EQ(*kl, 0.0) << "k=" << k;
    }
  }
  const KlSummary s = acc.Summarize();
  EXPECT_EQ(s.kld.value, 0.0);
  EXPECT_EQ(s.top1_agreement.value, 1.0);
  EXPECT_EQ(s.delta_p.value, 0.0);
  EXPECT_NEAR(s.ppl_ratio.value, 1.0, 1e-12);
}

// ------------------------------------------------------------------------------------------
// Saved-logits file

struct SavedFile {
  LogitsHeader header;
  std::vector<std::int32_t> tokens;
  std::vector<ReferenceRow> rows;
};

SavedFile MakeSaved(int n_vocab, int n_ctx, int chunks, int k, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> tok(0, n_vocab - 1);
  std::normal_distribution<float> normal(0, 1.5f);
  SavedFile s;
  s.header = {static_cast<std::uint32_t>(n_vocab),
              static_cast<std::uint32_t>(n_ctx),
              static_cast<std::uint32_t>(chunks),
              static_cast<std::uint32_t>(k),
              kLogitsFlagBos,
              1};
  for (int i = 0; i < n_ctx * chunks; ++i) s.tokens.push_back(tok(rng));
  for (int c = 0; c < chunks; ++c) {
    for (int p = n_ctx / 2; p < n_ctx - 1; ++p) {
      std::vector<float> logits(n_vocab);
      for (float& v : logits) v = normal(rng);
      s.rows.push_back(MakeReferenceRow(logits, s.tokens[c * n_ctx + p + 1], k));
    }
  }
  return s;
}

Status WriteSaved(const SavedFile& s, const std::string& path) {
  auto w = LogitsWriter::Create(path, s.header, s.tokens);
  if (!w.has_value()) return w.error();
  for (const auto& r : s.rows) AIRLOCK_TRY((*w)->Append(r));
  return (*w)->Finish();
}

Result<LogitsFile> ParseString(const std::string& bytes) {
  return LogitsFile::Parse(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
}

TEST(SavedLogits, RoundTrip) {
  testing::TempDir dir("ppl");
  const SavedFile s = MakeSaved(200, 16, 3, 8, 1);
  const std::string path = (dir.path() / "ref.logits").string();
  ASSERT_TRUE(WriteSaved(s, path).ok());
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(fs::file_size(path), 64u + 4u * 16 * 3 + (12u + 8u * 8) * 7 * 3);
  auto f = LogitsFile::Open(path);
  ASSERT_TRUE(f.has_value()) << f.error().message();
  EXPECT_EQ(f->header().n_vocab, 200u);
  EXPECT_EQ(f->header().top_k, 8u);
  EXPECT_EQ(f->header().bos, 1);
  EXPECT_EQ(f->Tokens(), s.tokens);
  ASSERT_EQ(f->rows(), s.rows.size());
  for (std::size_t i = 0; i < s.rows.size(); ++i) {
    const ReferenceRow r = f->Row(i);
    EXPECT_EQ(r.correct, s.rows[i].correct);
    EXPECT_EQ(r.correct_logprob, s.rows[i].correct_logprob);
    EXPECT_EQ(r.tail_mass, s.rows[i].tail_mass);
    EXPECT_EQ(r.ids, s.rows[i].ids);
    EXPECT_EQ(r.logprobs, s.rows[i].logprobs);
  }
}

TEST(SavedLogits, WriterRefusesWrongRowCount) {
  testing::TempDir dir("ppl");
  SavedFile s = MakeSaved(50, 8, 2, 4, 2);
  s.rows.pop_back();
  const std::string path = (dir.path() / "short.logits").string();
  const Status st = WriteSaved(s, path);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(path));
}

TEST(SavedLogits, TruncatedAndCorruptedFilesAreRejectedCleanly) {
  testing::TempDir dir("ppl");
  const SavedFile s = MakeSaved(64, 12, 2, 6, 3);
  const fs::path path = dir.path() / "ref.logits";
  ASSERT_TRUE(WriteSaved(s, path.string()).ok());
  const std::string good = ReadFileText(path);
  ASSERT_TRUE(ParseString(good).has_value());

  // Every truncation fails with kCorrupt and a message.
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto r = ParseString(good.substr(0, n));
    ASSERT_FALSE(r.has_value()) << n;
    EXPECT_EQ(r.error().code(), StatusCode::kCorrupt) << n;
    EXPECT_NE(r.error().message().find("saved-logits"), std::string::npos);
  }
  auto trailing = ParseString(good + "x");
  ASSERT_FALSE(trailing.has_value());
  EXPECT_NE(trailing.error().message().find("trailing"), std::string::npos);

  std::string bad_magic = good;
  bad_magic[0] = 'X';
  EXPECT_NE(ParseString(bad_magic).error().message().find("magic"), std::string::npos);
  std::string v2 = good;
  v2[8] = 2;
  EXPECT_EQ(ParseString(v2).error().code(), StatusCode::kUnsupported);
  std::string huge_vocab = good;  // n_vocab at offset 16
  huge_vocab[19] = 0x7f;
  EXPECT_EQ(ParseString(huge_vocab).error().code(), StatusCode::kCorrupt);
  std::string huge_chunks = good;  // n_chunks at 24: sizes no longer match the file
  huge_chunks[27] = 0x7f;
  EXPECT_EQ(ParseString(huge_chunks).error().code(), StatusCode::kCorrupt);
  std::string bad_token = good;  // first stored token
  bad_token[64] = static_cast<char>(0xff);
  bad_token[65] = static_cast<char>(0xff);
  EXPECT_NE(ParseString(bad_token).error().message().find("token"), std::string::npos);
  // First row's first log-prob := NaN.
  const std::size_t rows_at = 64 + 4 * 12 * 2;
  std::string nan_row = good;
  const std::uint32_t nan_bits = 0x7fc00000;
  std::memcpy(&nan_row[rows_at + 12 + 4 * 6], &nan_bits, 4);
  EXPECT_EQ(ParseString(nan_row).error().code(), StatusCode::kCorrupt);

  // Every single-byte flip: parses or fails cleanly (the ASan build runs this too).
  int rejected = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string flipped = good;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x5a);
    auto r = ParseString(flipped);
    if (!r.has_value()) {
      ++rejected;
      EXPECT_FALSE(r.error().message().empty());
    }
  }
  EXPECT_GT(rejected, 0);
  auto missing = LogitsFile::Open((dir.path() / "nope").string());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
}

// The fuzz seeds were written by an independent Python writer following docs/perplexity.md, so
// parsing them checks the documented format, not just our own writer.
TEST(SavedLogits, DocumentedFormatSeedsParse) {
  const fs::path dir = fs::path(AIRLOCK_SOURCE_DIR) / "fuzz" / "corpus" / "logits_fuzz";
  int parsed = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    auto f = LogitsFile::Open(e.path().string());
    ASSERT_TRUE(f.has_value()) << e.path() << ": " << f.error().message();
    EXPECT_GT(f->rows(), 0u);
    ++parsed;
  }
  EXPECT_EQ(parsed, 3);
}

// ------------------------------------------------------------------------------------------
// Against llama.cpp's recorded logits

struct RefFile {
  std::string name;
  std::string family;
  double sigma = 0;
  Json ref;
};

// Dense fixture models this engine runs, with their reference JSON, keyed by file name.
std::map<std::string, RefFile> LoadRefs(const fs::path& fixtures) {
  std::ifstream index_file(fixtures / "refs" / "index.json");
  const Json index = Json::parse(index_file);
  std::map<std::string, RefFile> out;
  for (const auto& [file, meta] : index["files"].items()) {
    const std::string arch = meta["arch"];
    if (arch != "llama" && arch != "qwen2" && arch != "qwen3") continue;
    if (!fs::exists(fixtures / "models" / file)) continue;
    RefFile r;
    r.name = file;
    r.family = meta["family"];
    r.sigma = meta["noise"]["logit_std"];
    r.ref = ReadGzipJson(fixtures / meta["reference"].get<std::string>());
    out.emplace(file, std::move(r));
  }
  return out;
}

// llama.cpp's logits that an exact-math engine should match to 1e-3 (MANIFEST).
std::vector<std::vector<float>> ExactPromptLogits(const RefFile& r) {
  return ToMatrix(r.family == "F32" ? r.ref["prompt_logits"] : r.ref["dequant_f32_prompt_logits"]);
}

// llama.cpp's reference runs used an F32 KV cache (MANIFEST), so the comparisons with them do too;
// the default F16 cache is checked against it separately.
std::vector<std::vector<float>> AirlockLogits(const fs::path& model_path,
                                              const std::vector<std::int32_t>& ids, bool exact,
                                              KvCacheType kv_type = KvCacheType::kF32) {
  auto model = Model::Load(model_path.string());
  EXPECT_TRUE(model.has_value()) << model.error().message();
  if (!model.has_value()) return {};
  SessionOptions so;
  so.n_ctx = static_cast<int>(ids.size());
  so.n_threads = 2;
  so.exact_math = exact;
  so.kv_type = kv_type;
  auto session = Session::Create(**model, so);
  EXPECT_TRUE(session.has_value());
  auto logits = (*session)->Eval(ids, true);
  EXPECT_TRUE(logits.has_value());
  const std::size_t vocab = logits->size() / ids.size();
  std::vector<std::vector<float>> out;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    out.emplace_back(logits->begin() + i * vocab, logits->begin() + (i + 1) * vocab);
  }
  return out;
}

// llama.cpp's scoring of one chunk: positions n/2 .. n-2 predict the next token.
Estimate ChunkPpl(const std::vector<std::vector<float>>& logits,
                  const std::vector<std::int32_t>& ids) {
  NllAccumulator acc;
  const std::size_t n = ids.size();
  for (std::size_t p = n / 2; p + 1 < n; ++p) acc.Add(TokenNll(logits[p], ids[p + 1]));
  return acc.Perplexity();
}

TEST(PerplexityReference, PerplexityMatchesLlamaCppLogits) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "engine-reference");
  const auto refs = LoadRefs(fixtures);
  ASSERT_FALSE(refs.empty());
  int checked = 0;
  std::printf("%-22s %12s %12s %10s | %12s %12s %10s\n", "file", "ppl exact", "llama.cpp", "|d ln|",
              "ppl default", "llama.cpp", "|d ln|");
  for (const auto& [file, r] : refs) {
    SCOPED_TRACE(file);
    const auto prompt = r.ref["prompt_ids"].get<std::vector<std::int32_t>>();
    // 1. Exact math on the 24-token prompt (one llama.cpp chunk of 24) vs dequant/F32 logits.
    const auto want_exact = ChunkPpl(ExactPromptLogits(r), prompt);
    const auto got_exact =
        ChunkPpl(AirlockLogits(fixtures / "models" / file, prompt, true), prompt);
    const double d_exact = std::fabs(std::log(got_exact.value) - std::log(want_exact.value));
    EXPECT_LE(d_exact, 2 * 1e-3);
    // The same through RunPerplexity (tokens = prompt twice, one chunk: BOS is prompt[0]).
    {
      auto model = Model::Load((fixtures / "models" / file).string());
      ASSERT_TRUE(model.has_value());
      SessionOptions so;
      so.n_ctx = 24;
      so.n_threads = 2;
      so.exact_math = true;
      auto session = Session::Create(**model, so);
      ASSERT_TRUE(session.has_value());
      std::vector<std::int32_t> twice = prompt;
      twice.insert(twice.end(), prompt.begin(), prompt.end());
      PerplexityOptions o;
      o.n_ctx = 24;
      o.max_chunks = 1;
      o.bos = 1;
      auto run = RunPerplexity(**session, twice, o);
      ASSERT_TRUE(run.has_value()) << run.error().message();
      EXPECT_EQ(run->tokens_scored, 11);
      EXPECT_NEAR(run->ppl.value, got_exact.value, 1e-4 * got_exact.value);
      EXPECT_LE(std::fabs(std::log(run->ppl.value) - std::log(want_exact.value)), 2e-3);
    }
    // 2. The default (fast) session vs llama.cpp as-is, prompt + greedy as one chunk of 56.
    std::vector<std::int32_t> seq = prompt;
    const auto greedy = r.ref["greedy_ids"].get<std::vector<std::int32_t>>();
    seq.insert(seq.end(), greedy.begin(), greedy.end());
    auto as_is = ToMatrix(r.ref["prompt_logits"]);
    for (auto& row : ToMatrix(r.ref["greedy_logits"])) as_is.push_back(std::move(row));
    as_is.resize(seq.size());  // the last greedy token's logits are not needed
    const auto want_fast = ChunkPpl(as_is, seq);
    const auto got_fast = ChunkPpl(AirlockLogits(fixtures / "models" / file, seq, false), seq);
    const double tol_logit = r.family == "F32"    ? 1e-3
                             : r.family == "F16"  ? 0.03
                             : r.family == "BF16" ? 0.15
                                                  : 0.6 * r.sigma;
    const double d_fast = std::fabs(std::log(got_fast.value) - std::log(want_fast.value));
    EXPECT_LE(d_fast, 2 * tol_logit);
    // 3. The default F16 KV cache: its rounding moves logits by at most kF16KvLogitTolerance
    // (reference_test.cc), so ln PPL by at most twice that more.
    const auto got_f16 =
        ChunkPpl(AirlockLogits(fixtures / "models" / file, seq, false, KvCacheType::kAuto), seq);
    EXPECT_LE(std::fabs(std::log(got_f16.value) - std::log(want_fast.value)),
              2 * (tol_logit + 2e-2));
    std::printf("%-22s %12.5f %12.5f %10.2e | %12.5f %12.5f %10.2e\n", file.c_str(),
                got_exact.value, want_exact.value, d_exact, got_fast.value, want_fast.value,
                d_fast);
    ++checked;
  }
  std::printf("checked %d files\n", checked);
  EXPECT_GE(checked, 20);
}

TEST(PerplexityReference, KlDivergenceMatchesLlamaCppLogits) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "engine-reference");
  const auto refs = LoadRefs(fixtures);
  // (reference, test) pairs within one family; the reference is F32 or F16.
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& [file, r] : refs) {
    const std::string family_name = file.substr(0, file.rfind('-'));
    for (const char* ref_type : {"-F32.gguf", "-F16.gguf"}) {
      const std::string ref_file = family_name + ref_type;
      if (ref_file != file && refs.count(ref_file)) {
        pairs.emplace_back(ref_file, file);
        break;
      }
    }
  }
  ASSERT_GE(pairs.size(), 10u);
  constexpr double kEps = 1e-3;
  std::printf("%-18s %-18s %11s %11s %9s %7s %7s\n", "reference", "test", "KL airlock", "KL llama",
              "bound", "top1 a", "top1 l");
  for (const auto& [ref_file, test_file] : pairs) {
    SCOPED_TRACE(ref_file + " vs " + test_file);
    const RefFile& ref = refs.at(ref_file);
    const RefFile& test = refs.at(test_file);
    const auto prompt = ref.ref["prompt_ids"].get<std::vector<std::int32_t>>();
    const auto lp_ref = ExactPromptLogits(ref), lp_test = ExactPromptLogits(test);
    const auto ap_ref = AirlockLogits(fixtures / "models" / ref_file, prompt, true);
    const auto ap_test = AirlockLogits(fixtures / "models" / test_file, prompt, true);
    ASSERT_EQ(ap_ref.size(), prompt.size());
    KlAccumulator from_llama, from_airlock;
    double max_log_ratio = 0;
    int close_calls = 0;  // positions where a top-1 margin is within the noise
    auto margin = [](const std::vector<float>& v) {
      std::vector<float> s = v;
      std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
      return s[0] - s[1];
    };
    for (std::size_t p = prompt.size() / 2; p + 1 < prompt.size(); ++p) {
      const int n_vocab = static_cast<int>(lp_ref[p].size());
      ASSERT_TRUE(from_llama.Add(MakeReferenceRow(lp_ref[p], prompt[p + 1], n_vocab), lp_test[p])
                      .has_value());
      ASSERT_TRUE(from_airlock.Add(MakeReferenceRow(ap_ref[p], prompt[p + 1], n_vocab), ap_test[p])
                      .has_value());
      const double lse_r = LogSumExp(lp_ref[p]), lse_t = LogSumExp(lp_test[p]);
      for (int i = 0; i < n_vocab; ++i) {
        max_log_ratio =
            std::max(max_log_ratio, std::fabs((lp_ref[p][i] - lse_r) - (lp_test[p][i] - lse_t)));
      }
      close_calls += margin(lp_ref[p]) <= 2 * kEps || margin(lp_test[p]) <= 2 * kEps;
    }
    const KlSummary a = from_airlock.Summarize(), l = from_llama.Summarize();
    const double bound = 4 * kEps + std::expm1(2 * kEps) * (max_log_ratio + 4 * kEps);
    EXPECT_LE(std::fabs(a.kld.value - l.kld.value), bound);
    EXPECT_GT(l.kld.value, 0.0);
    EXPECT_LE(std::fabs(std::log(a.ppl.value) - std::log(l.ppl.value)), 2 * kEps);
    EXPECT_LE(std::fabs(std::log(a.ppl_ref.value) - std::log(l.ppl_ref.value)), 2 * kEps);
    const double n = static_cast<double>(a.positions);
    EXPECT_LE(std::fabs(a.top1_agreement.value - l.top1_agreement.value) * n, close_calls + 1e-9);
    std::printf("%-18s %-18s %11.6f %11.6f %9.2e %6.1f%% %6.1f%%\n", ref_file.c_str(),
                test_file.c_str(), a.kld.value, l.kld.value, bound, 100 * a.top1_agreement.value,
                100 * l.top1_agreement.value);
  }
}

// ------------------------------------------------------------------------------------------
// CLI

// A SentencePiece-friendly English text of roughly `words` words.
std::string StoryText(int words) {
  static const char* kWords[] = {"Once",   "upon", "a",     "time", "there", "was",   "a",
                                 "little", "girl", "named", "Lily", "She",   "liked", "to",
                                 "play",   "in",   "the",   "park", "with",  "her",   "dog."};
  std::string s;
  std::mt19937 rng(42);
  for (int i = 0; i < words; ++i) {
    if (i) s += ' ';
    s += kWords[(i + rng() % 3) % (sizeof(kWords) / sizeof(kWords[0]))];
  }
  return s;
}

// A command's exit status and its stdout and stderr together (RunShell's pair, named).
struct CliResult {
  CliResult(std::pair<int, std::string> run) : rc(run.first), out(std::move(run.second)) {}
  int rc;
  std::string out;
};

CliResult RunCli(const std::string& args) { return airlock::testing::RunAirlock(args); }

Json JsonOf(const CliResult& r) {
  const auto at = r.out.find('{');
  EXPECT_NE(at, std::string::npos) << r.out;
  if (at == std::string::npos) return Json();
  return Json::parse(r.out.substr(at), nullptr, false);
}

class PerplexityCli : public ::testing::Test {
 protected:
  void WriteText(const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
  }
};

TEST_F(PerplexityCli, ModelAgainstItselfHasZeroKlAndQ4KMDoesNot) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "engine-reference");
  testing::TempDir dir("pplcli");
  const fs::path text = dir.path() / "story.txt";
  WriteText(text, StoryText(400));
  const std::string f16 = (fixtures / "models" / "llama-F16.gguf").string();
  const std::string q4 = (fixtures / "models" / "llama-Q4_K_M.gguf").string();
  const std::string base = (dir.path() / "f16.logits").string();
  const std::string common = " -f " + text.string() + " --ctx 64 --threads 2 --json";

  auto plain = RunCli("perplexity " + f16 + common);
  ASSERT_EQ(plain.rc, 0) << plain.out;
  const Json p = JsonOf(plain);
  ASSERT_TRUE(p.is_object()) << plain.out;
  const int chunks = p["chunks"];
  EXPECT_GE(chunks, 2);
  EXPECT_EQ(p["tokens_scored"].get<int>(), chunks * 31);
  EXPECT_EQ(p["running_ppl"].size(), static_cast<std::size_t>(chunks));
  const double ppl = p["ppl"]["value"];
  EXPECT_GT(ppl, 1.0);
  EXPECT_LT(ppl, 512.0 * 8);  // random weights: around vocabulary size, not astronomically more

  auto save = RunCli("perplexity " + f16 + common + " --save-logits " + base);
  ASSERT_EQ(save.rc, 0) << save.out;
  EXPECT_DOUBLE_EQ(JsonOf(save)["ppl"]["value"].get<double>(), ppl);
  ASSERT_TRUE(fs::exists(base));
  EXPECT_EQ(fs::file_size(base), 64u + 4u * 64 * chunks + (12u + 8u * kDefaultTopK) * 31 * chunks);

  auto self = RunCli("perplexity " + f16 + common + " --kl-divergence " + base);
  ASSERT_EQ(self.rc, 0) << self.out;
  const Json s = JsonOf(self)["kl_divergence"];
  EXPECT_EQ(s["mean_kl_divergence"]["value"].get<double>(), 0.0);
  EXPECT_EQ(s["top1_agreement"]["value"].get<double>(), 1.0);
  EXPECT_EQ(s["ppl_ratio"]["value"].get<double>(), 1.0);
  EXPECT_EQ(s["positions"].get<int>(), chunks * 31);

  auto q = RunCli("perplexity " + q4 + common + " --kl-divergence " + base);
  ASSERT_EQ(q.rc, 0) << q.out;
  const Json k = JsonOf(q)["kl_divergence"];
  const double kld = k["mean_kl_divergence"]["value"];
  const double top1 = k["top1_agreement"]["value"];
  EXPECT_GT(kld, 0.0);
  EXPECT_LT(kld, 5.0);
  EXPECT_GT(k["mean_kl_divergence"]["error"].get<double>(), 0.0);
  EXPECT_LT(top1, 1.0);
  EXPECT_GT(top1, 0.05);
  EXPECT_NEAR(k["ppl_reference"]["value"].get<double>(), ppl, 1e-3 * ppl);
  EXPECT_LE(k["kl_divergence_percentiles"]["min"].get<double>(),
            k["kl_divergence_percentiles"]["median"].get<double>());
  std::printf(
      "llama-Q4_K_M vs llama-F16 (ctx 64, %d chunks, top-%d rows): KL %.5f ± %.5f, "
      "top-1 %.1f%%, PPL %.3f vs %.3f, ratio %.4f ± %.4f\n",
      chunks, kDefaultTopK, kld, k["mean_kl_divergence"]["error"].get<double>(), 100 * top1,
      k["ppl"]["value"].get<double>(), ppl, k["ppl_ratio"]["value"].get<double>(),
      k["ppl_ratio"]["error"].get<double>());

  // Whole rows (--top-k 512): the exact KL, which the top-64 figure bounds from below.
  const std::string full = (dir.path() / "f16-full.logits").string();
  ASSERT_EQ(RunCli("perplexity " + f16 + common + " --top-k 512 --save-logits " + full).rc, 0);
  auto exact = RunCli("perplexity " + q4 + common + " --kl-divergence " + full);
  ASSERT_EQ(exact.rc, 0) << exact.out;
  const Json e = JsonOf(exact)["kl_divergence"];
  EXPECT_EQ(e["reference_top_k"].get<int>(), 512);
  EXPECT_EQ(e["reference_mean_tail_mass"].get<double>(), 0.0);
  EXPECT_GT(k["reference_mean_tail_mass"].get<double>(), 0.0);
  EXPECT_GE(e["mean_kl_divergence"]["value"].get<double>(), kld);
  EXPECT_EQ(e["top1_agreement"]["value"].get<double>(), top1);
  std::printf("  exact (whole rows): KL %.5f; top-64 rows lumped %.1f%% of the probability\n",
              e["mean_kl_divergence"]["value"].get<double>(),
              100 * k["reference_mean_tail_mass"].get<double>());

  // The text table has the same numbers.
  auto table = RunCli("perplexity " + q4 + " -f " + text.string() +
                      " --ctx 64 --threads 2 --kl-divergence " + base);
  ASSERT_EQ(table.rc, 0) << table.out;
  EXPECT_NE(table.out.find("mean KL divergence"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("top-1 agreement"), std::string::npos);
  EXPECT_NE(table.out.find("Final estimate: PPL = "), std::string::npos);

  // The library API for `airlock assess` gives the same comparison.
  CompareOptions co;
  co.n_ctx = 64;
  co.n_threads = 2;
  auto api = ComparePerplexity(f16, q4, StoryText(400), co);
  ASSERT_TRUE(api.has_value()) << api.error().message();
  EXPECT_NEAR(api->kld.value, kld, 1e-9);
  EXPECT_NEAR(api->top1_agreement.value, top1, 1e-12);
}

// The text may come through a pipe (-f /dev/stdin, -f <(cmd)): the same perplexity as from the
// file it was read from.
TEST_F(PerplexityCli, TextFromAPipeScoresLikeTheFile) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "engine-reference");
  testing::TempDir dir("pplcli");
  const fs::path text = dir.path() / "story.txt";
  WriteText(text, StoryText(300));
  const std::string f16 = (fixtures / "models" / "llama-F16.gguf").string();
  const std::string opts = " --ctx 32 --chunks 2 --threads 2 --json";
  auto from_file = RunCli("perplexity " + f16 + " -f " + text.string() + opts);
  ASSERT_EQ(from_file.rc, 0) << from_file.out;
  CliResult from_pipe =
      airlock::testing::RunShell("cat " + text.string() + " | " + std::string(AIRLOCK_EXE) +
                                 " perplexity " + f16 + " -f /dev/stdin" + opts);
  ASSERT_EQ(from_pipe.rc, 0) << from_pipe.out;
  EXPECT_EQ(JsonOf(from_file)["ppl"], JsonOf(from_pipe)["ppl"]) << from_pipe.out;
}

TEST_F(PerplexityCli, BadInputsGiveCleanErrors) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "engine-reference");
  testing::TempDir dir("pplcli");
  const fs::path text = dir.path() / "story.txt";
  WriteText(text, StoryText(300));
  const fs::path other = dir.path() / "other.txt";
  WriteText(other, StoryText(301).substr(3));
  const std::string f16 = (fixtures / "models" / "llama-F16.gguf").string();
  const std::string base = (dir.path() / "f16.logits").string();
  const std::string common = " -f " + text.string() + " --ctx 32 --threads 2";

  auto too_short = RunCli("perplexity " + f16 + " -f " + text.string() + " --ctx 256");
  EXPECT_EQ(too_short.rc, 1);
  EXPECT_NE(too_short.out.find("needs at least"), std::string::npos) << too_short.out;

  ASSERT_EQ(RunCli("perplexity " + f16 + common + " --save-logits " + base).rc, 0);
  auto mismatch =
      RunCli("perplexity " + f16 + " -f " + other.string() + " --ctx 32 --kl-divergence " + base);
  EXPECT_EQ(mismatch.rc, 1);
  EXPECT_NE(mismatch.out.find("do not match"), std::string::npos) << mismatch.out;

  const std::string good = ReadFileText(base);
  const fs::path truncated = dir.path() / "truncated.logits";
  std::ofstream(truncated, std::ios::binary) << good.substr(0, good.size() - 100);
  auto t = RunCli("perplexity " + f16 + common + " --kl-divergence " + truncated.string());
  EXPECT_EQ(t.rc, 1);
  EXPECT_NE(t.out.find("truncated"), std::string::npos) << t.out;

  const fs::path garbage = dir.path() / "garbage.logits";
  std::ofstream(garbage, std::ios::binary) << std::string(5000, '\x7f');
  auto g = RunCli("perplexity " + f16 + common + " --kl-divergence " + garbage.string());
  EXPECT_EQ(g.rc, 1);
  EXPECT_NE(g.out.find("bad magic"), std::string::npos) << g.out;

  auto both =
      RunCli("perplexity " + f16 + common + " --kl-divergence " + base + " --save-logits " + base);
  EXPECT_NE(both.rc, 0);
}

}  // namespace
}  // namespace airlock::engine
