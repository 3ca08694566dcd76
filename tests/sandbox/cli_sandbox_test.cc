// Every command that only reads models, run through the real binary on a real model under its
// sandbox, with the test hook ($AIRLOCK_TEST_SANDBOX_ATTEMPT) making the sandboxed process attempt
// what a parser exploit would: the attempts must fail with EPERM/EACCES while the command still
// does its legitimate work (threads, mmap, CPU feature detection, stdout/stderr, its outputs).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "sandbox/sandbox.h"
#include "test_util.h"

namespace {

using airlock::testing::ReadFileText;

namespace fs = std::filesystem;

struct CliRun {
  int code = -1;
  std::string out;
  std::string err;
};

using airlock::testing::Quote;

class SandboxedCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = airlock::testing::FixturesDir();
    if (!root || !fs::exists(*root / "gguf-models" / "stories260K.gguf"))
      GTEST_SKIP() << "third-party fixtures not found (../shared/fixtures/gguf-models); set "
                      "AIRLOCK_FIXTURES to run these tests";
    model_ = *root / "gguf-models" / "stories260K.gguf";
    fs::create_directories(dir_.path() / "reports");
    fs::create_directories(dir_.path() / "elsewhere");
    std::ofstream(dir_.path() / "secret.txt") << "not an input\n";
    landlock_ = airlock::sandbox::LandlockAbi() > 0;
  }

  CliRun Airlock(const std::string& args, const std::string& attempts,
                 const std::string& stdin_text = "") {
    std::ofstream(dir_.path() / "stdin.txt") << stdin_text;
    std::string cmd;
    if (!attempts.empty()) cmd += "AIRLOCK_TEST_SANDBOX_ATTEMPT='" + attempts + "' ";
    cmd += std::string(AIRLOCK_EXE) + " " + args + " <" + Quote(dir_.path() / "stdin.txt") + " >" +
           Quote(dir_.path() / "out.txt") + " 2>" + Quote(dir_.path() / "err.txt");
    CliRun r;
    int status = std::system(cmd.c_str());
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = ReadFileText(dir_.path() / "out.txt");
    r.err = ReadFileText(dir_.path() / "err.txt");
    return r;
  }

  // What a hostile model would try once it runs code in the command.
  std::string Attacks() const {
    return "socket,fork,thread,read:" + (dir_.path() / "secret.txt").string() +
           ",write:" + (dir_.path() / "elsewhere" / "stray.txt").string() + ",exec";
  }

  void ExpectAttacksRefused(const CliRun& r) {
    auto has = [&](const std::string& line) {
      EXPECT_NE(r.err.find("airlock sandbox test: " + line + "\n"), std::string::npos)
          << "missing '" << line << "' in:\n"
          << r.err;
    };
    has("socket: errno=EPERM");
    has("fork: errno=EPERM");
    has("thread: ok");
    has("exec: errno=EPERM");
    if (landlock_) {
      has("read:" + (dir_.path() / "secret.txt").string() + ": errno=EACCES");
      has("write:" + (dir_.path() / "elsewhere" / "stray.txt").string() + ": errno=EACCES");
      EXPECT_FALSE(fs::exists(dir_.path() / "elsewhere" / "stray.txt"));
    } else {
      EXPECT_NE(r.err.find("warning: sandbox: this kernel has no Landlock"), std::string::npos);
    }
  }

  airlock::testing::TempDir dir_{"cli-sandbox"};
  fs::path model_;
  bool landlock_ = false;
};

TEST_F(SandboxedCommands, ScanWritesItsReportButNothingElse) {
  const fs::path report = dir_.path() / "reports" / "scan.sarif";
  CliRun r = Airlock("scan " + Quote(model_) + " --format sarif -o " + Quote(report), Attacks());
  ExpectAttacksRefused(r);
  EXPECT_NE(r.code, 3) << r.err;
  EXPECT_NE(ReadFileText(report).find("\"version\": \"2.1.0\""), std::string::npos) << r.err;
}

