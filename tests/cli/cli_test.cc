// Runs the real `airlock` binary the way users and CI pipelines do.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "test_util.h"

namespace {

struct Run {
  int exit_code;
  std::string out;
};

Run Airlock(const std::string& args) {
  std::string cmd = std::string(AIRLOCK_EXE) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (std::size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

void WriteFile(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

// A SavedModel with one node of the given op (see tests/scan for the field layout).
std::string SavedModelWithOp(const std::string& op) {
  std::string node = std::string("\x0a\x01n\x12", 4) + static_cast<char>(op.size()) + op;
  std::string graph = std::string("\x0a", 1) + static_cast<char>(node.size()) + node;
  std::string meta = std::string("\x12", 1) + static_cast<char>(graph.size()) + graph;
  return std::string("\x12", 1) + static_cast<char>(meta.size()) + meta;
}

TEST(CliTest, VersionAndHelp) {
  auto v = Airlock("--version");
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("airlock "), std::string::npos);
  auto h = Airlock("scan --help");
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.out.find("Exit codes"), std::string::npos);
}

TEST(CliTest, ScanExitCodesDistinguishCleanFindingsInconclusiveAndUsage) {
  airlock::testing::TempDir dir;
  WriteFile(dir.path() / "good.pb", SavedModelWithOp("MatMul"));
  WriteFile(dir.path() / "bad.pb", SavedModelWithOp("PyFunc"));
  WriteFile(dir.path() / "blob.bin2", std::string("\x00\x01\x02\x03", 4));
  EXPECT_EQ(Airlock("scan " + (dir.path() / "good.pb").string()).exit_code, 0);
  auto bad = Airlock("scan " + (dir.path() / "bad.pb").string());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("tensorflow.dangerous-op"), std::string::npos);
  EXPECT_EQ(Airlock("scan " + (dir.path() / "blob.bin2").string()).exit_code, 2);
  EXPECT_EQ(Airlock("scan " + (dir.path() / "missing").string()).exit_code, 3);
  EXPECT_EQ(Airlock("scan --fail-on nonsense " + (dir.path() / "good.pb").string()).exit_code, 3);
}

TEST(CliTest, JsonAndSarifOutputParse) {
  airlock::testing::TempDir dir;
  WriteFile(dir.path() / "bad.pb", SavedModelWithOp("PyFunc"));
  auto json = Airlock("scan --format json " + (dir.path() / "bad.pb").string());
  auto doc = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << json.out;
  EXPECT_EQ(doc["verdict"], "malicious");
  auto out = dir.path() / "scan.sarif";
  EXPECT_EQ(
      Airlock("scan --format sarif -o " + out.string() + " " + (dir.path() / "bad.pb").string())
          .exit_code,
      1);
  std::ifstream in(out);
  auto sarif = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(sarif.is_discarded());
  EXPECT_EQ(sarif["version"], "2.1.0");
}

}  // namespace

namespace {

TEST(CliTest, RunAndServeRefuseModelsWhoseSignatureDoesNotVerify) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  airlock::testing::TempDir dir;
  auto model = dir.path() / "stories260K.gguf";
  std::filesystem::copy_file(models / "stories260K.gguf", model);
  ASSERT_EQ(Airlock("keygen --out " + (dir.path() / "pub").string()).exit_code, 0);
  ASSERT_EQ(Airlock("keygen --out " + (dir.path() / "other").string()).exit_code, 0);
  const std::string run = "run " + model.string() + " -p Once -n 3 --temp 0 --require-signature ";
  auto unsigned_run = Airlock(run + (dir.path() / "pub.pub").string());
  EXPECT_NE(unsigned_run.exit_code, 0);
  EXPECT_NE(unsigned_run.out.find("no signature"), std::string::npos) << unsigned_run.out;
  ASSERT_EQ(
      Airlock("sign " + model.string() + " --key " + (dir.path() / "pub.key").string()).exit_code,
      0);
  auto ok = Airlock(run + (dir.path() / "pub.pub").string());
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  auto wrong = Airlock(run + (dir.path() / "other.pub").string());
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_NE(wrong.out.find("wrong key"), std::string::npos) << wrong.out;
  auto serve = Airlock("serve " + model.string() + " --port 0 --require-signature " +
                       (dir.path() / "other.pub").string());
  EXPECT_EQ(serve.exit_code, 1) << serve.out;
  // Tampering after signing is caught too.
  std::ofstream(model, std::ios::app) << "x";
  EXPECT_NE(Airlock(run + (dir.path() / "pub.pub").string()).exit_code, 0);
}

}  // namespace
