// Merkle log: RFC 6962 hashing, incremental roots, durability across reopen, signed checkpoints,
// and detection of changed, removed, reordered records and bad checkpoint signatures.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdio>
#include <thread>

#include "audit/audit_log.h"
#include "audit/merkle.h"
#include "core/hash.h"
#include "test_util.h"

namespace airlock::audit {
namespace {

using airlock::testing::TempDir;

TEST(Merkle, Rfc6962Hashing) {
  // Empty tree = SHA-256 of nothing.
  EXPECT_EQ(core::ToHex(EmptyTreeHash()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // Leaf hash has the 0x00 prefix: SHA-256(0x00) for an empty leaf.
  EXPECT_EQ(core::ToHex(LeafHash("")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
  Digest256 a = LeafHash("a"), b = LeafHash("b"), c = LeafHash("c");
  std::string cat = std::string(1, '\x01') +
                    std::string(reinterpret_cast<const char*>(a.data()), 32) +
                    std::string(reinterpret_cast<const char*>(b.data()), 32);
  EXPECT_EQ(NodeHash(a, b), core::Sha256Of(cat));
  std::vector<Digest256> three = {a, b, c};
  EXPECT_EQ(MerkleRoot(three), NodeHash(NodeHash(a, b), c));  // left subtree is the power of 2
}

TEST(Merkle, CompactRangeMatchesReference) {
  CompactRange range;
  std::vector<Digest256> leaves;
  EXPECT_EQ(range.Root(), EmptyTreeHash());
  for (int i = 0; i < 130; ++i) {
    leaves.push_back(LeafHash("leaf " + std::to_string(i)));
    range.Append(leaves.back());
    ASSERT_EQ(range.Root(), MerkleRoot(leaves)) << "size " << leaves.size();
  }
}

AuditRecord Sample(int i) {
  AuditRecord r;
  r.request_id = "req-" + std::to_string(i);
  r.endpoint = "/v1/chat/completions";
  r.key_id = i % 2 ? "k1" : "k2";
  r.model = i % 3 ? "m-us" : "m-de";
  r.upstream = "up";
  r.jurisdiction = "US";
  r.status = 200;
  r.data_classes = {i % 2 ? "email" : "secret"};
  r.actions = {"email:pseudonymize"};
  r.prompt_tokens = i;
  r.completion_tokens = 2 * i;
  r.prompt_sha256 = core::ToHex(core::Sha256Of("p" + std::to_string(i)));
  r.response_sha256 = core::ToHex(core::Sha256Of("r" + std::to_string(i)));
  return r;
}

void Sql(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(h);
}

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = dir_.path() / "key.pem";
    ASSERT_TRUE(GenerateSigningKey(key_.string()).ok());
    db_ = dir_.path() / "audit.db";
    OpenOptions o;
    o.signing_key_pem_path = key_.string();
    o.checkpoint_every = 4;
    auto log = AuditLog::Open(db_.string(), o);
    ASSERT_TRUE(log.ok()) << log.error().message();
    for (int i = 0; i < 10; ++i) {
      auto seq = (*log)->Append(Sample(i));
      ASSERT_TRUE(seq.ok());
      EXPECT_EQ(*seq, static_cast<std::uint64_t>(i));
    }
    // Closing writes a final checkpoint at size 10.
  }
  VerifyReport Verify() {
    auto r = VerifyLog(db_.string(), key_.string());
    EXPECT_TRUE(r.ok()) << r.error().message();
    return r.ok() ? *r : VerifyReport{};
  }
  TempDir dir_{"audit"};
  std::filesystem::path key_, db_;
};

TEST_F(AuditLogTest, IntactLogVerifies) {
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.first_problem;
  EXPECT_EQ(r.records, 10u);
  EXPECT_EQ(r.checkpoints, 3u);  // sizes 4, 8 and the final 10
  EXPECT_EQ(r.signed_checkpoints, 3u);
  EXPECT_EQ(r.unsigned_tail, 0u);
}

TEST_F(AuditLogTest, ReopenContinuesTheTree) {
  {
    OpenOptions o;
    o.signing_key_pem_path = key_.string();
    auto log = AuditLog::Open(db_.string(), o);
    ASSERT_TRUE(log.ok());
    EXPECT_EQ((*log)->size(), 10u);
    auto seq = (*log)->Append(Sample(10));
    ASSERT_TRUE(seq.ok());
    EXPECT_EQ(*seq, 10u);
  }
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.first_problem;
  EXPECT_EQ(r.records, 11u);
}

TEST_F(AuditLogTest, DetectsChangedRecord) {
  Sql(db_,
      "UPDATE records SET data = replace(data, '\"status\":200', '\"status\":201') WHERE seq=5");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("record 5 was changed"), std::string::npos) << r.first_problem;
}

TEST_F(AuditLogTest, DetectsChangedRecordWithRecomputedLeafHash) {
  // An attacker who also fixes the stored leaf hash still breaks the chain and the signed root.
  Sql(db_,
      "UPDATE records SET data = replace(data, '\"status\":200', '\"status\":201') WHERE seq=5");
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &h), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(h, "SELECT data FROM records WHERE seq=5", -1, &s, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  std::string data(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  sqlite3_finalize(s);
  Digest256 leaf = LeafHash(data);
  ASSERT_EQ(sqlite3_prepare_v2(h, "UPDATE records SET leaf_hash=? WHERE seq=5", -1, &s, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(s, 1, leaf.data(), 32, SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
  sqlite3_finalize(s);
  sqlite3_close(h);
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("record 6: hash chain broken"), std::string::npos)
      << r.first_problem;
}

TEST_F(AuditLogTest, DetectsRemovedRecord) {
  Sql(db_, "DELETE FROM records WHERE seq=3");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("record 3 is missing"), std::string::npos) << r.first_problem;
}

TEST_F(AuditLogTest, DetectsRemovedTail) {
  Sql(db_, "DELETE FROM records WHERE seq=9");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("removed from the end"), std::string::npos) << r.first_problem;
}

TEST_F(AuditLogTest, DetectsReorderedRecords) {
  Sql(db_,
      "UPDATE records SET seq = -1 WHERE seq = 2; UPDATE records SET seq = 2 WHERE seq = 6;"
      "UPDATE records SET seq = 6 WHERE seq = -1;");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("record 2"), std::string::npos) << r.first_problem;
}

TEST_F(AuditLogTest, DetectsBadCheckpointSignature) {
  Sql(db_, "UPDATE checkpoints SET time_ms = time_ms + 1 WHERE size = 8");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("checkpoint at size 8: bad signature"), std::string::npos)
      << r.first_problem;
}

TEST_F(AuditLogTest, DetectsForeignSigningKey) {
  auto other = dir_.path() / "other.pem";
  ASSERT_TRUE(GenerateSigningKey(other.string()).ok());
  auto r = VerifyLog(db_.string(), other.string());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_NE(r->first_problem.find("bad signature"), std::string::npos);
}

TEST_F(AuditLogTest, ListFilters) {
  RecordFilter f;
  f.key_id = "k1";
  auto rs = ListRecords(db_.string(), f);
  ASSERT_TRUE(rs.ok()) << rs.error().message();
  EXPECT_EQ(rs->size(), 5u);
  f = {};
  f.data_class = "secret";
  f.limit = 2;
  rs = ListRecords(db_.string(), f);
  ASSERT_TRUE(rs.ok());
  ASSERT_EQ(rs->size(), 2u);
  EXPECT_EQ((*rs)[0].seq, 6u);
  EXPECT_EQ((*rs)[1].seq, 8u);
}

TEST(AuditLog, ConcurrentAppendsGetDistinctSequenceNumbers) {
  TempDir dir("audit-mt");
  auto db = dir.path() / "a.db";
  {
    OpenOptions o;
    o.checkpoint_every = 7;
    auto log = AuditLog::Open(db.string(), o);
    ASSERT_TRUE(log.ok());
    std::vector<std::thread> threads;
    std::vector<std::vector<std::uint64_t>> seqs(8);
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 25; ++i) {
          auto s = (*log)->Append(Sample(i));
          if (s.ok()) seqs[t].push_back(*s);
        }
      });
    for (auto& t : threads) t.join();
    std::set<std::uint64_t> all;
    for (const auto& v : seqs) all.insert(v.begin(), v.end());
    EXPECT_EQ(all.size(), 200u);
    EXPECT_EQ(*all.rbegin(), 199u);
  }
  auto r = VerifyLog(db.string());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok) << r->first_problem;
  EXPECT_EQ(r->records, 200u);
}

