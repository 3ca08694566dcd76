// Three real `airlock serve` replicas (AIRLOCK_EXE) on one PostgreSQL database
// (postgres_server.h), each with its own audit log, in front of one upstream (an in-process
// httplib test double): a budget shared by the replicas is never overspent by concurrent requests,
// a key revoked on the shared store is refused by every replica, a replica killed mid-request
// loses no audit record of an answered request (`airlock audit verify` over all replicas' logs),
// and a store outage answers 503. Every wait is bounded; no test asserts a duration.
#include "replicas.h"

namespace {

using airlock::testing::json;
using airlock::testing::Quote;
using airlock::testing::ReplicasTest;
using airlock::testing::RunShell;

// Attack: with per-replica budgets, a key spends its budget once per replica. 30 concurrent
// requests spread over 3 replicas against a budget for exactly 5 (each request is charged what it
// reserved): exactly 5 are answered, 25 refused with 429, and the key used exactly its budget.
TEST_F(ReplicasTest, ThirtyConcurrentRequestsAcrossThreeReplicasNeverOverspendABudgetForFive) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  std::string why;
  std::string db = pg.CreateDatabase("replicas_budget", &why);
  ASSERT_FALSE(db.empty()) << why;
  StartReplicas(pg, db, 3);
  ASSERT_FALSE(HasFatalFailure());
  // What one request reserves, read from the shared store after one calibration request.
  // (A rate limit keeps its settled reservations in the table as its window.)
  auto [calibration, calibration_id] = CreateKey("--rpm 1000000");
  auto first = Post(0, calibration);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200) << first->body;
  std::int64_t reserved = std::stoll(
      Sql("SELECT tokens FROM airlock_reservations WHERE key_id = '" + calibration_id + "'"));
  ASSERT_GT(reserved, 1);
  upstream_.prompt_tokens = reserved - 1;
  upstream_.completion_tokens = 1;
  // Named strings, not structured bindings: lambdas below capture them (clang 14).
  const auto budget_key = CreateKey("--budget " + std::to_string(5 * reserved));
  const std::string token = budget_key.first, id = budget_key.second;
  int before = upstream_.received.load();

  std::atomic<bool> go{false};
  std::atomic<int> answered{0}, refused{0}, other{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 30; ++i)
    clients.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      auto r = Post(i % 3, token);
      if (r && r->status == 200)
        ++answered;
      else if (r && r->status == 429 && r->body.find("insufficient_quota") != std::string::npos)
        ++refused;
      else
        ++other;
    });
  go = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(answered.load(), 5);
  EXPECT_EQ(refused.load(), 25);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(upstream_.received.load() - before, 5);
  EXPECT_EQ(
      Sql("SELECT used_tokens || ',' || reserved_tokens FROM airlock_keys WHERE id = '" + id + "'"),
      std::to_string(5 * reserved) + ",0");
}

// A key revoked with `airlock keys revoke` on the shared store is refused by every replica; the
// replicas keep no key cache, so this is the first request after the revocation (polled, bounded).
TEST_F(ReplicasTest, KeyRevokedOnTheSharedStoreIsRefusedByEveryReplica) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  std::string why;
  std::string db = pg.CreateDatabase("replicas_revoke", &why);
  ASSERT_FALSE(db.empty()) << why;
  StartReplicas(pg, db, 3);
  ASSERT_FALSE(HasFatalFailure());
  auto [token, id] = CreateKey("");
  auto [other_token, other_id] = CreateKey("");
  for (int i = 0; i < 3; ++i) {
    auto r = Post(i, token);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }
  auto revoked =
      RunShell(std::string(AIRLOCK_EXE) + " keys revoke " + id + " --config " + Quote(configs_[2]));
  ASSERT_EQ(revoked.first, 0) << revoked.second;
  for (int i = 0; i < 3; ++i) {
    int status = 0;
    for (int attempt = 0; attempt < 200 && status != 401; ++attempt) {
      auto r = Post(i, token);
      ASSERT_TRUE(r);
      status = r->status;
      if (status != 401) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(status, 401) << "replica " << i << " still accepts the revoked key";
    auto still = Post(i, other_token);  // other keys are unaffected
    ASSERT_TRUE(still);
    EXPECT_EQ(still->status, 200) << still->body;
  }
}

