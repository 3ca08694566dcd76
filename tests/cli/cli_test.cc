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
  auto [code, out] = airlock::testing::RunAirlock(args);
  return {code, out};
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

// Issue #19: the policy file can require signatures, per local model or server-wide; the model's
// own key wins over the server-wide default.
TEST(CliTest, ServeRequiresTheSignaturesThePolicyNames) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  airlock::testing::TempDir dir;
  auto model = dir.path() / "stories260K.gguf";
  std::filesystem::copy_file(models / "stories260K.gguf", model);
  ASSERT_EQ(Airlock("keygen --out " + (dir.path() / "pub").string()).exit_code, 0);
  ASSERT_EQ(Airlock("keygen --out " + (dir.path() / "other").string()).exit_code, 0);
  ASSERT_EQ(
      Airlock("sign " + model.string() + " --key " + (dir.path() / "pub.key").string()).exit_code,
      0);
  auto serve_with = [&](const std::string& policy) {
    WriteFile(dir.path() / "policy.toml", policy);
    // Non-loopback without API keys is refused after the models load: the run ends either way.
    return Airlock("serve --config " + (dir.path() / "policy.toml").string() +
                   " --host 0.0.0.0 --port 0");
  };
  const std::string local = "[[local_models]]\nname = 'stories'\npath = '" + model.string() + "'\n";
  const std::string other = (dir.path() / "other.pub").string();
  const std::string pub = (dir.path() / "pub.pub").string();

  auto per_model = serve_with(local + "require_signature = '" + other + "'\n");
  EXPECT_EQ(per_model.exit_code, 1);
  EXPECT_NE(per_model.out.find("wrong key"), std::string::npos) << per_model.out;

  auto server_wide = serve_with(local + "[server]\nrequire_signature = '" + other + "'\n");
  EXPECT_EQ(server_wide.exit_code, 1);
  EXPECT_NE(server_wide.out.find("wrong key"), std::string::npos) << server_wide.out;

  auto own_key_wins = serve_with(local + "require_signature = '" + pub + "'\n[server]\n" +
                                 "require_signature = '" + other + "'\n");
  EXPECT_EQ(own_key_wins.out.find("refusing to load"), std::string::npos) << own_key_wins.out;
  EXPECT_NE(own_key_wins.out.find("loaded"), std::string::npos) << own_key_wins.out;

  // Unsigned (tampered) model under a server-wide requirement: refused.
  std::ofstream(model, std::ios::app) << "x";
  auto tampered = serve_with(local + "[server]\nrequire_signature = '" + pub + "'\n");
  EXPECT_EQ(tampered.exit_code, 1);
  EXPECT_NE(tampered.out.find("refusing to load"), std::string::npos) << tampered.out;
}

TEST(CliTest, RunHelpListsEveryArchitecture) {
  auto help = Airlock("run --help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* arch : {"llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "deepseek2"})
    EXPECT_TRUE(help.out.find(" " + std::string(arch) + ",") != std::string::npos ||
                help.out.find(" " + std::string(arch) + ".") != std::string::npos)
        << arch << help.out;
}

TEST(CliTest, RunSaysWhenTheModelHasNoChatTemplate) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  const std::string model = (models / "stories260K.gguf").string();  // has no chat template
  auto run = Airlock("run " + model + " -p Once -n 2 --temp 0 -t 1");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("notice: the model has no chat template"), std::string::npos) << run.out;
  auto raw = Airlock("run " + model + " -p Once -n 2 --temp 0 -t 1 --no-template");
  EXPECT_EQ(raw.out.find("notice:"), std::string::npos) << raw.out;
}

TEST(CliTest, PerplexityTakesTheShortThreadsFlag) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  airlock::testing::TempDir dir;
  std::string text;
  for (int i = 0; i < 20; ++i) text += "Once upon a time there was a little girl named Lily. ";
  WriteFile(dir.path() / "text.txt", text);
  auto r = Airlock("perplexity " + (models / "stories260K.gguf").string() + " -f " +
                   (dir.path() / "text.txt").string() + " -t 1 --ctx 64 --chunks 1");
  EXPECT_EQ(r.exit_code, 0) << r.out;
}

TEST(CliTest, TokenizeReadsAPipeThroughDevStdin) {
  AIRLOCK_FIXTURES_OR_SKIP(models, "gguf-models");
  const std::string model = (models / "stories260K.gguf").string();
  auto direct = Airlock("tokenize " + model + " 'Once upon a time' --ids");
  ASSERT_EQ(direct.exit_code, 0) << direct.out;
  std::string cmd = "printf 'Once upon a time' | " + std::string(AIRLOCK_EXE) + " tokenize " +
                    model + " -f /dev/stdin --ids";
  auto [status, out] = airlock::testing::RunShell(cmd);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, direct.out);
}

}  // namespace
