// The [store] table of the policy and the choice OpenKeyStore makes from it (no database needed).
#include <gtest/gtest.h>

#include <fstream>

#include "policy/policy.h"
#include "server/keys.h"
#include "test_util.h"

namespace airlock::server {
namespace {

using airlock::testing::TempDir;

TEST(StoreConfig, ParsesTheStoreTable) {
  auto p = policy::ParsePolicy(
      "[store]\nurl = 'postgresql://airlock@db:5432/airlock'\npassword_file = '/run/pw'\n");
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(p->store.url, "postgresql://airlock@db:5432/airlock");
  EXPECT_EQ(p->store.password_file, "/run/pw");
  EXPECT_TRUE(p->store.password_env.empty());
}

// A password typed straight into the table would be a secret in a config file: there is no such
// key, so it is refused like any unknown key rather than silently ignored.
TEST(StoreConfig, UnknownKeysAreRefused) {
  auto p = policy::ParsePolicy("[store]\nurl = 'postgresql://db/airlock'\npassword = 'x'\n");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message().find("password"), std::string::npos) << p.error().message();
}

TEST(StoreConfig, WithoutAUrlTheSqliteFileIsUsed) {
  TempDir dir("store-config");
  policy::Policy p;
  p.server.keys_db = (dir.path() / "keys.db").string();
  auto s = OpenKeyStore(p);
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ((*s)->Describe(), p.server.keys_db);
  // A password for a store that is not configured is a mistake, not something to ignore.
  p.store.password_env = "SOME_VARIABLE";
  EXPECT_EQ(OpenKeyStore(p).error().code(), StatusCode::kInvalidArgument);
}

TEST(StoreConfig, PasswordSourcesAreCheckedBeforeConnecting) {
  TempDir dir("store-password");
  policy::Policy p;
  p.store.url = "postgresql:///airlock?host=/nonexistent-airlock-dir";
  p.store.password_file = (dir.path() / "missing").string();
  EXPECT_EQ(OpenKeyStore(p).error().code(), StatusCode::kIo);
  std::ofstream((dir.path() / "empty").string()) << "\n";
  p.store.password_file = (dir.path() / "empty").string();
  EXPECT_EQ(OpenKeyStore(p).error().code(), StatusCode::kInvalidArgument);
  p.store.password_env = "AIRLOCK_SOME_PASSWORD";
  auto both = OpenKeyStore(p);
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.error().message().find("keep one"), std::string::npos);
}

}  // namespace
}  // namespace airlock::server
