// `airlock keygen` -> `airlock sign` -> `airlock verify` through the real binary, with the exit
// codes documented in --help (0 verified, 1 verification failed, 3 usage/tool error).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "sign_test_util.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using airlock::sign::testing::ReadText;
using airlock::sign::testing::WriteText;

struct CliRun {
  int code = -1;
  std::string out;
};

CliRun Airlock(const std::string& args) {
  std::string cmd = std::string(AIRLOCK_EXE) + " " + args + " 2>&1";
  CliRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(SignCliTest, KeygenSignVerifyRoundTrip) {
  airlock::testing::TempDir tmp("cli");
  fs::path dir = tmp.path();
  fs::path model = dir / "tiny-model";
  WriteText(model / "config.json", "{\"arch\": \"llama\"}");
  WriteText(model / "weights" / "model.safetensors", std::string(5000, 'w'));
  WriteText(model / ".git" / "HEAD", "ref: refs/heads/main");

  CliRun keygen = Airlock("keygen --curve p384 --out " + (dir / "k").string());
  ASSERT_EQ(keygen.code, 0) << keygen.out;
  EXPECT_NE(ReadText(dir / "k.key").find("BEGIN PRIVATE KEY"), std::string::npos);
  EXPECT_NE(ReadText(dir / "k.pub").find("BEGIN PUBLIC KEY"), std::string::npos);
  EXPECT_EQ(fs::status(dir / "k.key").permissions() & fs::perms::group_read, fs::perms::none);
  EXPECT_EQ(Airlock("keygen --out " + (dir / "k").string()).code, 3);  // no silent overwrite

  CliRun sign = Airlock("sign " + model.string() + " --key " + (dir / "k.key").string());
  ASSERT_EQ(sign.code, 0) << sign.out;
  EXPECT_TRUE(fs::exists(model / "model.sig"));
  EXPECT_NE(sign.out.find("2 files"), std::string::npos) << sign.out;

  CliRun ok = Airlock("verify " + model.string() + " --key " + (dir / "k.pub").string());
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("OK: verified 2 files"), std::string::npos) << ok.out;

  CliRun json =
      Airlock("verify " + model.string() + " --format json --key " + (dir / "k.pub").string());
  EXPECT_EQ(json.code, 0);
  EXPECT_NE(json.out.find("\"verified\": true"), std::string::npos) << json.out;

  WriteText(model / "config.json", "{\"arch\": \"evil\"}");
  CliRun bad = Airlock("verify " + model.string() + " --key " + (dir / "k.pub").string());
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("modified: config.json"), std::string::npos) << bad.out;

  // Usage and tool errors exit 3.
  EXPECT_EQ(Airlock("verify " + model.string()).code, 3);
  EXPECT_EQ(Airlock("verify " + model.string() + " --key " + (dir / "nope.pub").string()).code, 3);
  EXPECT_EQ(
      Airlock("verify " + (dir / "no-model").string() + " --key " + (dir / "k.pub").string()).code,
      3);
  EXPECT_EQ(Airlock("sign " + model.string() + " --key " + (dir / "k.pub").string()).code, 3);
  EXPECT_EQ(Airlock("verify --bogus-flag").code, 3);
}

TEST(SignCliTest, SingleFileModelUsesSiblingSignature) {
  airlock::testing::TempDir tmp("cli1");
  fs::path dir = tmp.path();
  WriteText(dir / "model.gguf", "GGUF....");
  ASSERT_EQ(Airlock("keygen --out " + (dir / "k").string()).code, 0);
  CliRun sign =
      Airlock("sign " + (dir / "model.gguf").string() + " --key " + (dir / "k.key").string());
  ASSERT_EQ(sign.code, 0) << sign.out;
  EXPECT_TRUE(fs::exists(dir / "model.gguf.sig"));
  EXPECT_EQ(
      Airlock("verify " + (dir / "model.gguf").string() + " --key " + (dir / "k.pub").string())
          .code,
      0);
}

TEST(SignCliTest, ScanAttestationVerifiesUntilTheModelChanges) {
  airlock::testing::TempDir tmp("cliatt");
  fs::path dir = tmp.path();
  fs::path model = dir / "m";
  WriteText(model / "config.json", "{\"a\": 1}");
  ASSERT_EQ(Airlock("keygen --out " + (dir / "k").string()).code, 0);
  CliRun scan = Airlock("scan " + model.string() + " --attest " + (dir / "k.key").string());
  ASSERT_NE(scan.code, 3) << scan.out;
  fs::path att = dir / "m.scan-attestation.json";
  ASSERT_TRUE(fs::exists(att)) << scan.out;
  std::string verify = "verify " + model.string() + " --key " + (dir / "k.pub").string() +
                       " --attestation " + att.string();
  CliRun ok = Airlock(verify + " --format json");
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("https://airlock.dev/attestations/scan/v1"), std::string::npos);
  EXPECT_NE(ok.out.find("\"verdict\""), std::string::npos);
  WriteText(model / "extra.bin", "x");
  CliRun changed = Airlock(verify);
  EXPECT_EQ(changed.code, 1) << changed.out;
  EXPECT_NE(changed.out.find("another model state"), std::string::npos) << changed.out;
}

TEST(SignCliTest, HelpDocumentsExitCodes) {
  CliRun help = Airlock("verify --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("Exit codes: 0 verified; 1 verification failed"), std::string::npos);
  EXPECT_NE(Airlock("sign --help").out.find("Example"), std::string::npos);
  EXPECT_NE(Airlock("keygen --help").out.find("Example"), std::string::npos);
}

TEST(SignCliTest, VerifiesTheModelSigningVectorLikeItsTestScript) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "model-signing");
  fs::path tests = fixtures / "scripts/tests";
  // scripts/tests/test-verify-v1.1.0-elliptic-key.sh, with Airlock's flag names.
  std::string cmd = "cd " + tests.string() +
                    " && " AIRLOCK_EXE
                    " verify ./v1.1.0-elliptic-key --signature "
                    "./v1.1.0-elliptic-key/model.sig --public-key "
                    "keys/certificate/signing-key-pub.pem --ignore-paths "
                    "./v1.1.0-elliptic-key/ignore-me";
  int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
