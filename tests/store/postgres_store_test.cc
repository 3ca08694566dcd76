// The PostgreSQL key store against a real PostgreSQL server (postgres_server.h): schema creation
// and versioning, keys, atomic reservations shared by several store instances (as several
// replicas hold them), settlement, rate limits across instances, a dead replica's reservation,
// configuration errors, and an outage failing closed.
#include "server/internal/postgres_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "postgres_server.h"
#include "server/keys.h"

namespace airlock::server {
namespace {

using airlock::testing::PostgresServer;

policy::Policy PolicyFor(const PostgresServer& pg, const std::string& db) {
  policy::Policy p;
  p.store.url = pg.Url(db);
  p.store.password_file = pg.password_file();
  return p;
}

std::unique_ptr<KeyStore> MustOpen(const policy::Policy& p) {
  auto s = OpenKeyStore(p);
  EXPECT_TRUE(s.ok()) << s.error().message();
  return s.ok() ? std::move(*s) : nullptr;
}

#define FRESH_DB(pg, var, name)                          \
  std::string why_##var;                                 \
  std::string var = pg.CreateDatabase(name, &why_##var); \
  ASSERT_FALSE(var.empty()) << why_##var

TEST(PostgresStore, CreatesVersionedSchemaOnceAndReopens) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "schema_once");
  {
    auto a = MustOpen(PolicyFor(pg, db));
    ASSERT_TRUE(a);
    auto b = MustOpen(PolicyFor(pg, db));  // a second replica: finds the schema, migrates nothing
    ASSERT_TRUE(b);
  }
  // One row per migration step, each applied once.
  std::string steps;
  for (int i = 1; i <= internal::kPostgresSchemaVersion; ++i)
    steps += (i > 1 ? "," : "") + std::to_string(i);
  auto v = pg.Psql(db,
                   "SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                   "airlock_schema_version");
  ASSERT_EQ(v.first, 0) << v.second;
  EXPECT_EQ(v.second, steps);
}

// A store created by the first release (schema version 1: keys and reservations) is migrated to
// version 2 (the audit checkpoints table) on the next start; its keys stay valid.
TEST(PostgresStore, MigratesAVersion1StoreToVersion2) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "schema_v1");
  std::string token;
  {
    auto s = MustOpen(PolicyFor(pg, db));
    ASSERT_TRUE(s);
    auto created = s->Create("kept", {}, 0, 0, 0);
    ASSERT_TRUE(created.ok());
    token = created->first;
  }
  // Back to version 1, as that release left it.
  auto back = pg.Psql(db,
                      "DROP TABLE airlock_audit_checkpoints; DROP FUNCTION "
                      "airlock_audit_checkpoints_refuse(); DELETE FROM airlock_schema_version "
                      "WHERE version = 2");
  ASSERT_EQ(back.first, 0) << back.second;
  auto s = MustOpen(PolicyFor(pg, db));
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->Authenticate(token).ok());
  auto v = pg.Psql(db, "SELECT max(version) FROM airlock_schema_version");
  EXPECT_EQ(v.second, "2");
  auto table = pg.Psql(db, "SELECT count(*) FROM airlock_audit_checkpoints");
  EXPECT_EQ(table.first, 0) << table.second;
  EXPECT_EQ(table.second, "0");
}

TEST(PostgresStore, ReplicasStartingTogetherMigrateOnce) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "schema_race");
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i)
    threads.emplace_back([&] {
      if (OpenKeyStore(PolicyFor(pg, db)).ok()) ++ok;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6);
  auto v = pg.Psql(db, "SELECT count(*) FROM airlock_schema_version");
  EXPECT_EQ(v.second, std::to_string(internal::kPostgresSchemaVersion));
}

TEST(PostgresStore, NewerSchemaIsRefusedNotDowngraded) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "schema_newer");
  ASSERT_TRUE(MustOpen(PolicyFor(pg, db)));
  ASSERT_EQ(pg.Psql(db, "INSERT INTO airlock_schema_version (version) VALUES (99)").first, 0);
  auto s = OpenKeyStore(PolicyFor(pg, db));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), StatusCode::kUnsupported);
  EXPECT_NE(s.error().message().find("schema version 99"), std::string::npos)
      << s.error().message();
}