// Attack: the write grant was the output's folder, so code running in `scan -o ~/report.sarif`
// could create or replace ~/.bashrc beside it. Now the confined process writes only into a
// private staging folder; a write next to the output (a new file or the existing one beside it)
// is refused, the report still lands in place, and no staging folder is left behind.
TEST_F(SandboxedCommands, ScanCannotWriteBesideItsReport) {
  if (!landlock_) GTEST_SKIP() << "this kernel has no Landlock";
  const fs::path reports = dir_.path() / "reports";
  const fs::path report = reports / "scan.sarif";
  std::ofstream(reports / ".bashrc") << "original\n";
  CliRun r = Airlock(
      "scan " + Quote(model_) + " --format sarif -o " + Quote(report),
      "write:" + (reports / "beside.txt").string() + ",write:" + (reports / ".bashrc").string());
  EXPECT_NE(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("airlock sandbox test: write:" + (reports / "beside.txt").string() +
                       ": errno=EACCES\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("airlock sandbox test: write:" + (reports / ".bashrc").string() +
                       ": errno=EACCES\n"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(reports / "beside.txt"));
  EXPECT_EQ(ReadFileText(reports / ".bashrc"), "original\n");
  EXPECT_NE(ReadFileText(report).find("\"version\": \"2.1.0\""), std::string::npos) << r.err;
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(reports)) left.push_back(e.path().filename());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{".bashrc", "scan.sarif"}));
}

// Attack (red team): `-o` is a link to this process's stdout (`/dev/stdout`, `/proc/self/fd/1`)
// while stdout is redirected to a regular file. The report goes to stdout; the link is never
// replaced by a file (as root, that replaced the system's /dev/stdout).
TEST_F(SandboxedCommands, OutputLinkedToStdoutGoesToStdoutAndTheLinkStays) {
  const fs::path link = dir_.path() / "mystdout";
  fs::create_symlink("/proc/self/fd/1", link);
  for (const char* flag : {"", "--no-sandbox "}) {
    CliRun r = Airlock(
        std::string("scan ") + flag + Quote(model_) + " --format json -o " + Quote(link), "");
    EXPECT_NE(r.code, 3) << r.err;
    EXPECT_TRUE(fs::is_symlink(link)) << flag << "the link was replaced";
    EXPECT_NE(r.out.find("\"files\""), std::string::npos) << flag << r.out << r.err;
  }
}

// Attack (red team): as root, in a folder someone else controls, the output (or the attestation
// beside a model) is planted as a link to a disk or another device. Refused, nothing written.
TEST_F(SandboxedCommands, OutputLinkedToADeviceIsRefused) {
  const fs::path link = dir_.path() / "report.json";
  fs::create_symlink("/dev/zero", link);  // a character device that is no terminal
  for (const char* flag : {"", "--no-sandbox "}) {
    CliRun r = Airlock(
        std::string("scan ") + flag + Quote(model_) + " --format json -o " + Quote(link), "");
    EXPECT_EQ(r.code, 3) << flag << r.err;
    EXPECT_NE(r.err.find("refusing to write"), std::string::npos) << flag << r.err;
    EXPECT_TRUE(fs::is_symlink(link));
  }
}

TEST_F(SandboxedCommands, ScanGivesTheSameReportAsUnconfinedOnTheFixtures) {
  // Live exploits and benign models alike: the sandbox must not turn a verdict into a read error.
  const fs::path root = *airlock::testing::FixturesDir();
  std::string paths;
  for (const char* sub : {"picklescan", "modelscan", "modelaudit", "gguf-models", "llama-vocab"}) {
    if (fs::exists(root / sub)) paths += " " + Quote(root / sub);
  }
  CliRun confined = Airlock("scan" + paths + " --format json", "");
  CliRun unconfined = Airlock("scan" + paths + " --format json --no-sandbox", "");
  EXPECT_NE(confined.code, 3) << confined.err;
  EXPECT_EQ(confined.code, unconfined.code);
  EXPECT_EQ(confined.out, unconfined.out);
  if (airlock::sandbox::LandlockAbi() >= 4)  // a full sandbox: nothing to warn about
    EXPECT_EQ(confined.err.find("sandbox"), std::string::npos) << confined.err;
}

