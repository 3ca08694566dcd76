// Merkle log: RFC 6962 hashing, incremental roots and consistency proofs, durability across
// reopen, signed-note checkpoints, and detection of changed, removed, reordered records, of
// swapped or missing keys, and (with a saved checkpoint) of tail truncation and rewrites.
// Every attack runs on a real log written by AuditLog, then altered the way an owner of the file
// (who also holds the signing key beside it) would alter it.
#include "audit/audit_log.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "audit/merkle.h"
#include "audit/note.h"
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

TEST(Merkle, ConsistencyProofsVerifyForEveryPairOfSizes) {
  std::vector<Digest256> leaves;
  for (int i = 0; i < 40; ++i) leaves.push_back(LeafHash("leaf " + std::to_string(i)));
  for (std::uint64_t n = 1; n <= leaves.size(); ++n) {
    Digest256 new_root = MerkleRoot(std::span(leaves).subspan(0, n));
    for (std::uint64_t m = 1; m <= n; ++m) {
      Digest256 old_root = MerkleRoot(std::span(leaves).subspan(0, m));
      auto proof = ConsistencyProof(leaves, m, n);
      ASSERT_TRUE(VerifyConsistency(m, n, old_root, new_root, proof)) << m << " -> " << n;
      if (m == n) continue;
      // Any changed hash, a wrong root or a dropped hash must fail.
      for (std::size_t i = 0; i < proof.size(); ++i) {
        auto bad = proof;
        bad[i][0] ^= 1;
        EXPECT_FALSE(VerifyConsistency(m, n, old_root, new_root, bad)) << m << " " << n << " " << i;
      }
      Digest256 wrong = old_root;
      wrong[31] ^= 0x80;
      EXPECT_FALSE(VerifyConsistency(m, n, wrong, new_root, proof));
      EXPECT_FALSE(VerifyConsistency(m, n, old_root, wrong, proof));
      if (!proof.empty()) {
        auto shorter = proof;
        shorter.pop_back();
        EXPECT_FALSE(VerifyConsistency(m, n, old_root, new_root, shorter));
      }
      // Against the real root of a larger tree the proof for n is no proof.
      if (n < leaves.size()) {
        Digest256 larger = MerkleRoot(std::span(leaves).subspan(0, n + 1));
        EXPECT_FALSE(VerifyConsistency(m, n + 1, old_root, larger, proof)) << m << " " << n;
      }
    }
  }
}

