// Privilege separation in `airlock serve` (server/worker_backend.h), checked on the sources: the
// gateway's request path (server/gateway.cc, server/internal/) includes no formats or template
// header, no engine header but the three that work on request and reply text only (sampling
// ranges and choice seeds, the JSON-schema grammar compiled to check a response_format, the
// tool-call reader of replies), and never loads a model, and `serve` loads a model in its own
// process only behind the benchmark flag --in-process-models. Model files are parsed in the worker
// process (server/model_worker.cc, cli/model_worker_command.cc). The run-time counterpart (the
// gateway never maps the model file) is tests/server/serve_worker_test.cc.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using airlock::testing::ReadFileText;

namespace fs = std::filesystem;

const fs::path kSrc = fs::path(AIRLOCK_SOURCE_DIR) / "src";

TEST(PrivilegeSeparation, GatewayRequestPathNeverParsesModels) {
  std::vector<fs::path> files = {kSrc / "server" / "gateway.cc", kSrc / "server" / "gateway.h",
                                 kSrc / "server" / "worker_backend.cc"};
  for (const auto& e : fs::directory_iterator(kSrc / "server" / "internal")) files.push_back(e);
  const std::regex model_code(
      R"(#include\s+"(formats|template)/|#include\s+"engine/(?!(sampler|grammar|tool_calls)\.h")|)"
      R"(LoadEngineBackend|Model::Load|Tokenizer::FromGguf)");
  ASSERT_GT(files.size(), 5u);
  for (const fs::path& f : files) {
    const std::string text = ReadFileText(f);
    ASSERT_FALSE(text.empty()) << f;
    std::smatch m;
    EXPECT_FALSE(std::regex_search(text, m, model_code))
        << f << " (gateway side) uses model-parsing code: " << m.str();
  }
}

TEST(PrivilegeSeparation, ServeLoadsModelsInProcessOnlyForBenchmarks) {
  const std::string serve = ReadFileText(kSrc / "cli" / "serve_command.cc");
  ASSERT_FALSE(serve.empty());
  std::size_t count = 0, at = 0;
  while ((at = serve.find("LoadEngineBackend(", at)) != std::string::npos) {
    ++count;
    // The one call sits in the branch of the benchmark flag.
    const std::size_t branch = serve.rfind("if (a.in_process_models)", at);
    EXPECT_NE(branch, std::string::npos);
    EXPECT_LT(at - branch, 120u) << "LoadEngineBackend outside the --in-process-models branch";
    ++at;
  }
  EXPECT_EQ(count, 1u);
  EXPECT_NE(serve.find("StartWorkerBackend("), std::string::npos);
}

}  // namespace
