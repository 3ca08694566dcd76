// API keys: hashing, authentication, revocation, and atomic budget/rate admission under
// concurrency (no overspend).
#include "server/keys.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>

#include "test_util.h"

namespace airlock::server {
namespace {

using airlock::testing::RunAirlock;

using airlock::testing::TempDir;

TEST(KeyStore, CreateAuthenticateRevoke) {
  TempDir dir("keys");
  auto store = KeyStore::Open((dir.path() / "k.db").string());
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE(*(*store)->HasAnyKey());
  auto created = (*store)->Create("ci", {"m1"}, 10, 1000, 5000);
  ASSERT_TRUE(created.ok());
  const std::string token = created->first;
  EXPECT_EQ(token.rfind("ak_", 0), 0u);
  EXPECT_TRUE(*(*store)->HasAnyKey());

  auto info = (*store)->Authenticate(token);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->id, created->second.id);
  EXPECT_EQ(info->models, std::vector<std::string>{"m1"});
  EXPECT_EQ(info->budget_tokens, 5000);

  std::string wrong = token;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  EXPECT_EQ((*store)->Authenticate(wrong).error().code(), StatusCode::kPermissionDenied);
  EXPECT_FALSE((*store)->Authenticate("").ok());
  EXPECT_FALSE((*store)->Authenticate("ak_short").ok());

  ASSERT_TRUE((*store)->Revoke(info->id).ok());
  EXPECT_FALSE((*store)->Authenticate(token).ok());
  EXPECT_EQ((*store)->Revoke("nonexistent").code(), StatusCode::kNotFound);
  // A revoked key still counts: the store has held a key, so keys stay required.
  EXPECT_TRUE(*(*store)->HasAnyKey());
}

// Regression (the per-request statements are prepared once and kept): a key created, revoked or
// added by another connection to the same file (`airlock keys create` while serving) is seen by
// the next request, not hidden behind a read the kept statement left open.
TEST(KeyStore, KeysChangedByAnotherConnectionAreSeenAtOnce) {
  TempDir dir("keys-cached");
  const std::string path = (dir.path() / "k.db").string();
  auto serving = KeyStore::Open(path);
  ASSERT_TRUE(serving.ok());
  ASSERT_FALSE(*(*serving)->HasAnyKey());  // the kept statements now exist
  EXPECT_FALSE((*serving)->Authenticate("ak_000000000000_" + std::string(64, '0')).ok());

  auto other = KeyStore::Open(path);
  ASSERT_TRUE(other.ok());
  auto created = (*other)->Create("late", {}, 0, 0, 0);
  ASSERT_TRUE(created.ok());
  EXPECT_TRUE(*(*serving)->HasAnyKey());
  auto info = (*serving)->Authenticate(created->first);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->id, created->second.id);

  ASSERT_TRUE((*other)->Revoke(created->second.id).ok());
  EXPECT_FALSE((*serving)->Authenticate(created->first).ok());
  EXPECT_TRUE(*(*serving)->HasAnyKey());
}

TEST(KeyStore, SecretIsNeverStored) {
  TempDir dir("keys-hash");
  auto path = dir.path() / "k.db";
  std::string token;
  {
    auto store = KeyStore::Open(path.string());
    ASSERT_TRUE(store.ok());
    token = (*store)->Create("x", {}, 0, 0, 0)->first;
  }
  // Scan every stored byte for the secret part.
  std::string secret = token.substr(token.rfind('_') + 1);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT * FROM keys", -1, &s, nullptr), SQLITE_OK);
  int rows = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    ++rows;
    for (int c = 0; c < sqlite3_column_count(s); ++c) {
      const void* b = sqlite3_column_blob(s, c);
      std::string v(b ? static_cast<const char*>(b) : "", b ? sqlite3_column_bytes(s, c) : 0);
      EXPECT_EQ(v.find(secret), std::string::npos);
      EXPECT_EQ(v.find(token), std::string::npos);
    }
  }
  EXPECT_EQ(rows, 1);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

// A key's models column that is not a JSON array of names (edited by hand or by another tool) must
// not turn into "every model": the key stops authenticating instead.
TEST(KeyStore, UnreadableModelListFailsClosed) {
  TempDir dir("keys-models");
  auto path = dir.path() / "k.db";
  std::vector<std::string> tokens;
  {
    auto store = KeyStore::Open(path.string());
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 5; ++i)
      tokens.push_back((*store)->Create("k" + std::to_string(i), {"m1"}, 0, 0, 0)->first);
  }
  const char* bad[] = {"not json", "{\"m1\": true}", "[1]", "[\"\"]", "\"m1\""};
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  for (int i = 0; i < 5; ++i) {
    std::string sql = "UPDATE keys SET models = ? WHERE name = 'k" + std::to_string(i) + "'";
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK);
    sqlite3_bind_text(s, 1, bad[i], -1, SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  auto store = KeyStore::Open(path.string());
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 5; ++i) EXPECT_FALSE((*store)->Authenticate(tokens[i]).ok()) << bad[i];
}