TEST(Merkle, ConsistencyProofMatchesRfc6962Example) {
  // RFC 6962 section 2.1.3: for leaves d0..d6, PROOF(3, D[7]) = [c, d, g, l] where c and d are the
  // leaves d2 and d3, g = MTH(D[0:2]) and l = MTH(D[4:7]); PROOF(4, D[7]) = [l].
  std::vector<Digest256> d;
  for (int i = 0; i < 7; ++i) d.push_back(LeafHash("d" + std::to_string(i)));
  Digest256 g = NodeHash(d[0], d[1]);
  Digest256 l = NodeHash(NodeHash(d[4], d[5]), d[6]);
  auto proof = ConsistencyProof(d, 3, 7);
  ASSERT_EQ(proof.size(), 4u);
  EXPECT_EQ(proof[0], d[2]);
  EXPECT_EQ(proof[1], d[3]);
  EXPECT_EQ(proof[2], g);
  EXPECT_EQ(proof[3], l);
  auto p47 = ConsistencyProof(d, 4, 7);
  ASSERT_EQ(p47.size(), 1u);
  EXPECT_EQ(p47[0], l);
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
  VerifyReport Verify(const std::vector<std::string>& trusted_notes = {},
                      const std::filesystem::path& pinned = {}) {
    VerifyOptions o;
    auto key = LoadNoteVerifier((pinned.empty() ? PubPath() : pinned).string());
    EXPECT_TRUE(key.ok()) << key.error().message();
    if (key.ok()) o.public_keys.push_back(*key);
    for (const auto& t : trusted_notes) {
      auto n = ParseNote(t);
      EXPECT_TRUE(n.ok()) << n.error().message();
      if (n.ok()) o.trusted_checkpoints.push_back(*n);
    }
    auto r = VerifyLog(db_.string(), o);
    EXPECT_TRUE(r.ok()) << r.error().message();
    return r.ok() ? *r : VerifyReport{};
  }
  std::filesystem::path PubPath() const { return key_.string() + ".pub"; }
  std::string LatestNote() {
    auto c = ReadLatestCheckpoint(db_.string());
    EXPECT_TRUE(c.ok());
    return c.ok() ? c->note : "";
  }
  std::string Origin() {
    auto c = ReadLatestCheckpoint(db_.string());
    return c.ok() ? c->origin : "";
  }
  std::string NoteAt(std::uint64_t size) {
    sqlite3* h = nullptr;
    EXPECT_EQ(sqlite3_open(db_.c_str(), &h), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(h, "SELECT note FROM checkpoints WHERE size = ?", -1, &s, nullptr);
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(size));
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW)
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(h);
    return out;
  }
  void SetNote(std::uint64_t size, const std::string& note) {
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(db_.c_str(), &h), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(h, "UPDATE checkpoints SET note = ? WHERE size = ?", -1, &s, nullptr);
    sqlite3_bind_text(s, 1, note.data(), static_cast<int>(note.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(size));
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(h);
  }
  // What a writer of the file without the signing key can do: change record `changed` (its
  // status becomes 299), then recompute every leaf hash and chain link (no checkpoint). The new
  // leaf hashes go to `leaves` when given.
  void Rechain(std::uint64_t changed, std::vector<Digest256>* leaves = nullptr) {
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(db_.c_str(), &h), SQLITE_OK);
    std::vector<std::string> records;
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(h, "SELECT data FROM records ORDER BY seq", -1, &s, nullptr);
    while (sqlite3_step(s) == SQLITE_ROW)
      records.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    sqlite3_finalize(s);
    Digest256 prev{};
    for (std::uint64_t i = 0; i < records.size(); ++i) {
      auto j = nlohmann::json::parse(records[i]);
      if (i == changed) j["status"] = 299;
      j["prev"] = core::ToHex(prev);
      std::string data = j.dump();
      Digest256 leaf = LeafHash(data);
      sqlite3_prepare_v2(h, "UPDATE records SET data = ?, leaf_hash = ? WHERE seq = ?", -1, &s,
                         nullptr);
      sqlite3_bind_text(s, 1, data.data(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
      sqlite3_bind_blob(s, 2, leaf.data(), 32, SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(i));
      ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
      sqlite3_finalize(s);
      if (leaves) leaves->push_back(leaf);
      prev = leaf;
    }
    sqlite3_close(h);
  }
  // What an owner of the file with a signing key can do: Rechain, then recompute every
  // checkpoint root and note signature.
  void RewriteAndResign(const std::filesystem::path& key, std::uint64_t changed) {
    auto signer = NoteSigner::Load(key.string(), Origin());
    ASSERT_TRUE(signer.ok()) << signer.error().message();
    std::vector<Digest256> leaves;
    Rechain(changed, &leaves);
    CompactRange range;
    std::map<std::uint64_t, Digest256> roots;
    roots[0] = EmptyTreeHash();
    for (const Digest256& leaf : leaves) {
      range.Append(leaf);
      roots[range.size()] = range.Root();
    }
    for (std::uint64_t size : {0u, 4u, 8u, 10u}) {
      Note note;
      note.body = CheckpointBody({Origin(), size, roots[size], {}});
      note.signatures.push_back(*(*signer)->Sign(note.body));
      SetNote(size, FormatNote(note));
      sqlite3* h = nullptr;
      sqlite3_stmt* s = nullptr;
      ASSERT_EQ(sqlite3_open(db_.c_str(), &h), SQLITE_OK);
      sqlite3_prepare_v2(h, "UPDATE checkpoints SET root = ? WHERE size = ?", -1, &s, nullptr);
      sqlite3_bind_blob(s, 1, roots[size].data(), 32, SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(size));
      ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
      sqlite3_finalize(s);
      sqlite3_close(h);
    }
  }
  TempDir dir_{"audit"};
  std::filesystem::path key_, db_;
};

TEST_F(AuditLogTest, IntactLogVerifies) {
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.first_problem;
  EXPECT_EQ(r.records, 10u);
  EXPECT_EQ(r.checkpoints, 4u);  // sizes 0 (created), 4, 8 and the final 10
  EXPECT_EQ(r.signed_checkpoints, 4u);
  EXPECT_EQ(r.unsigned_tail, 0u);
  EXPECT_TRUE(r.complete);
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
  // Flip one bit of the Ed25519 signature inside the stored note.
  auto note = ParseNote(NoteAt(8));
  ASSERT_TRUE(note.ok());
  note->signatures[0].signature[10] ^= 1;
  SetNote(8, FormatNote(*note));
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("checkpoint at size 8 is not signed by the pinned public key"),
            std::string::npos)
      << r.first_problem;
}