TEST_F(SandboxedCommands, InspectStillSummarizes) {
  CliRun r = Airlock("inspect " + Quote(model_) + " --json", Attacks());
  ExpectAttacksRefused(r);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"llama\""), std::string::npos) << r.out;
}

TEST_F(SandboxedCommands, TokenizeReadsItsTextFile) {
  std::ofstream(dir_.path() / "prompt.txt") << "Once upon a time";
  CliRun r =
      Airlock("tokenize " + Quote(model_) + " -f " + Quote(dir_.path() / "prompt.txt") + " --ids",
              Attacks());
  ExpectAttacksRefused(r);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("[1, ", 0), 0u) << r.out;  // BOS, then the text's ids
}

TEST_F(SandboxedCommands, RunGeneratesWithWorkerThreads) {
  CliRun r = Airlock("run " + Quote(model_) + " -p 'Once upon a time' -n 12 --temp 0 --threads 2",
                     Attacks());
  ExpectAttacksRefused(r);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_NE(r.err.find("generated"), std::string::npos) << r.err;
}

TEST_F(SandboxedCommands, ChatReadsStdinAndAnswers) {
  CliRun r =
      Airlock("chat " + Quote(model_) + " -n 6 --temp 0 --threads 2", Attacks(), "Hello\n/exit\n");
  ExpectAttacksRefused(r);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("generated"), std::string::npos) << r.err;
}

TEST_F(SandboxedCommands, PerplexitySavesLogitsToItsOutput) {
  std::ofstream text(dir_.path() / "text.txt");
  for (int i = 0; i < 40; ++i) text << "Once upon a time there was a little girl named Lily. ";
  text.close();
  const fs::path logits = dir_.path() / "reports" / "logits.bin";
  CliRun r = Airlock("perplexity " + Quote(model_) + " -f " + Quote(dir_.path() / "text.txt") +
                         " --ctx 32 --chunks 2 --threads 2 --save-logits " + Quote(logits),
                     Attacks());
  ExpectAttacksRefused(r);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_GT(fs::file_size(logits), 0u);
}

TEST_F(SandboxedCommands, VerifyChecksASignedModel) {
  fs::create_directories(dir_.path() / "model");
  fs::copy_file(model_, dir_.path() / "model" / "model.gguf");
  const fs::path model = dir_.path() / "model";
  ASSERT_EQ(Airlock("keygen --out " + Quote(dir_.path() / "k"), "").code, 0);
  ASSERT_EQ(Airlock("sign " + Quote(model) + " --key " + Quote(dir_.path() / "k.key"), "").code, 0);
  CliRun r =
      Airlock("verify " + Quote(model) + " --key " + Quote(dir_.path() / "k.pub"), Attacks());
  ExpectAttacksRefused(r);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
}

TEST_F(SandboxedCommands, NoSandboxOptsOutWithAWarning) {
  CliRun r = Airlock("inspect " + Quote(model_) + " --no-sandbox", "socket");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("airlock inspect: warning: --no-sandbox"), std::string::npos) << r.err;
  // The hook runs only inside a sandbox.
  EXPECT_EQ(r.err.find("airlock sandbox test"), std::string::npos) << r.err;
}

TEST_F(SandboxedCommands, HelpNamesTheOptOut) {
  for (const char* command :
       {"scan", "inspect", "tokenize", "run", "chat", "perplexity", "verify"}) {
    CliRun r = Airlock(std::string(command) + " --help", "");
    EXPECT_NE(r.out.find("--no-sandbox"), std::string::npos) << command;
  }
}

}  // namespace