// Many threads race to spend a budget; the sum admitted never exceeds it, and the budget is used
// up (the test can fail both ways).
TEST(KeyStore, BudgetIsNeverOverspentUnderConcurrency) {
  TempDir dir("keys-budget");
  auto store = KeyStore::Open((dir.path() / "k.db").string());
  ASSERT_TRUE(store.ok());
  const std::int64_t budget = 10000, cost = 70;
  auto created = (*store)->Create("b", {}, 0, 0, budget);
  ASSERT_TRUE(created.ok());
  KeyInfo key = *(*store)->Authenticate(created->first);
  std::atomic<std::int64_t> admitted{0}, rejected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 40; ++i) {
        auto r = (*store)->Reserve(key, cost);
        if (!r) {
          rejected++;
          continue;
        }
        std::this_thread::yield();
        (*store)->Reconcile(*r, cost - (i % 3));  // actual usage <= reservation
        admitted += cost - (i % 3);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_LE(admitted.load(), budget);
  EXPECT_GT(admitted.load(), budget - cost);  // nothing left unspent that one more could use
  EXPECT_GT(rejected.load(), 0);
  // Persisted usage equals what was charged.
  auto after = (*store)->Authenticate(created->first);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->used_tokens, admitted.load());
}

TEST(KeyStore, RequestAndTokenRateLimits) {
  TempDir dir("keys-rate");
  auto store = KeyStore::Open((dir.path() / "k.db").string());
  ASSERT_TRUE(store.ok());
  auto rpm = (*store)->Create("r", {}, 3, 0, 0);
  KeyInfo k = *(*store)->Authenticate(rpm->first);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*store)->Reserve(k, 1).ok());
  auto r = (*store)->Reserve(k, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kLimitExceeded);

  auto tpm = (*store)->Create("t", {}, 0, 100, 0);
  KeyInfo t = *(*store)->Authenticate(tpm->first);
  auto a = (*store)->Reserve(t, 80);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE((*store)->Reserve(t, 30).ok());  // 80 reserved + 30 > 100
  (*store)->Reconcile(*a, 20);                  // actual was 20: frees room in the window
  EXPECT_TRUE((*store)->Reserve(t, 30).ok());
}

// Key names and models reach the operator's terminal through `keys list`: control sequences are
// refused at creation, and an empty model name (which could read as "all models") too.
TEST(KeyStore, NamesWithControlCharactersAreRefused) {
  TempDir dir("keys-names");
  auto store = KeyStore::Open((dir.path() / "k.db").string());
  ASSERT_TRUE(store.ok());
  for (std::string name :
       {std::string("ci\x1b[2J"), std::string("ci\nadmin"), std::string("ci\rforged"),
        std::string("a\0b", 3), std::string("bidi\xe2\x80\xae"), std::string("\xff")}) {
    auto k = (*store)->Create(name, {"m1"}, 0, 0, 0);
    ASSERT_FALSE(k.ok()) << name;
    EXPECT_EQ(k.error().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE((*store)->Create("ci", {""}, 0, 0, 0).ok());
  EXPECT_FALSE((*store)->Create("ci", {"m1", "m\x1b[0m"}, 0, 0, 0).ok());
  EXPECT_FALSE(*(*store)->HasAnyKey());
  EXPECT_TRUE((*store)->Create("équipe ci", {"gpt-4o-mini"}, 0, 0, 0).ok());
}

TEST(KeysCli, EmptyModelsListIsAnError) {
  TempDir dir("keys-cli-models");
  std::string db = (dir.path() / "k.db").string();
  auto empty = RunAirlock("keys create --db " + db + " --name ci --models ''");
  EXPECT_EQ(empty.first, 3) << empty.second;
  EXPECT_NE(empty.second.find("--models"), std::string::npos) << empty.second;
  auto listed = RunAirlock("keys list --db " + db);
  EXPECT_EQ(listed.second.find("(all)"), std::string::npos) << listed.second;  // nothing created
  EXPECT_EQ(RunAirlock("keys create --db " + db + " --name \"$(printf 'ci\\033[2J')\"").first, 3);
}

TEST(KeysCli, ListEscapesNamesWrittenByAnotherTool) {
  // A database written by an older Airlock or edited by hand can still hold hostile names.
  TempDir dir("keys-cli-list");
  auto path = dir.path() / "k.db";
  {
    auto store = KeyStore::Open(path.string());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Create("ci", {"m1"}, 0, 0, 0).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "UPDATE keys SET name = 'ci' || char(27) || '[2J' || char(10) || "
                         "'forged-row active', models = '[\"m\\u001b]0;t\\u0007\"]'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto listed = RunAirlock("keys list --db " + path.string());
  EXPECT_EQ(listed.first, 0) << listed.second;
  EXPECT_EQ(listed.second.find('\x1b'), std::string::npos) << listed.second;
  EXPECT_EQ(listed.second.find('\x07'), std::string::npos) << listed.second;
  EXPECT_NE(listed.second.find("ci\\x1b[2J\\nforged-row"), std::string::npos) << listed.second;
  EXPECT_NE(listed.second.find("m\\x1b]0;t\\x07"), std::string::npos) << listed.second;
  // Header plus exactly one row: the newline did not forge a second one.
  EXPECT_EQ(std::count(listed.second.begin(), listed.second.end(), '\n'), 2);
}

}  // namespace
}  // namespace airlock::server