TEST_F(AuditLogTest, DetectsForeignSigningKey) {
  auto other = dir_.path() / "other.pem";
  ASSERT_TRUE(GenerateSigningKey(other.string()).ok());
  VerifyReport r = Verify({}, other.string() + ".pub");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("not signed by the pinned public key"), std::string::npos)
      << r.first_problem;
}

TEST_F(AuditLogTest, CheckpointsAreSignedNotesWithTheLogOrigin) {
  std::string text = LatestNote();
  auto note = ParseNote(text);
  ASSERT_TRUE(note.ok()) << note.error().message();
  auto cp = ParseCheckpointBody(note->body);
  ASSERT_TRUE(cp.ok());
  EXPECT_EQ(cp->origin, Origin());
  EXPECT_EQ(cp->size, 10u);
  ASSERT_EQ(note->signatures.size(), 1u);
  EXPECT_EQ(note->signatures[0].name, Origin());
  auto pub = LoadNoteVerifier(PubPath().string());
  ASSERT_TRUE(pub.ok());
  pub->name = Origin();
  EXPECT_EQ(note->signatures[0].key_id, pub->key_id());
  EXPECT_NE(FindValidSignature(*note, *pub), nullptr);
  // The text round-trips byte for byte.
  EXPECT_EQ(FormatNote(*note), text);
}

// Attack: verify without pinning a key (the log's own key table could be the attacker's).
TEST_F(AuditLogTest, VerifyWithoutPinnedKeyIsRefused) {
  auto r = VerifyLog(db_.string(), VerifyOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("no pinned public key"), std::string::npos);
}

// Attack: swap in an attacker's key and re-sign every checkpoint (and change a record).
TEST_F(AuditLogTest, KeySwapAndResignFails) {
  auto attacker = dir_.path() / "attacker.pem";
  ASSERT_TRUE(GenerateSigningKey(attacker.string()).ok());
  RewriteAndResign(attacker, 5);
  // Against the attacker's own key everything is consistent: only the pinned key catches it.
  EXPECT_TRUE(Verify({}, attacker.string() + ".pub").ok);
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("checkpoint at size 0 is not signed by the pinned public key"),
            std::string::npos)
      << r.first_problem;
  EXPECT_NE(r.first_problem.find("the signing key was swapped"), std::string::npos);
}

// Attack: strip the signatures (the "missing key" downgrade) or drop the checkpoints altogether.
TEST_F(AuditLogTest, MissingSignaturesFail) {
  Sql(db_, "UPDATE checkpoints SET note = NULL");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("checkpoint at size 0 has no signed note"), std::string::npos)
      << r.first_problem;
}

TEST_F(AuditLogTest, RemovedCheckpointsFail) {
  Sql(db_, "DELETE FROM checkpoints");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("none covers its 10 record(s): checkpoints were removed"),
            std::string::npos)
      << r.first_problem;
}

// Attack (red team): every record and every checkpoint deleted. A log starts with a signed
// checkpoint of its empty tree, so an empty file without one lost it.
TEST_F(AuditLogTest, EverythingDeletedFails) {
  Sql(db_, "DELETE FROM records; DELETE FROM checkpoints");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("the log has no checkpoint"), std::string::npos)
      << r.first_problem;
}

// Attack (red team): someone who can write the file but not sign rewrites a record, recomputes
// every leaf hash and chain link (they use no key), and deletes the checkpoints that covered the
// records, keeping the signed empty-tree one. Nothing signed vouches for the records any more:
// not verified (incomplete), never plainly intact.
TEST_F(AuditLogTest, RecordsRewrittenBehindDeletedCheckpointsAreNotVerified) {
  Rechain(4);
  Sql(db_, "DELETE FROM checkpoints WHERE size > 0");
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.first_problem;  // nothing the file holds shows the rewrite...
  EXPECT_FALSE(r.complete);              // ...and nothing signed covers it
  EXPECT_EQ(r.unsigned_tail, 10u);
}

