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

struct CliRun {
  int exit_code;
  std::string out;
};

CliRun RunAirlock(const std::string& args) {
  std::string command = std::string(AIRLOCK_EXE) + " " + args + " 2>/dev/null";
  CliRun run{-1, ""};
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) run.out.append(buf, n);
  int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Quote(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

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
  const std::string inp = ReadAll(gguf.string() + ".inp");
  std::istringstream expected_lines(ReadAll(gguf.string() + ".out"));
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
  std::string out;
  FILE* pipe = ::popen(
      ("yes | " + std::string(AIRLOCK_EXE) + " tokenize " + Quote(spm) + " --ids 2>&1").c_str(),
      "r");
  ASSERT_NE(pipe, nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 3) << out;
  EXPECT_NE(out.find("standard input is larger than the limit of 268435456 bytes"),
            std::string::npos)
      << out;
}

TEST(TokenizeCli, TextFromAPipeIsTokenized) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "llama-vocab");
  const auto spm = fixtures / "ggml-vocab-llama-spm.gguf";
  if (!std::filesystem::exists(spm)) GTEST_SKIP() << spm << " not present";
  EXPECT_EQ(RunAirlock("tokenize " + Quote(spm) + " --ids < /dev/null").out, "[1]\n");
  CliRun piped{-1, ""};
  FILE* pipe = ::popen(("printf Hello | " + std::string(AIRLOCK_EXE) + " tokenize " + Quote(spm) +
                        " --ids -f /dev/stdin")
                           .c_str(),
                       "r");
  ASSERT_NE(pipe, nullptr);
  char buf[256];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) piped.out.append(buf, n);
  EXPECT_EQ(::pclose(pipe), 0);
  EXPECT_EQ(piped.out, "[1, 15043]\n");
}

TEST(TokenizeCli, UnreadableModelIsAToolError) {
  airlock::testing::TempDir dir("tokenize-bad");
  const auto bad = dir.path() / "bad.gguf";
  std::ofstream(bad, std::ios::binary) << "GGUF\x03garbage";
  EXPECT_EQ(RunAirlock("tokenize " + Quote(bad) + " hi").exit_code, 3);
  EXPECT_EQ(RunAirlock("tokenize " + Quote(dir.path() / "missing.gguf") + " hi").exit_code, 3);
}

}  // namespace
