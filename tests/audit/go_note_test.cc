// Cross-implementation check: Go's golang.org/x/mod/sumdb/note (Debian packages golang-go and
// golang-golang-x-mod-dev, installed by `scripts/setup.sh --with-go`) verifies a checkpoint of a
// real Airlock log with the verifier key derived from the .pub file, and rejects a changed one.
// Skips when Go is absent; `make check-note-go` installs it and fails on a skip.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "audit/audit_log.h"
#include "test_util.h"

namespace airlock::audit {
namespace {

using airlock::testing::RunShell;

using airlock::testing::TempDir;

constexpr const char* kGoNotePackage = "/usr/share/gocode/src/golang.org/x/mod/sumdb/note";

TEST(GoNote, SumdbNoteVerifiesAnAirlockCheckpoint) {
  if (RunShell("go version").first != 0 || !std::filesystem::is_directory(kGoNotePackage))
    GTEST_SKIP() << "Go or golang.org/x/mod not installed (scripts/setup.sh --with-go)";
  TempDir dir("go-note");
  const std::string key = (dir.path() / "k.pem").string();
  {
    OpenOptions o;
    o.signing_key_pem_path = key;
    o.create_signing_key = true;
    o.origin = "go.test/airlock-audit";
    auto log = AuditLog::Open((dir.path() / "a.db").string(), o);
    ASSERT_TRUE(log.ok()) << log.error().message();
    for (int i = 0; i < 11; ++i) {
      AuditRecord r;
      r.request_id = "r" + std::to_string(i);
      ASSERT_TRUE((*log)->Append(r).ok());
    }
    ASSERT_TRUE((*log)->Checkpoint().ok());
    std::ofstream(dir.path() / "cp.note") << (*log)->LatestCheckpointNote();
  }
  // The verifier key comes from the public half only, as a user outside the machine derives it.
  auto verifier = LoadNoteVerifier(key + ".pub");
  ASSERT_TRUE(verifier.ok());
  verifier->name = "go.test/airlock-audit";
  const std::string go = "cd " + dir.path().string() +
                         " && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE=" +
                         (dir.path() / "gocache").string() +
                         " go run " AIRLOCK_SOURCE_DIR "/scripts/note-check/main.go '" +
                         verifier->VerifierKey() + "' ";
  auto ok = RunShell(go + "cp.note");
  EXPECT_EQ(ok.first, 0) << ok.second;
  EXPECT_NE(ok.second.find("verified by go.test/airlock-audit: origin=go.test/airlock-audit "
                           "size=11 root="),
            std::string::npos)
      << ok.second;
  // One changed byte in the body (the size) and Go refuses it.
  std::ifstream in(dir.path() / "cp.note");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("\n11\n"), 4, "\n12\n");
  std::ofstream(dir.path() / "bad.note") << text;
  auto bad = RunShell(go + "bad.note");
  EXPECT_EQ(bad.first, 1) << bad.second;
  EXPECT_NE(bad.second.find("does not verify"), std::string::npos) << bad.second;
}

}  // namespace
}  // namespace airlock::audit
