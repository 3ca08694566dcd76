// `airlock run` end to end on a real trained model (stories260K, a TinyStories Llama with a
// SentencePiece vocabulary): greedy decoding is deterministic, so the continuation is checked.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>

#include "test_util.h"

namespace {

std::string RunAndCapture(const std::string& command, int* status) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  *status = pclose(p);
  return out;
}

TEST(RunCommand, GreedyStoryFromStories260K) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  const auto model = fixtures / "stories260K.gguf";
  int status = -1;
  const std::string out =
      RunAndCapture(std::string(AIRLOCK_EXE) + " run '" + model.string() +
                        "' -p 'Once upon a time' -n 30 --temp 0 --threads 2 2>/dev/null",
                    &status);
  EXPECT_EQ(status, 0);
  // What this model writes after "Once upon a time" under greedy decoding.
  EXPECT_NE(out.find("there was a little girl named Lily"), std::string::npos) << out;
}

TEST(RunCommand, RefusesANonModelFile) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "gguf-models");
  int status = -1;
  const std::string out = RunAndCapture(
      std::string(AIRLOCK_EXE) + " run '" + (fixtures / "MANIFEST.md").string() + "' -p hi 2>&1",
      &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("structural checks"), std::string::npos) << out;
}

}  // namespace
