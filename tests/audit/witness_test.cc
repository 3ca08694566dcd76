// The tlog-witness: every answer of add-checkpoint (tlog-witness status codes) against hostile
// requests, persistence across restarts; then the whole chain with real processes: `airlock serve`
// publishes checkpoints to an `airlock audit witness` in a second process and to an anchor file,
// is killed with SIGKILL while requests are in flight, and the witness's checkpoint still verifies
// against the recovered log (and exposes a truncation of it).
#include "audit/witness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "audit/merkle.h"
#include "audit/note.h"
#include "serve_process.h"
#include "test_util.h"

namespace airlock::audit {
namespace {

using airlock::testing::RunAirlock;
using airlock::testing::ServeArgs;
using airlock::testing::ServeProcess;

using airlock::testing::TempDir;

constexpr const char* kOrigin = "log.test/airlock-audit";

class WitnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(GenerateEd25519Key((dir_.path() / "log.pem").string()).ok());
    ASSERT_TRUE(GenerateEd25519Key((dir_.path() / "w.pem").string()).ok());
    log_ = *NoteSigner::Load((dir_.path() / "log.pem").string(), kOrigin);
    witness_key_ = *NoteSigner::Load((dir_.path() / "w.pem").string(), "witness.test/w1");
    for (int i = 0; i < 64; ++i) leaves_.push_back(LeafHash("record " + std::to_string(i)));
    witness_ = OpenWitness();
  }
  std::unique_ptr<Witness> OpenWitness() {
    WitnessOptions o;
    o.state_dir = (dir_.path() / "state").string();
    o.logs.push_back(log_->Verifier());
    o.signer = witness_key_;
    auto w = Witness::Open(std::move(o));
    EXPECT_TRUE(w.ok()) << w.error().message();
    return w.ok() ? std::move(*w) : nullptr;
  }
  std::string SignedCheckpoint(std::uint64_t size, const NoteSigner& signer) {
    Note n;
    n.body = CheckpointBody({kOrigin, size, MerkleRoot(std::span(leaves_).subspan(0, size)), {}});
    n.signatures.push_back(*signer.Sign(n.body));
    return FormatNote(n);
  }
  std::string Request(std::uint64_t old_size, std::uint64_t size) {
    std::string r = "old " + std::to_string(old_size) + "\n";
    for (const auto& h : ConsistencyProof(leaves_, old_size, size))
      r += Base64Encode(std::string_view(reinterpret_cast<const char*>(h.data()), 32)) + "\n";
    return r + "\n" + SignedCheckpoint(size, *log_);
  }
  TempDir dir_{"witness"};
  std::shared_ptr<NoteSigner> log_, witness_key_;
  std::vector<Digest256> leaves_;
  std::unique_ptr<Witness> witness_;
};

TEST_F(WitnessTest, CosignsTheFirstCheckpointAndConsistentUpdates) {
  WitnessReply r = witness_->AddCheckpoint(Request(0, 5));
  ASSERT_EQ(r.status, 200) << r.body;
  auto note = ParseNote(SignedCheckpoint(5, *log_) + r.body);
  ASSERT_TRUE(note.ok()) << note.error().message();
  ASSERT_EQ(note->signatures.size(), 2u);
  EXPECT_TRUE(VerifyCosignature(*note, note->signatures[1], witness_key_->Verifier(0x04)));
  r = witness_->AddCheckpoint(Request(5, 13));
  EXPECT_EQ(r.status, 200) << r.body;
  r = witness_->AddCheckpoint(Request(13, 13));  // the same checkpoint again
  EXPECT_EQ(r.status, 200) << r.body;
  // The stored note carries the log signature and the cosignature, and survives a restart.
  witness_ = OpenWitness();
  auto stored = ParseNote(witness_->Latest(kOrigin));
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(ParseCheckpointBody(stored->body)->size, 13u);
  EXPECT_NE(FindValidSignature(*stored, log_->Verifier()), nullptr);
  EXPECT_EQ(witness_->AddCheckpoint(Request(5, 20)).status, 409);  // it remembers 13
}

TEST_F(WitnessTest, WrongOldSizeAnswers409WithItsSize) {
  ASSERT_EQ(witness_->AddCheckpoint(Request(0, 8)).status, 200);
  WitnessReply r = witness_->AddCheckpoint(Request(3, 10));
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.content_type, "text/x.tlog.size");
  EXPECT_EQ(r.body, "8\n");
}

