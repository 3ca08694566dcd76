// `airlock audit verify` over several replicas (each its own origin and key), run as users run it:
// per-origin reports, a failure in one replica fails the whole run, a published checkpoint whose
// log is missing fails, and no pinned key is a usage error.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "audit/audit_log.h"
#include "test_util.h"

namespace airlock::audit {
namespace {

using airlock::testing::RunAirlock;

using airlock::testing::TempDir;

class Replicas : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int r = 0; r < 2; ++r) {
      std::string name = "gw" + std::to_string(r);
      OpenOptions o;
      o.signing_key_pem_path = P(name + ".pem");
      o.create_signing_key = true;
      o.origin = name + ".test/airlock-audit";
      o.checkpoint_every = 4;
      auto log = AuditLog::Open(P(name + ".db"), o);
      ASSERT_TRUE(log.ok()) << log.error().message();
      for (int i = 0; i < 6 + r; ++i) {
        AuditRecord rec;
        rec.request_id = name + "-" + std::to_string(i);
        ASSERT_TRUE((*log)->Append(rec).ok());
      }
      ASSERT_TRUE((*log)->Checkpoint().ok());
      std::ofstream(P(name + ".checkpoint")) << (*log)->LatestCheckpointNote();
    }
  }
  std::string P(const std::string& name) { return (dir_.path() / name).string(); }
  std::string Both() {
    return "audit verify --log " + P("gw0.db") + " --log " + P("gw1.db") + " --public-key " +
           P("gw0.pem.pub") + " --public-key " + P("gw1.pem.pub") + " --trusted-checkpoint " +
           P("gw0.checkpoint") + " --trusted-checkpoint " + P("gw1.checkpoint");
  }
  TempDir dir_{"replicas"};
};

TEST_F(Replicas, VerifiesEachOriginWithItsOwnKey) {
  auto v = RunAirlock(Both());
  EXPECT_EQ(v.first, 0) << v.second;
  EXPECT_NE(v.second.find("OK gw0.test/airlock-audit"), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("OK gw1.test/airlock-audit"), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("7 records"), std::string::npos) << v.second;
}

TEST_F(Replicas, OneTruncatedReplicaFailsTheRunAndIsNamed) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(P("gw1.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "DELETE FROM records WHERE seq >= 4; DELETE FROM checkpoints WHERE size > 4",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  auto v = RunAirlock(Both());
  EXPECT_EQ(v.first, 1) << v.second;
  EXPECT_NE(v.second.find("OK gw0.test/airlock-audit"), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("FAILED gw1.test/airlock-audit"), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("tail truncation"), std::string::npos) << v.second;
}

TEST_F(Replicas, PublishedCheckpointOfAMissingReplicaFails) {
  auto v = RunAirlock("audit verify --log " + P("gw0.db") + " --public-key " + P("gw0.pem.pub") +
                      " --trusted-checkpoint " + P("gw1.checkpoint"));
  EXPECT_EQ(v.first, 1) << v.second;
  EXPECT_NE(v.second.find("FAILED gw1.test/airlock-audit: trusted checkpoint"), std::string::npos)
      << v.second;
}

TEST_F(Replicas, OneKeyForBothReplicasFailsTheOtherOrigin) {
  // gw1's checkpoints are not signed by gw0's key: pinning only gw0's key fails gw1.
  auto v = RunAirlock("audit verify --log " + P("gw0.db") + " --log " + P("gw1.db") +
                      " --public-key " + P("gw0.pem.pub"));
  EXPECT_EQ(v.first, 1) << v.second;
  EXPECT_NE(v.second.find("FAILED gw1.test/airlock-audit"), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("not signed by the pinned public key"), std::string::npos) << v.second;
}

TEST_F(Replicas, TwoLogsWithOneOriginFail) {
  std::filesystem::copy_file(P("gw0.db"), P("copy.db"));
  auto v = RunAirlock("audit verify --log " + P("gw0.db") + " --log " + P("copy.db") +
                      " --public-key " + P("gw0.pem.pub"));
  EXPECT_EQ(v.first, 1) << v.second;
  EXPECT_NE(v.second.find("have the same origin"), std::string::npos) << v.second;
}

TEST_F(Replicas, NoPinnedKeyIsAUsageError) {
  auto v = RunAirlock("audit verify --log " + P("gw0.db"));
  EXPECT_EQ(v.first, 3) << v.second;
  EXPECT_NE(v.second.find("no pinned public key"), std::string::npos) << v.second;
}

TEST_F(Replicas, CheckpointCommandPrintsTheLatestNote) {
  auto c = RunAirlock("audit checkpoint --log " + P("gw0.db"));
  EXPECT_EQ(c.first, 0) << c.second;
  std::ifstream in(P("gw0.checkpoint"));
  std::string saved((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(c.second, saved);
  EXPECT_EQ(c.second.rfind("gw0.test/airlock-audit\n6\n", 0), 0u) << c.second;
}

TEST(AuditKeygen, WritesBothHalves) {
  TempDir dir("keygen");
  auto key = (dir.path() / "k.pem").string();
  auto r = RunAirlock("audit keygen " + key);
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_TRUE(std::filesystem::exists(key));
  EXPECT_TRUE(std::filesystem::exists(key + ".pub"));
  EXPECT_NE(r.second.find(key + ".pub"), std::string::npos) << r.second;
  EXPECT_EQ(RunAirlock("audit keygen " + key).first, 3);  // never overwrites
}

}  // namespace
}  // namespace airlock::audit