// Attack (red team): a forged record appended, correctly chained, after the last checkpoint.
TEST_F(AuditLogTest, RecordAppendedAfterTheLastCheckpointIsNotVerified) {
  ASSERT_TRUE(Verify().complete);
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &h), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, "SELECT data, leaf_hash FROM records WHERE seq = 9", -1, &s, nullptr);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  auto j = nlohmann::json::parse(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  Digest256 prev{};
  std::memcpy(prev.data(), sqlite3_column_blob(s, 1), 32);
  sqlite3_finalize(s);
  j["seq"] = 10;
  j["prev"] = core::ToHex(prev);
  j["key_id"] = "alice";
  std::string data = j.dump();
  Digest256 leaf = LeafHash(data);
  sqlite3_prepare_v2(h, "INSERT INTO records(seq, data, leaf_hash) VALUES(10, ?, ?)", -1, &s,
                     nullptr);
  sqlite3_bind_text(s, 1, data.data(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
  sqlite3_bind_blob(s, 2, leaf.data(), 32, SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
  sqlite3_finalize(s);
  sqlite3_close(h);
  VerifyReport r = Verify({LatestNote()});
  EXPECT_TRUE(r.ok) << r.first_problem;
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.unsigned_tail, 1u);
  // `airlock audit verify` says so and exits 2 (incomplete), not 0.
  auto [code, out] = airlock::testing::RunAirlock("audit verify --log " + db_.string() +
                                                  " --public-key " + PubPath().string());
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("INCOMPLETE"), std::string::npos) << out;
  EXPECT_NE(out.find("10 of 11 records verified"), std::string::npos) << out;
  EXPECT_EQ(out.find("OK "), std::string::npos) << out;
}

// Attack: delete the newest records together with their checkpoints. The file alone cannot show
// it; a checkpoint saved earlier (anchor, witness, `audit checkpoint`) does.
TEST_F(AuditLogTest, TailTruncationWithSavedCheckpointFails) {
  std::string saved = LatestNote();
  Sql(db_, "DELETE FROM records WHERE seq >= 8; DELETE FROM checkpoints WHERE size > 8");
  EXPECT_TRUE(Verify().ok) << "the truncated file is self-consistent";
  VerifyReport r = Verify({saved});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("trusted checkpoint at size 10 but the log holds only 8 records"),
            std::string::npos)
      << r.first_problem;
  EXPECT_NE(r.first_problem.find("tail truncation"), std::string::npos);
}

// Attack: the machine owner (who holds the signing key) rewrites a record behind a published
// checkpoint and recomputes every hash, chain link, root and signature.
TEST_F(AuditLogTest, RewriteAfterCheckpointFails) {
  std::string saved = LatestNote();
  RewriteAndResign(key_, 5);
  EXPECT_TRUE(Verify().ok) << "the rewritten file is self-consistent";
  VerifyReport r = Verify({saved});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("trusted checkpoint at size 10: the log does not extend it"),
            std::string::npos)
      << r.first_problem;
}

TEST_F(AuditLogTest, LogExtendingSavedCheckpointsVerifies) {
  std::string saved = LatestNote();
  {
    OpenOptions o;
    o.signing_key_pem_path = key_.string();
    auto log = AuditLog::Open(db_.string(), o);
    ASSERT_TRUE(log.ok());
    for (int i = 10; i < 17; ++i) ASSERT_TRUE((*log)->Append(Sample(i)).ok());
  }
  VerifyReport r = Verify({saved, LatestNote()});
  EXPECT_TRUE(r.ok) << r.first_problem;
  EXPECT_EQ(r.trusted_checked, 2u);
  EXPECT_EQ(r.records, 17u);
}

TEST_F(AuditLogTest, TrustedCheckpointSignedByAnotherKeyFails) {
  auto attacker = dir_.path() / "attacker.pem";
  ASSERT_TRUE(GenerateSigningKey(attacker.string()).ok());
  auto signer = NoteSigner::Load(attacker.string(), Origin());
  ASSERT_TRUE(signer.ok());
  Note forged;
  forged.body = ParseNote(LatestNote())->body;
  forged.signatures.push_back(*(*signer)->Sign(forged.body));
  VerifyReport r = Verify({FormatNote(forged)});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.first_problem.find("trusted checkpoint at size 10 is not signed by the pinned"),
            std::string::npos)
      << r.first_problem;
}