// Attack: a rolled-back or rewritten log presents a checkpoint that does not extend the witnessed
// one.
TEST_F(WitnessTest, RewrittenLogIsRefused) {
  ASSERT_EQ(witness_->AddCheckpoint(Request(0, 8)).status, 200);
  std::string good = Request(8, 12);
  leaves_[3] = LeafHash("rewritten");  // the log now tells another story about record 3
  WitnessReply r = witness_->AddCheckpoint(Request(8, 12));
  EXPECT_EQ(r.status, 422) << r.body;
  // Same size, another root: conflict.
  r = witness_->AddCheckpoint(Request(8, 8));
  EXPECT_EQ(r.status, 409) << r.body;
  // Rolling back below the witnessed size is refused too.
  EXPECT_EQ(witness_->AddCheckpoint(Request(8, 6)).status, 400);
  EXPECT_EQ(witness_->AddCheckpoint(good).status, 200);
}

TEST_F(WitnessTest, UnknownOriginAndForgedSignatureAreRefused) {
  auto other = NoteSigner::Load((dir_.path() / "w.pem").string(), kOrigin);  // wrong key
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(witness_->AddCheckpoint("old 0\n\n" + SignedCheckpoint(4, **other)).status, 403);
  auto elsewhere = NoteSigner::Load((dir_.path() / "log.pem").string(), "other.test/log");
  Note n;
  n.body = CheckpointBody({"other.test/log", 1, leaves_[0], {}});
  n.signatures.push_back(*(*elsewhere)->Sign(n.body));
  EXPECT_EQ(witness_->AddCheckpoint("old 0\n\n" + FormatNote(n)).status, 404);
  EXPECT_TRUE(witness_->Latest(kOrigin).empty());
}

TEST_F(WitnessTest, MalformedRequestsAnswer400) {
  std::string cp = SignedCheckpoint(4, *log_);
  std::string proof_line = std::string(43, 'A') + "=\n";
  std::string too_many = "old 0\n";
  for (int i = 0; i < 64; ++i) too_many += proof_line;
  for (const std::string& bad :
       {std::string(""), "new 0\n\n" + cp, "old 01\n\n" + cp, "old -1\n\n" + cp, "old 0\n" + cp,
        "old 0\nnot base64\n\n" + cp, "old 0\nAAAA\n\n" + cp, too_many + "\n" + cp,
        std::string("old 0\n\nnot a note\n"), std::string(kMaxWitnessRequestBytes + 1, 'o')})
    EXPECT_EQ(witness_->AddCheckpoint(bad).status, 400) << bad.substr(0, 40);
  EXPECT_EQ(witness_->AddCheckpoint("old 0\n" + proof_line + "\n" + cp).status, 422);
}

// ---- real processes ----