TEST(PostgresStore, CreateAuthenticateRevokeAcrossInstances) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "keys_basic");
  auto a = MustOpen(PolicyFor(pg, db));
  auto b = MustOpen(PolicyFor(pg, db));
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(*a->HasAnyKey());
  auto created = a->Create("ci", {"m1"}, 10, 1000, 5000);
  ASSERT_TRUE(created.ok()) << created.error().message();
  const std::string token = created->first;
  EXPECT_TRUE(*b->HasAnyKey());
  auto info = b->Authenticate(token);
  ASSERT_TRUE(info.ok()) << info.error().message();
  EXPECT_EQ(info->id, created->second.id);
  EXPECT_EQ(info->models, std::vector<std::string>{"m1"});
  EXPECT_EQ(info->budget_tokens, 5000);
  std::string wrong = token;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  EXPECT_EQ(b->Authenticate(wrong).error().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(b->Authenticate("ak_short").error().code(), StatusCode::kPermissionDenied);
  // Revoked through one instance: the other refuses the very next request (no cache).
  ASSERT_TRUE(a->Revoke(info->id).ok());
  EXPECT_EQ(b->Authenticate(token).error().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(b->Reserve(*info, 10).error().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(a->Revoke("nonexistent").code(), StatusCode::kNotFound);
  EXPECT_TRUE(*b->HasAnyKey());  // revoked, still held: keys stay required
  auto listed = b->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_TRUE((*listed)[0].revoked);
  // Only the hash is stored.
  auto stored = pg.Psql(db, "SELECT count(*) FROM airlock_keys WHERE position('" +
                                token.substr(token.rfind('_') + 1) +
                                "' in encode(hash, 'escape') || name || models) > 0");
  EXPECT_EQ(stored.second, "0");
}

TEST(PostgresStore, UnreadableModelsColumnRevokesRatherThanWidens) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "keys_models");
  auto s = MustOpen(PolicyFor(pg, db));
  ASSERT_TRUE(s);
  auto created = s->Create("m", {"only-this"}, 0, 0, 0);
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(pg.Psql(db, "UPDATE airlock_keys SET models = 'not json'").first, 0);
  EXPECT_EQ(s->Authenticate(created->first).error().code(), StatusCode::kPermissionDenied);
}

// Attack: two replicas each admitting against their own copy of the budget let a key spend it
// twice. 40 concurrent reservations from 4 store instances against a budget for 5: exactly 5 are
// admitted, and after settlement the key has used exactly its budget.
TEST(PostgresStore, ConcurrentReservationsFromFourInstancesNeverOverspend) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "budget_race");
  std::vector<std::unique_ptr<KeyStore>> replicas;
  for (int i = 0; i < 4; ++i) replicas.push_back(MustOpen(PolicyFor(pg, db)));
  for (auto& r : replicas) ASSERT_TRUE(r);
  auto created = replicas[0]->Create("budget", {}, 0, 0, 500);
  ASSERT_TRUE(created.ok());
  KeyInfo key = created->second;
  std::atomic<int> admitted{0}, refused{0}, other{0};
  std::vector<Reservation> held;
  std::mutex held_mu;
  std::vector<std::thread> threads;
  for (int i = 0; i < 40; ++i)
    threads.emplace_back([&, i] {
      auto r = replicas[i % 4]->Reserve(key, 100);
      if (r.ok()) {
        ++admitted;
        std::lock_guard<std::mutex> lock(held_mu);
        held.push_back(*r);
      } else if (r.error().code() == StatusCode::kLimitExceeded) {
        ++refused;
      } else {
        ++other;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 5);
  EXPECT_EQ(refused.load(), 35);
  EXPECT_EQ(other.load(), 0);
  for (std::size_t i = 0; i < held.size(); ++i) replicas[i % 4]->Reconcile(held[i], 100);
  auto row = pg.Psql(db, "SELECT used_tokens || ',' || reserved_tokens FROM airlock_keys");
  EXPECT_EQ(row.second, "500,0");
  auto more = replicas[1]->Reserve(key, 1);
  ASSERT_FALSE(more.ok());
  EXPECT_NE(more.error().message().find("budget exhausted"), std::string::npos);
}

TEST(PostgresStore, SettlementReleasesTheUnusedPartOnce) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "settle");
  auto a = MustOpen(PolicyFor(pg, db));
  auto b = MustOpen(PolicyFor(pg, db));
  ASSERT_TRUE(a && b);
  auto created = a->Create("s", {}, 0, 0, 1000);
  ASSERT_TRUE(created.ok());
  auto r = a->Reserve(created->second, 800);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_FALSE(b->Reserve(created->second, 300).ok());  // 800 reserved + 300 > 1000
  a->Reconcile(*r, 150);
  b->Reconcile(*r, 150);  // a second settlement of the same reservation charges nothing
  auto row = pg.Psql(db, "SELECT used_tokens || ',' || reserved_tokens FROM airlock_keys");
  EXPECT_EQ(row.second, "150,0");
  EXPECT_TRUE(b->Reserve(created->second, 850).ok());
}

TEST(PostgresStore, RateLimitsHoldAcrossInstances) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "rate");
  auto a = MustOpen(PolicyFor(pg, db));
  auto b = MustOpen(PolicyFor(pg, db));
  ASSERT_TRUE(a && b);
  auto rpm_key = a->Create("rpm", {}, 3, 0, 0);
  ASSERT_TRUE(rpm_key.ok());
  for (int i = 0; i < 3; ++i) {
    auto r = (i % 2 ? a : b)->Reserve(rpm_key->second, 1);
    ASSERT_TRUE(r.ok()) << r.error().message();
    (i % 2 ? b : a)->Reconcile(*r, 1);
  }
  auto fourth = b->Reserve(rpm_key->second, 1);
  ASSERT_FALSE(fourth.ok());
  EXPECT_NE(fourth.error().message().find("3 requests per minute"), std::string::npos);
  auto tpm_key = a->Create("tpm", {}, 0, 100, 0);
  ASSERT_TRUE(tpm_key.ok());
  auto big = a->Reserve(tpm_key->second, 70);
  ASSERT_TRUE(big.ok());
  auto over = b->Reserve(tpm_key->second, 40);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.error().message().find("100 tokens per minute"), std::string::npos);
  a->Reconcile(*big, 10);  // the window counts what was charged, not what was reserved
  EXPECT_TRUE(b->Reserve(tpm_key->second, 40).ok());
}