TEST(AuditLog, RejectsNonAuditDatabaseAndBadKey) {
  TempDir dir("audit-bad");
  auto db = dir.path() / "other.db";
  Sql(db, "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT); INSERT INTO meta VALUES('format','x')");
  EXPECT_FALSE(AuditLog::Open(db.string()).ok());
  EXPECT_FALSE(VerifyLog(db.string()).ok());
  auto key = dir.path() / "bad.pem";
  std::FILE* f = std::fopen(key.c_str(), "w");
  std::fputs("not a key", f);
  std::fclose(f);
  OpenOptions o;
  o.signing_key_pem_path = key.string();
  EXPECT_FALSE(AuditLog::Open((dir.path() / "new.db").string(), o).ok());
  EXPECT_EQ(VerifyLog((dir.path() / "missing.db").string()).error().code(), StatusCode::kNotFound);
}

// The model name and other fields of a record come from clients: `audit show` escapes them.
TEST(AuditShowCli, ClientChosenFieldsAreEscaped) {
  TempDir dir("audit-show");
  std::string path = (dir.path() / "a.db").string();
  {
    auto log = AuditLog::Open(path);
    ASSERT_TRUE(log.ok()) << log.error().message();
    AuditRecord r = Sample(1);
    r.model = "gpt\x1b[2J\x1b[1;1H\rforged";
    r.actions = {"block: \x1b]0;title\x07"};
    ASSERT_TRUE((*log)->Append(r).ok());
  }
  std::string cmd = std::string(AIRLOCK_EXE) + " audit show --log " + path + " 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_NE(out.find("model=gpt\\x1b[2J\\x1b[1;1H\\rforged"), std::string::npos) << out;
  EXPECT_NE(out.find("block: \\x1b]0;title\\x07"), std::string::npos) << out;
}

}  // namespace
}  // namespace airlock::audit