TEST_F(AuditLogTest, OriginIsFixedAtCreation) {
  OpenOptions o;
  o.signing_key_pem_path = key_.string();
  o.origin = "another.example/log";
  auto log = AuditLog::Open(db_.string(), o);
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.error().message().find("a log's origin never changes"), std::string::npos);
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
  auto key = dir.path() / "k.pem";
  {
    OpenOptions o;
    o.signing_key_pem_path = key.string();
    o.create_signing_key = true;
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
  VerifyOptions vo;
  vo.public_keys.push_back(*LoadNoteVerifier(key.string() + ".pub"));
  auto r = VerifyLog(db.string(), vo);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok) << r->first_problem;
  EXPECT_EQ(r->records, 200u);
}

// The tree size a checkpoint note signs (its second line).
std::uint64_t NoteSize(const std::string& note) {
  std::size_t a = note.find('\n');
  if (a == std::string::npos) return ~0ull;
  return std::strtoull(note.c_str() + a + 1, nullptr, 10);
}

// Regression (the group commit is led by an appending thread, not a writer thread): the thread
// left over only signs an unsigned tail once no record came for checkpoint_idle_ms, and does it
// again for a later tail. Waits are bounded (30 s); nothing depends on how fast it happens.
TEST(AuditLog, IdleTailIsSignedAfterEachQuietSpell) {
  TempDir dir("audit-idle");
  auto db = dir.path() / "a.db";
  OpenOptions o;
  o.signing_key_pem_path = (dir.path() / "k.pem").string();
  o.create_signing_key = true;
  o.checkpoint_every = 1000;
  o.checkpoint_idle_ms = 10;
  auto log = AuditLog::Open(db.string(), o);
  ASSERT_TRUE(log.ok()) << log.error().message();
  auto wait_for_size = [&](std::uint64_t size) {
    for (int i = 0; i < 3000 && NoteSize((*log)->LatestCheckpointNote()) != size; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return NoteSize((*log)->LatestCheckpointNote());
  };
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*log)->Append(Sample(i)).ok());
  EXPECT_EQ(wait_for_size(3), 3u);
  for (int i = 3; i < 5; ++i) ASSERT_TRUE((*log)->Append(Sample(i)).ok());
  EXPECT_EQ(wait_for_size(5), 5u);
}

// Many threads appending at once share commits; every record still gets its own sequence number
// and the chain verifies with the command an auditor runs.
TEST(AuditLog, ConcurrentAppendsVerifyWithTheCli) {
  TempDir dir("audit-cli");
  auto db = dir.path() / "a.db";
  auto key = dir.path() / "k.pem";
  constexpr int kThreads = 16, kEach = 20;
  {
    OpenOptions o;
    o.signing_key_pem_path = key.string();
    o.create_signing_key = true;
    o.checkpoint_every = 9;
    o.fsync = true;
    auto log = AuditLog::Open(db.string(), o);
    ASSERT_TRUE(log.ok()) << log.error().message();
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i)
          if ((*log)->Append(Sample(t * kEach + i)).ok()) ok++;
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), kThreads * kEach);
    EXPECT_EQ((*log)->size(), static_cast<std::uint64_t>(kThreads * kEach));
  }
  auto [rc, out] = airlock::testing::RunAirlock("audit verify --log " + db.string() +
                                                " --public-key " + key.string() + ".pub 2>&1");
  EXPECT_EQ(rc, 0) << out;
  auto all = ListRecords(db.string(), RecordFilter{.limit = 1000});
  ASSERT_TRUE(all.ok());
  std::set<std::string> ids;
  for (const auto& r : *all) ids.insert(nlohmann::json::parse(r.json)["request_id"]);
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads * kEach));
}