TEST(WitnessProcess, WitnessCheckpointVerifiesAfterTheGatewayIsKilledMidWrite) {
  TempDir dir("witness-proc");
  auto p = [&](const char* name) { return (dir.path() / name).string(); };
  ASSERT_EQ(RunAirlock("audit keygen " + p("log.pem")).first, 0);
  ASSERT_EQ(RunAirlock("audit keygen " + p("w.pem")).first, 0);
  const std::string origin = "gw.test/airlock-audit";

  ServeProcess witness({"audit", "witness", "--state", p("wstate"), "--key", p("w.pem"), "--name",
                        "witness.test/w1", "--log", origin + "=" + p("log.pem.pub"), "--port",
                        "0"});
  const int wport = witness.port();
  ASSERT_GT(wport, 0) << "witness did not start";
  std::string cosig_line = witness.ReadLine();
  ASSERT_EQ(cosig_line.rfind("cosignature key: ", 0), 0u) << cosig_line;
  const std::string witness_vkey = cosig_line.substr(17);

  std::ofstream(p("policy.toml")) << "[audit]\npath='" << p("audit.db") << "'\nsigning_key='"
                                  << p("log.pem") << "'\norigin='" << origin
                                  << "'\ncheckpoint_every=3\nanchor_files=['" << p("anchor.notes")
                                  << "']\nwitnesses=['http://127.0.0.1:" << wport
                                  << "']\nwitness_keys=['" << witness_vkey
                                  << "']\n[server]\nkeys_db='" << p("keys.db") << "'\n";
  ServeProcess gateway(ServeArgs(p("policy.toml")));
  const int gport = gateway.port();
  ASSERT_GT(gport, 0) << "gateway did not start";

  // Requests (each is audited: an unknown model answers 404) from 4 clients until the witness
  // holds a checkpoint of at least 30 records, then SIGKILL while requests are still in flight.
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", gport);
      client.set_read_timeout(5, 0);
      while (!stop.load())
        if (!client.Post("/v1/chat/completions",
                         R"({"model":"none","messages":[{"role":"user","content":"hi"}]})",
                         "application/json"))
          return;  // the gateway is gone
    });
  httplib::Client wclient("127.0.0.1", wport);
  std::string witnessed;
  for (int i = 0; i < 2400; ++i) {  // up to 2 minutes on a loaded machine
    auto r = wclient.Get("/checkpoint?origin=" + origin);
    if (r && r->status == 200) {
      auto n = ParseNote(r->body);
      if (n.ok() && ParseCheckpointBody(n->body)->size >= 30) {
        witnessed = r->body;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  gateway.Stop(SIGKILL);
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_FALSE(witnessed.empty()) << "the witness never got a checkpoint of 30 records";
  // The witness may have accepted more after we looked: take its latest.
  auto latest = wclient.Get("/checkpoint?origin=" + origin);
  ASSERT_TRUE(latest && latest->status == 200);
  std::ofstream(p("witnessed.checkpoint")) << latest->body;
  auto note = ParseNote(latest->body);
  ASSERT_TRUE(note.ok());
  auto wv = ParseVerifierKey(witness_vkey);
  ASSERT_TRUE(wv.ok());
  bool cosigned = false;
  for (const auto& s : note->signatures) cosigned |= VerifyCosignature(*note, s, *wv);
  EXPECT_TRUE(cosigned) << latest->body;
  const std::uint64_t witnessed_size = ParseCheckpointBody(note->body)->size;

  // The recovered log extends the witness's checkpoint and every checkpoint in the anchor file.
  auto v = RunAirlock("audit verify --log " + p("audit.db") + " --public-key " + p("log.pem.pub") +
                      " --trusted-checkpoint " + p("witnessed.checkpoint") +
                      " --trusted-checkpoint " + p("anchor.notes"));
  // Killed mid-write, the gateway may leave records no signed checkpoint covers yet: those are
  // reported unverified (exit 2, INCOMPLETE), everything before them verified.
  const bool tail = v.second.rfind("INCOMPLETE " + origin, 0) == 0;
  EXPECT_EQ(v.first, tail ? 2 : 0) << v.second;
  EXPECT_TRUE(tail || v.second.rfind("OK " + origin, 0) == 0) << v.second;
  EXPECT_EQ(v.second.find(" 0 trusted checkpoint"), std::string::npos) << v.second;
  std::printf("%s", v.second.c_str());

  // The owner truncates the log behind the witness's back (records and their checkpoints):
  // the file alone still verifies, against the witness it does not.
  const std::string cut = std::to_string(witnessed_size - 2);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(p("audit.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         ("DELETE FROM records WHERE seq >= " + cut +
                          "; DELETE FROM checkpoints WHERE size > " + cut)
                             .c_str(),
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  v = RunAirlock("audit verify --log " + p("audit.db") + " --public-key " + p("log.pem.pub"));
  EXPECT_TRUE(v.first == 0 || v.first == 2) << v.second;  // intact, or a tail left unverified
  v = RunAirlock("audit verify --log " + p("audit.db") + " --public-key " + p("log.pem.pub") +
                 " --trusted-checkpoint " + p("witnessed.checkpoint"));
  EXPECT_EQ(v.first, 1) << v.second;
  EXPECT_NE(v.second.find("tail truncation"), std::string::npos) << v.second;
  // Asking the witness directly gives the same answer.
  v = RunAirlock("audit verify --log " + p("audit.db") + " --public-key " + p("log.pem.pub") +
                 " --trusted-checkpoint 'http://127.0.0.1:" + std::to_string(wport) +
                 "/checkpoint?origin=" + origin + "'");
  EXPECT_EQ(v.first, 1) << v.second;
  EXPECT_NE(v.second.find("tail truncation"), std::string::npos) << v.second;
  EXPECT_EQ(airlock::testing::ExitCode(witness.Stop(SIGTERM)), 0);
}

}  // namespace
}  // namespace airlock::audit
