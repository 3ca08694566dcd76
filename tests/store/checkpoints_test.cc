// Audit at scale: each replica keeps its own Merkle log and publishes every checkpoint it signs
// to the shared PostgreSQL store (table airlock_audit_checkpoints, append-only), off the request
// path. `airlock audit verify --config POLICY` checks the replicas' logs against every published
// checkpoint: a replica whose log was truncated (rolled back) or is missing fails by name, and a
// forged checkpoint row fails. A PostgreSQL outage never stops auditing: checkpoints signed
// meanwhile reach the store once it is back, and /ready says 503 while it is down (/health 200).
// Real `airlock serve` processes and a real PostgreSQL (replicas.h); every wait is bounded, no
// test asserts a duration.
#include <sqlite3.h>

#include "replicas.h"

namespace {

using airlock::testing::Quote;
using airlock::testing::ReplicasTest;
using airlock::testing::RunShell;

class CheckpointsTest : public ReplicasTest {
 protected:
  static std::string Origin(int i) { return "gw" + std::to_string(i) + ".test/airlock-audit"; }
  std::string AuditLogOf(int i) const { return P("gw" + std::to_string(i) + ".db"); }

  // Starts `n` replicas on a fresh database, sends each two answered requests, and stops them
  // (SIGTERM: the last checkpoint is published at exit).
  void ServeAndStop(airlock::testing::PostgresServer& pg, const std::string& name, int n) {
    std::string why;
    std::string db = pg.CreateDatabase(name, &why);
    ASSERT_FALSE(db.empty()) << why;
    StartReplicas(pg, db, n);
    ASSERT_FALSE(HasFatalFailure());
    const std::string token = CreateKey("").first;
    for (int i = 0; i < 2 * n; ++i) {
      auto r = Post(i % n, token);
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 200) << r->body;
    }
    for (int i = 0; i < n; ++i) ASSERT_EQ(airlock::testing::ExitCode(replicas_[i]->Stop(SIGTERM)), 0) << Log(i);
  }

  // `airlock audit verify` with every replica's public key, the logs of `replicas`, and (when
  // `with_store`) the checkpoints published to the shared store.
  std::pair<int, std::string> Verify(const std::vector<int>& replicas, bool with_store = true) {
    std::string cmd = std::string(AIRLOCK_EXE) + " audit verify";
    if (with_store) cmd += " --config " + Quote(configs_[0]);
    for (std::size_t i = 0; i < configs_.size(); ++i)
      cmd += " --public-key " + Quote(AuditLogOf(static_cast<int>(i)) + ".key.pub");
    for (int i : replicas) cmd += " --log " + Quote(AuditLogOf(i));
    return RunShell(cmd);
  }