TEST(AuditLog, RejectsNonAuditDatabaseAndBadKey) {
  TempDir dir("audit-bad");
  auto db = dir.path() / "other.db";
  Sql(db, "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT); INSERT INTO meta VALUES('format','x')");
  auto good_key = dir.path() / "good.pem";
  ASSERT_TRUE(GenerateSigningKey(good_key.string()).ok());
  OpenOptions with_key;
  with_key.signing_key_pem_path = good_key.string();
  EXPECT_FALSE(AuditLog::Open(db.string(), with_key).ok());
  VerifyOptions vo;
  vo.public_keys.push_back(*LoadNoteVerifier(good_key.string() + ".pub"));
  EXPECT_FALSE(VerifyLog(db.string(), vo).ok());
  auto key = dir.path() / "bad.pem";
  std::FILE* f = std::fopen(key.c_str(), "w");
  std::fputs("not a key", f);
  std::fclose(f);
  OpenOptions o;
  o.signing_key_pem_path = key.string();
  EXPECT_FALSE(AuditLog::Open((dir.path() / "new.db").string(), o).ok());
  EXPECT_EQ(VerifyLog((dir.path() / "missing.db").string(), vo).error().code(),
            StatusCode::kNotFound);
}

TEST(AuditLog, OpenRequiresASigningKey) {
  TempDir dir("audit-nokey");
  auto db = dir.path() / "a.db";
  auto r = AuditLog::Open(db.string(), OpenOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("no checkpoint signing key"), std::string::npos);
  OpenOptions o;
  o.signing_key_pem_path = (dir.path() / "absent.pem").string();
  r = AuditLog::Open(db.string(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  // With create_signing_key the first start makes both halves.
  o.create_signing_key = true;
  r = AuditLog::Open(db.string(), o);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(std::filesystem::exists(o.signing_key_pem_path));
  EXPECT_TRUE(std::filesystem::exists(o.signing_key_pem_path + ".pub"));
  EXPECT_EQ(std::filesystem::status(o.signing_key_pem_path).permissions() &
                std::filesystem::perms::others_read,
            std::filesystem::perms::none);
}

TEST(AuditLog, RefusesAnEcdsaSigningKey) {
  // Keys from before checkpoints were C2SP notes (ECDSA P-256) cannot sign notes.
  TempDir dir("audit-ec");
  auto key = dir.path() / "ec.pem";
  ASSERT_EQ(std::system(("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " +
                         key.string() + " 2>/dev/null")
                            .c_str()),
            0);
  OpenOptions o;
  o.signing_key_pem_path = key.string();
  auto r = AuditLog::Open((dir.path() / "a.db").string(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("not a PEM Ed25519 private key"), std::string::npos);
}

}  // namespace
// The model name and other fields of a record come from clients: `audit show` escapes them.
TEST(AuditShowCli, ClientChosenFieldsAreEscaped) {
  TempDir dir("audit-show");
  std::string path = (dir.path() / "a.db").string();
  {
    OpenOptions o;
    o.signing_key_pem_path = (dir.path() / "k.pem").string();
    o.create_signing_key = true;
    auto log = AuditLog::Open(path, o);
    ASSERT_TRUE(log.ok()) << log.error().message();
    AuditRecord r = Sample(1);
    r.model = "gpt\x1b[2J\x1b[1;1H\rforged";
    r.actions = {"block: \x1b]0;title\x07"};
    ASSERT_TRUE((*log)->Append(r).ok());
  }
  auto [code, out] = airlock::testing::RunAirlock("audit show --log " + path);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_NE(out.find("model=gpt\\x1b[2J\\x1b[1;1H\\rforged"), std::string::npos) << out;
  EXPECT_NE(out.find("block: \\x1b]0;title\\x07"), std::string::npos) << out;
}

}  // namespace airlock::audit

namespace airlock::audit {
namespace {

// Found by an outside attack: two gateways on one audit log raced for sequence numbers, and the
// records of half the answered requests were dropped. A log has one writer; the second is refused.
TEST_F(AuditLogTest, SecondWriterOnTheSameLogIsRefusedWhileTheFirstIsOpen) {
  OpenOptions o;
  o.signing_key_pem_path = key_.string();
  auto first = AuditLog::Open(db_.string(), o);
  ASSERT_TRUE(first.ok()) << first.error().message();
  auto second = AuditLog::Open(db_.string(), o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.error().message().find("one writer"), std::string::npos);
  first->reset();  // closed: the lock goes with it
  auto third = AuditLog::Open(db_.string(), o);
  EXPECT_TRUE(third.ok()) << third.error().message();
}

}  // namespace
}  // namespace airlock::audit
