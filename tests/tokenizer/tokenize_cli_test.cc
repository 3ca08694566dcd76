// `airlock tokenize` end to end: the llama.cpp test vectors of two vocabularies (SPM and BPE) go
// through the CLI (text from a file, --ids --no-bos) and must print exactly the recorded ids; plus
// the BOS,
// --parse-special and --json behaviour and the error exit code.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

namespace {

using airlock::testing::ReadFileText;

using airlock::testing::Quote;

struct CliRun {
  int exit_code;
  std::string out;
};

CliRun RunAirlock(const std::string& args) {
  auto [code, out] =
      airlock::testing::RunShellStdout(std::string(AIRLOCK_EXE) + " " + args + " 2>/dev/null");
  return {code, out};
}

// "[1, 2, 3]\n" for the ids on an .out line (" 1 2 3").
std::string AsIdList(const std::string& out_line) {
  std::istringstream in(out_line);
  std::string result = "[";
  long id;
  bool first = true;
  while (in >> id) {
    if (!first) result += ", ";
    result += std::to_string(id);
    first = false;
  }
  return result + "]\n";
}

class TokenizeCliVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizeCliVectors, PrintsLlamaCppIds) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  const auto gguf = fixtures / ("ggml-vocab-" + GetParam() + ".gguf");
  if (!std::filesystem::exists(gguf)) GTEST_SKIP() << gguf << " not present";
  const std::string inp = ReadFileText(gguf.string() + ".inp");
  std::istringstream expected_lines(ReadFileText(gguf.string() + ".out"));
  airlock::testing::TempDir dir("tokenize-cli");

  static const std::string kSeparator = "\n__ggml_vocab_test__\n";
  std::size_t pos = 0, cases = 0, passed = 0;
  std::string expected;
  while (true) {
    std::size_t hit = inp.find(kSeparator, pos);
    if (hit == std::string::npos) break;
    const std::string text = inp.substr(pos, hit - pos);
    pos = hit + kSeparator.size();
    ASSERT_TRUE(static_cast<bool>(std::getline(expected_lines, expected)));
    const auto text_file = dir.path() / ("case" + std::to_string(cases++) + ".txt");
    std::ofstream(text_file, std::ios::binary) << text;
    CliRun run =
        RunAirlock("tokenize " + Quote(gguf) + " -f " + Quote(text_file) + " --ids --no-bos");
    EXPECT_EQ(run.exit_code, 0);
    if (run.out == AsIdList(expected)) {
      ++passed;
    } else {
      ADD_FAILURE() << "case '" << text << "': expected " << AsIdList(expected) << "got "
                    << run.out;
    }
  }
  std::printf("[ cli      ] %s %zu/%zu\n", GetParam().c_str(), passed, cases);
  EXPECT_GE(cases, 40u);
  EXPECT_EQ(passed, cases);
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, TokenizeCliVectors,
                         ::testing::Values("llama-spm", "deepseek-coder"), [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) {
                             if (c == '-') c = '_';
                           }
                           return s;
                         });

TEST(TokenizeCli, BosFollowsTheVocabularyAndSpecialsNeedTheFlag) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  const auto spm = fixtures / "ggml-vocab-llama-spm.gguf";
  const auto qwen = fixtures / "ggml-vocab-qwen2.gguf";
  if (!std::filesystem::exists(spm) || !std::filesystem::exists(qwen)) GTEST_SKIP();

  // llama-spm asks for BOS (id 1); qwen2 does not.
  EXPECT_EQ(RunAirlock("tokenize " + Quote(spm) + " Hello --ids").out, "[1, 15043]\n");
  EXPECT_EQ(RunAirlock("tokenize " + Quote(spm) + " Hello --ids --no-bos").out, "[15043]\n");
  EXPECT_EQ(RunAirlock("tokenize " + Quote(spm) + " '' --ids < /dev/null").out, "[1]\n");

  CliRun plain = RunAirlock("tokenize " + Quote(qwen) + " '<|im_start|>' --json");
  ASSERT_EQ(plain.exit_code, 0);
  auto j = nlohmann::json::parse(plain.out);
  EXPECT_FALSE(j["add_bos"].get<bool>());
  EXPECT_GT(j["n_tokens"].get<int>(), 1);
  for (const auto& t : j["tokens"]) EXPECT_FALSE(t["special"].get<bool>());

  CliRun parsed = RunAirlock("tokenize " + Quote(qwen) + " '<|im_start|>' --parse-special --json");
  ASSERT_EQ(parsed.exit_code, 0);
  auto p = nlohmann::json::parse(parsed.out);
  ASSERT_EQ(p["n_tokens"].get<int>(), 1);
  EXPECT_EQ(p["tokens"][0]["id"].get<int>(), 151644);
  EXPECT_TRUE(p["tokens"][0]["special"].get<bool>());

  CliRun pieces = RunAirlock("tokenize " + Quote(qwen) + " 'Hello world' --pieces");
  EXPECT_EQ(pieces.out, "'Hello'\n' world'\n");
}

// An endless pipe on standard input is refused at the 256 MiB cap with a clear error instead of
// being read until memory runs out.
TEST(TokenizeCli, EndlessStdinIsRefusedAtTheCap) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  const auto spm = fixtures / "ggml-vocab-llama-spm.gguf";
  if (!std::filesystem::exists(spm)) GTEST_SKIP() << spm << " not present";
  auto [status, out] = airlock::testing::RunShell("yes | " + std::string(AIRLOCK_EXE) +
                                                  " tokenize " + Quote(spm) + " --ids");
  EXPECT_EQ(status, 3) << out;
  EXPECT_NE(out.find("standard input is larger than the limit of 268435456 bytes"),
            std::string::npos)
      << out;
}

TEST(TokenizeCli, TextFromAPipeIsTokenized) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  const auto spm = fixtures / "ggml-vocab-llama-spm.gguf";
  if (!std::filesystem::exists(spm)) GTEST_SKIP() << spm << " not present";
  EXPECT_EQ(RunAirlock("tokenize " + Quote(spm) + " --ids < /dev/null").out, "[1]\n");
  auto [status, out] =
      airlock::testing::RunShellStdout("printf Hello | " + std::string(AIRLOCK_EXE) + " tokenize " +
                                       Quote(spm) + " --ids -f /dev/stdin");
  EXPECT_EQ(status, 0);
  EXPECT_EQ(out, "[1, 15043]\n");
}

TEST(TokenizeCli, UnreadableModelIsAToolError) {
  airlock::testing::TempDir dir("tokenize-bad");
  const auto bad = dir.path() / "bad.gguf";
  std::ofstream(bad, std::ios::binary) << "GGUF\x03garbage";
  EXPECT_EQ(RunAirlock("tokenize " + Quote(bad) + " hi").exit_code, 3);
  EXPECT_EQ(RunAirlock("tokenize " + Quote(dir.path() / "missing.gguf") + " hi").exit_code, 3);
}

}  // namespace