  // The size of replica `i`'s newest checkpoint: in its log, or published to the shared store
  // (-1: none).
  std::int64_t LocalCheckpointSize(int i) {
    auto r = RunShell(std::string(AIRLOCK_EXE) + " audit checkpoint --log " + Quote(AuditLogOf(i)));
    EXPECT_EQ(r.first, 0) << r.second;
    std::istringstream note(r.second);
    std::string origin, size;
    std::getline(note, origin);
    std::getline(note, size);
    return size.empty() ? -1 : std::stoll(size);
  }
  std::int64_t PublishedSize(int i) {
    auto r = pg_->Psql(db_,
                       "SELECT coalesce(max(tree_size), -1) FROM airlock_audit_checkpoints "
                       "WHERE origin = '" +
                           Origin(i) + "'");
    return r.first == 0 ? std::stoll(r.second) : -2;  // -2: the store does not answer
  }
  // Polls (bounded) until replica `i`'s checkpoint of `size` is in the shared store.
  bool WaitPublished(int i, std::int64_t size) {
    for (int attempt = 0; attempt < 1200; ++attempt) {
      if (PublishedSize(i) >= size) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Polls (bounded) GET /ready of replica `i` until it answers `status`; returns the last answer.
  std::string WaitReady(int i, int status) {
    httplib::Client c("127.0.0.1", replicas_[i]->port());
    c.set_read_timeout(30, 0);
    std::string last = "no answer";
    for (int attempt = 0; attempt < 600; ++attempt) {
      auto r = c.Get("/ready");
      if (r) {
        last = std::to_string(r->status) + " " + r->body;
        if (r->status == status) return last;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return last;
  }
};

// Three replicas, each with its own origin and key, publish their checkpoints to the shared
// store; verify passes over the three logs together with every published checkpoint, and the
// table refuses changes and deletions.
TEST_F(CheckpointsTest, ThreeReplicasPublishCheckpointsAndVerifyPassesTogether) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  ServeAndStop(pg, "checkpoints_pass", 3);
  ASSERT_FALSE(HasFatalFailure());
  for (int i = 0; i < 3; ++i) {
    // Each replica answered two requests: its newest checkpoint covers them and is published.
    std::int64_t local = LocalCheckpointSize(i);
    EXPECT_GE(local, 2);
    EXPECT_EQ(PublishedSize(i), local) << Log(i);
  }
  auto v = Verify({0, 1, 2});
  EXPECT_EQ(v.first, 0) << v.second;
  for (int i = 0; i < 3; ++i)
    EXPECT_NE(v.second.find("OK " + Origin(i)), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("published to the shared store"), std::string::npos) << v.second;
  // The same logs found in their folder.
  auto folder = RunShell(std::string(AIRLOCK_EXE) + " audit verify --config " + Quote(configs_[0]) +
                         " --log-dir " + Quote(dir_.path().string()) + " --public-key " +
                         Quote(AuditLogOf(0) + ".key.pub") + " --public-key " +
                         Quote(AuditLogOf(1) + ".key.pub") + " --public-key " +
                         Quote(AuditLogOf(2) + ".key.pub"));
  EXPECT_EQ(folder.first, 0) << folder.second;
  // Append-only, for every role.
  EXPECT_NE(pg.Psql(db_, "UPDATE airlock_audit_checkpoints SET tree_size = 0").first, 0);
  EXPECT_NE(pg.Psql(db_, "DELETE FROM airlock_audit_checkpoints").first, 0);
  EXPECT_NE(pg.Psql(db_, "TRUNCATE airlock_audit_checkpoints").first, 0);
}

// Attack: whoever controls one replica's volume removes its newest records together with their
// checkpoints (a rollback). The log alone still verifies; against the checkpoints the replica
// published to the shared store it fails, by name, and the other replicas pass. A replica whose
// log is not given at all fails too.
TEST_F(CheckpointsTest, TruncatedReplicaLogFailsAgainstTheSharedStoreNamingTheReplica) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  ServeAndStop(pg, "checkpoints_truncated", 3);
  ASSERT_FALSE(HasFatalFailure());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(AuditLogOf(1).c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DELETE FROM records WHERE seq = (SELECT max(seq) FROM records);"
                         "DELETE FROM checkpoints WHERE size > (SELECT count(*) FROM records);",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto alone = Verify({1}, /*with_store=*/false);
  EXPECT_EQ(alone.first, 0) << "the truncated log is self-consistent: " << alone.second;
  auto v = Verify({0, 1, 2});
  EXPECT_EQ(v.first, 1) << v.second;
  EXPECT_NE(v.second.find("FAILED " + Origin(1)), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("tail truncation"), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("OK " + Origin(0)), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("OK " + Origin(2)), std::string::npos) << v.second;
  // Replica 1's log left out: its published checkpoints name it as missing.
  auto missing = Verify({0, 2});
  EXPECT_EQ(missing.first, 1) << missing.second;
  EXPECT_NE(missing.second.find("FAILED " + Origin(1) + ": trusted checkpoint in the shared store"),
            std::string::npos)
      << missing.second;
}

// Attack: a checkpoint row written into the shared store by someone without the replica's key
// (its root changed, the signature kept) fails verification, naming the replica.
TEST_F(CheckpointsTest, ForgedCheckpointRowFailsVerification) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  ServeAndStop(pg, "checkpoints_forged", 3);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(Verify({0, 1, 2}).first, 0);
  const std::string zero_root = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  auto forged =
      pg.Psql(db_,
              "INSERT INTO airlock_audit_checkpoints (origin, tree_size, root_hash, note) SELECT "
              "origin, tree_size, '" +
                  zero_root + "', replace(note, root_hash, '" + zero_root +
                  "') FROM airlock_audit_checkpoints WHERE origin = '" + Origin(1) +
                  "' ORDER BY tree_size DESC LIMIT 1");
  ASSERT_EQ(forged.first, 0) << forged.second;
  auto v = Verify({0, 1, 2});
  EXPECT_EQ(v.first, 1) << v.second;
  EXPECT_NE(v.second.find("FAILED " + Origin(1)), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("not signed by the pinned public key"), std::string::npos) << v.second;
  EXPECT_NE(v.second.find("OK " + Origin(0)), std::string::npos) << v.second;
}

// Attack: a row whose columns claim more than its (genuine) note says, e.g. that a replica's log
// reached a size it never signed, is refused as a changed row, naming the replica.
TEST_F(CheckpointsTest, CheckpointRowDisagreeingWithItsNoteFailsVerification) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  ServeAndStop(pg, "checkpoints_row_mismatch", 2);
  ASSERT_FALSE(HasFatalFailure());
  auto inserted =
      pg.Psql(db_,
              "INSERT INTO airlock_audit_checkpoints (origin, tree_size, root_hash, note) SELECT "
              "origin, tree_size + 1000, root_hash, note FROM airlock_audit_checkpoints WHERE "
              "origin = '" +
                  Origin(0) + "' ORDER BY tree_size DESC LIMIT 1");
  ASSERT_EQ(inserted.first, 0) << inserted.second;
  auto v = Verify({0, 1});
  EXPECT_EQ(v.first, 1) << v.second;
  EXPECT_NE(v.second.find("FAILED " + Origin(0) + ": checkpoint row"), std::string::npos)
      << v.second;
  EXPECT_NE(v.second.find("the row was changed or forged"), std::string::npos) << v.second;
}

// PostgreSQL is killed: requests are refused with 503 (fail closed) and still audited, the
// replica keeps signing checkpoints locally, and once PostgreSQL is back the checkpoints signed
// during the outage are published without any further request; verify then passes.
TEST_F(CheckpointsTest, PostgresOutageNeverStopsAuditingAndCheckpointsArePublishedAfterRecovery) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  std::string why;
  std::string db = pg.CreateDatabase("checkpoints_outage", &why);
  ASSERT_FALSE(db.empty()) << why;
  StartReplicas(pg, db, 1);
  ASSERT_FALSE(HasFatalFailure());
  const std::string token = CreateKey("").first;
  auto ok = Post(0, token);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200) << ok->body;
  std::int64_t before = LocalCheckpointSize(0);
  ASSERT_TRUE(WaitPublished(0, before)) << Log(0);

  auto killed = pg.Kill();
  ASSERT_EQ(killed.first, 0) << killed.second;
  auto down = Post(0, token);
  bool restarted = false;
  auto restart = [&] {
    if (!restarted) restarted = pg.Restart().first == 0;
  };
  if (!down || down->status != 503) restart();  // the shared server must come back for the others
  ASSERT_TRUE(down);
  EXPECT_EQ(down->status, 503) << down->body << Log(0);
  // Audited and checkpointed locally while the store is down.
  std::int64_t during = LocalCheckpointSize(0);
  EXPECT_GT(during, before);
  EXPECT_EQ(PublishedSize(0), -2);  // the store really is down

  restart();
  ASSERT_TRUE(restarted) << pg.Log();
  EXPECT_TRUE(WaitPublished(0, during)) << Log(0);
  EXPECT_NE(Log(0).find("publishing an audit checkpoint failed"), std::string::npos) << Log(0);
  auto back = Post(0, token);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->status, 200) << back->body;
  ASSERT_EQ(airlock::testing::ExitCode(replicas_[0]->Stop(SIGTERM)), 0) << Log(0);
  EXPECT_EQ(PublishedSize(0), LocalCheckpointSize(0));
  auto v = Verify({0});
  EXPECT_EQ(v.first, 0) << v.second;
  EXPECT_EQ(Log(0).find(pg.password()), std::string::npos);  // never logged
}