// A replica that died mid-request leaves its reservation behind: once the lease is over, the next
// reservation of that key charges it in full (the work it caused is unknown), so a crash never
// refunds a budget.
TEST(PostgresStore, ReservationOfADeadReplicaIsChargedInFullAfterItsLease) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "lease");
  internal::PostgresOptions o;
  o.url = pg.Url(db);
  o.password = pg.password();
  o.reservation_lease_s = 0;  // every reservation's lease is over at once
  auto dead = internal::OpenPostgresKeyStore(o);
  ASSERT_TRUE(dead.ok()) << dead.error().message();
  auto created = (*dead)->Create("l", {}, 0, 0, 1000);
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE((*dead)->Reserve(created->second, 300).ok());  // never settled
  dead->reset();
  auto live = MustOpen(PolicyFor(pg, db));
  ASSERT_TRUE(live);
  auto r = live->Reserve(created->second, 10);
  ASSERT_TRUE(r.ok()) << r.error().message();
  auto row = pg.Psql(db, "SELECT used_tokens || ',' || reserved_tokens FROM airlock_keys");
  EXPECT_EQ(row.second, "300,10");
}

TEST(PostgresStore, UrlWithAPasswordIsRefusedWithoutPrintingIt) {
  policy::Policy p;
  p.store.url = "postgresql://airlock:s3cr3t-value@127.0.0.1:1/db";
  auto s = OpenKeyStore(p);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.error().message().find("password_file"), std::string::npos);
  EXPECT_EQ(s.error().message().find("s3cr3t-value"), std::string::npos);
  p.store.url = "postgresql://127.0.0.1:1/db?password=s3cr3t-value";
  s = OpenKeyStore(p);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message().find("s3cr3t-value"), std::string::npos);
  p.store.url = "mysql://127.0.0.1/db";
  EXPECT_EQ(OpenKeyStore(p).error().code(), StatusCode::kInvalidArgument);
  p.store.url = "postgresql://127.0.0.1:1/db";
  p.store.password_env = "AIRLOCK_TEST_UNSET_PASSWORD_VARIABLE";
  EXPECT_EQ(OpenKeyStore(p).error().code(), StatusCode::kInvalidArgument);
}

TEST(PostgresStore, UnreachableDatabaseIsUnavailableAndWrongPasswordNamesNoSecret) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  policy::Policy p;
  p.store.url = "postgresql:///nowhere?host=/nonexistent-airlock-socket-dir&port=5";
  auto s = OpenKeyStore(p);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), StatusCode::kUnavailable);
  EXPECT_NE(s.error().message().find("cannot be reached"), std::string::npos);
  FRESH_DB(pg, db, "wrong_password");
  ::setenv("AIRLOCK_TEST_PG_WRONG_PASSWORD", "not-the-password-xyz", 1);
  p.store.url = pg.Url(db);
  p.store.password_env = "AIRLOCK_TEST_PG_WRONG_PASSWORD";
  s = OpenKeyStore(p);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.error().message().find("not-the-password-xyz"), std::string::npos);
  ::setenv("AIRLOCK_TEST_PG_WRONG_PASSWORD", pg.password().c_str(), 1);
  EXPECT_TRUE(OpenKeyStore(p).ok());
}

// The database goes away under a running store: admission fails closed (kUnavailable, nothing
// reserved), and comes back by itself once the database does.
TEST(PostgresStore, OutageFailsClosedAndRecovers) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  FRESH_DB(pg, db, "outage");
  auto s = MustOpen(PolicyFor(pg, db));
  ASSERT_TRUE(s);
  auto created = s->Create("o", {}, 0, 0, 1000);
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(s->Authenticate(created->first).ok());
  auto down =
      pg.Psql("postgres", "ALTER DATABASE " + db +
                              " ALLOW_CONNECTIONS false; SELECT count(pg_terminate_backend(pid)) "
                              "FROM pg_stat_activity WHERE datname = '" +
                              db + "'");
  ASSERT_EQ(down.first, 0) << down.second;
  auto auth = s->Authenticate(created->first);
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.error().code(), StatusCode::kUnavailable) << auth.error().message();
  auto r = s->Reserve(created->second, 10);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kUnavailable) << r.error().message();
  ASSERT_EQ(pg.Psql("postgres", "ALTER DATABASE " + db + " ALLOW_CONNECTIONS true").first, 0);
  EXPECT_TRUE(s->Authenticate(created->first).ok());
  EXPECT_TRUE(s->Reserve(created->second, 10).ok());
  auto row = pg.Psql(db, "SELECT reserved_tokens FROM airlock_keys");
  EXPECT_EQ(row.second, "10");  // the refused reservation reserved nothing
}

}  // namespace
}  // namespace airlock::server