// kill -9 of a replica while it waits for the upstream: every request that any replica answered
// has its audit record, and `airlock audit verify` passes over the three replicas' logs together
// (each its own origin and key). The killed replica's reservation stays reserved in the shared
// store (charged in full once its lease ends), so the crash refunds nothing.
TEST_F(ReplicasTest, KillingAReplicaMidRequestLosesNoAuditRecordOfAnAnsweredRequest) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  std::string why;
  std::string db = pg.CreateDatabase("replicas_kill", &why);
  ASSERT_FALSE(db.empty()) << why;
  StartReplicas(pg, db, 3);
  ASSERT_FALSE(HasFatalFailure());
  const auto created = CreateKey("");
  const std::string token = created.first, id = created.second;
  std::mutex mu;
  std::vector<std::string> answered;
  auto record = [&](const httplib::Result& r) {
    if (!r || r->status != 200) return;
    std::lock_guard<std::mutex> lock(mu);
    answered.push_back(r->get_header_value("X-Request-Id"));
  };
  for (int i = 0; i < 6; ++i) record(Post(i % 3, token));
  ASSERT_EQ(answered.size(), 6u);

  upstream_.hold = true;
  std::vector<std::thread> in_flight;
  std::atomic<int> lost{0};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      in_flight.emplace_back([&, i] {
        auto r = Post(i, token);
        if (!r) ++lost;
        record(r);
      });
  for (int i = 0; i < 1000 && upstream_.waiting.load() < 6; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(upstream_.waiting.load(), 6);
  replicas_[1]->Stop(SIGKILL);
  upstream_.hold = false;
  for (auto& t : in_flight) t.join();
  EXPECT_EQ(lost.load(), 2);  // the killed replica's two clients got no answer
  for (int i = 0; i < 4; ++i) record(Post(i % 2 ? 2 : 0, token));
  ASSERT_EQ(answered.size(), 14u);
  EXPECT_EQ(airlock::testing::ExitCode(replicas_[0]->Stop(SIGTERM)), 0);
  EXPECT_EQ(airlock::testing::ExitCode(replicas_[2]->Stop(SIGTERM)), 0);

  std::set<std::string> audited;
  for (int i = 0; i < 3; ++i) {
    auto shown = RunShell(std::string(AIRLOCK_EXE) + " audit show --json --limit 100000 --log " +
                          Quote(P("gw" + std::to_string(i) + ".db")));
    ASSERT_EQ(shown.first, 0) << shown.second;
    // One JSON object per line.
    std::istringstream lines(shown.second);
    for (std::string line; std::getline(lines, line);) {
      json r = json::parse(line, nullptr, false);
      ASSERT_FALSE(r.is_discarded()) << line;
      if (r.is_object() && r.contains("request_id"))
        audited.insert(r["request_id"].get<std::string>());
    }
  }
  for (const std::string& rid : answered) EXPECT_TRUE(audited.count(rid)) << rid << " not audited";
  std::string verify = std::string(AIRLOCK_EXE) + " audit verify";
  for (int i = 0; i < 3; ++i) {
    std::string log = P("gw" + std::to_string(i) + ".db");
    verify += " --log " + Quote(log) + " --public-key " + Quote(log + ".key.pub");
  }
  auto v = RunShell(verify);
  EXPECT_EQ(v.first, 0) << v.second;
  for (int i = 0; i < 3; ++i)
    EXPECT_NE(v.second.find("OK gw" + std::to_string(i) + ".test/airlock-audit"), std::string::npos)
        << v.second;
  // Two reservations of the killed replica are still held in the shared store.
  EXPECT_NE(Sql("SELECT reserved_tokens FROM airlock_keys WHERE id = '" + id + "'"), "0");
}

// The shared store goes away: requests that need a reservation are refused with 503 (fail closed,
// a clear code, the database URL and password in no answer), /health still answers, and the
// replica serves again once the database is back.
TEST_F(ReplicasTest, StoreOutageAnswers503AndRecovers) {
  AIRLOCK_POSTGRES_OR_SKIP(pg);
  std::string why;
  std::string db = pg.CreateDatabase("replicas_outage", &why);
  ASSERT_FALSE(db.empty()) << why;
  StartReplicas(pg, db, 1);
  ASSERT_FALSE(HasFatalFailure());
  auto [token, id] = CreateKey("--budget 100000");
  auto ok = Post(0, token);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200) << ok->body;
  ASSERT_EQ(pg.Psql("postgres", "ALTER DATABASE " + db +
                                    " ALLOW_CONNECTIONS false; SELECT count(pg_terminate_backend("
                                    "pid)) FROM pg_stat_activity WHERE datname = '" +
                                    db + "'")
                .first,
            0);
  auto down = Post(0, token);
  ASSERT_TRUE(down);
  EXPECT_EQ(down->status, 503) << down->body;
  EXPECT_NE(down->body.find("store_unavailable"), std::string::npos) << down->body;
  EXPECT_EQ(down->body.find(pg.password()), std::string::npos);
  httplib::Client c("127.0.0.1", replicas_[0]->port());
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  ASSERT_EQ(pg.Psql("postgres", "ALTER DATABASE " + db + " ALLOW_CONNECTIONS true").first, 0);
  auto back = Post(0, token);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->status, 200) << back->body;
  EXPECT_EQ(Log(0).find(pg.password()), std::string::npos);  // never logged
  EXPECT_NE(Log(0).find("cannot be reached"), std::string::npos) << Log(0);
}

}  // namespace