// /ready reflects the shared store: 503 with a reason while PostgreSQL is down (so that a load
// balancer stops sending requests that could only be refused), /health stays 200, and /ready is
// 200 again once the store answers.
TEST_F(CheckpointsTest, ReadyAnswers503WhileTheStoreIsDownAndHealthStays200) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  std::string why;
  std::string db = pg.CreateDatabase("ready_outage", &why);
  ASSERT_FALSE(db.empty()) << why;
  StartReplicas(pg, db, 1);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(WaitReady(0, 200).substr(0, 3), "200");
  auto killed = pg.Kill();
  ASSERT_EQ(killed.first, 0) << killed.second;
  std::string not_ready = WaitReady(0, 503);
  httplib::Client c("127.0.0.1", replicas_[0]->port());
  auto health = c.Get("/health");
  auto restarted = pg.Restart();
  ASSERT_EQ(restarted.first, 0) << restarted.second;
  EXPECT_EQ(not_ready.substr(0, 3), "503") << not_ready;
  EXPECT_NE(not_ready.find("key store unavailable"), std::string::npos) << not_ready;
  EXPECT_EQ(not_ready.find("postgresql"), std::string::npos) << "the URL is not public";
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  std::string ready = WaitReady(0, 200);
  EXPECT_EQ(ready.substr(0, 3), "200") << ready;
}

// `[audit] publish_to_store = false` (a worker's throwaway log): nothing of it reaches the store,
// so verifying the deployment never asks for a log nobody kept.
TEST_F(CheckpointsTest, ALogThatIsNotPublishedLeavesNoRowInTheStore) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  extra_audit_ = "publish_to_store=false\n";
  ServeAndStop(pg, "checkpoints_not_published", 1);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_GE(LocalCheckpointSize(0), 2);
  EXPECT_EQ(PublishedSize(0), -1) << Log(0);
}

}  // namespace
