#include "audit/audit_log.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "audit/merkle.h"
#include "core/hash.h"

namespace airlock::audit {
namespace {

constexpr const char* kFormat = "airlock-audit-v1";

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Hex(const Digest256& d) { return core::ToHex(d); }

Status SqlError(sqlite3* db, const std::string& what, const std::string& path) {
  return IoError("audit: " + what + " at " + path + ": " + (db ? sqlite3_errmsg(db) : "no db"));
}

// Minimal RAII statement wrapper.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) {
    ok_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) == SQLITE_OK;
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return ok_; }
  sqlite3_stmt* get() { return s_; }
  void Bind(int i, std::int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, const void* p, std::size_t n) {
    sqlite3_bind_blob(s_, i, p, static_cast<int>(n), SQLITE_TRANSIENT);
  }
  int Step() { return sqlite3_step(s_); }
  std::string Text(int col) {
    const unsigned char* t = sqlite3_column_text(s_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(s_, col)) : "";
  }
  std::string Blob(int col) {
    const void* b = sqlite3_column_blob(s_, col);
    return b ? std::string(static_cast<const char*>(b), sqlite3_column_bytes(s_, col)) : "";
  }
  std::int64_t Int(int col) { return sqlite3_column_int64(s_, col); }
  bool IsNull(int col) { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

 private:
  sqlite3_stmt* s_ = nullptr;
  bool ok_ = false;
};

bool Exec(sqlite3* db, const char* sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
}

std::string CheckpointMessage(std::uint64_t size, const Digest256& root, std::int64_t time_ms) {
  return "airlock-audit-checkpoint/v1\n" + std::to_string(size) + "\n" + Hex(root) + "\n" +
         std::to_string(time_ms) + "\n";
}

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

std::string PublicKeyPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  std::string out;
  if (bio && PEM_write_bio_PUBKEY(bio, key) == 1) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    if (n > 0) out.assign(data, static_cast<std::size_t>(n));
  }
  BIO_free(bio);
  return out;
}

Result<std::string> ReadSmallFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("audit: cannot open key at " + path);
  std::string data;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      ::close(fd);
      return IoError("audit: read failed at " + path);
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (data.size() > (64 << 10)) {
      ::close(fd);
      return InvalidArgument("audit: key file too large at " + path);
    }
  }
  ::close(fd);
  return data;
}

// Loads a public key from PEM text holding either a public or a private key.
Pkey LoadPublicKey(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  if (!key) {
    BIO_free(bio);
    bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  }
  BIO_free(bio);
  return Pkey(key);
}

std::string Sign(EVP_PKEY* key, const std::string& message) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::string sig;
  std::size_t len = 0;
  if (ctx && EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) == 1) {
    sig.resize(len);
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) == 1) {
      sig.resize(len);
    } else {
      sig.clear();
    }
  }
  EVP_MD_CTX_free(ctx);
  return sig;
}

bool VerifySignature(EVP_PKEY* key, const std::string& message, const std::string& sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      ctx && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

nlohmann::json ToJson(const AuditRecord& r) {
  nlohmann::json j = {
      {"time_ms", r.time_ms},
      {"request_id", r.request_id},
      {"endpoint", r.endpoint},
      {"key_id", r.key_id},
      {"model", r.model},
      {"upstream", r.upstream},
      {"jurisdiction", r.jurisdiction},
      {"status", r.status},
      {"data_classes", r.data_classes},
      {"actions", r.actions},
      {"prompt_tokens", r.prompt_tokens},
      {"completion_tokens", r.completion_tokens},
      {"prompt_sha256", r.prompt_sha256},
      {"response_sha256", r.response_sha256},
  };
  if (r.prompt_text) j["prompt_text"] = *r.prompt_text;
  if (r.response_text) j["response_text"] = *r.response_text;
  if (r.reasoning_text) j["reasoning_text"] = *r.reasoning_text;
  return j;
}

Result<sqlite3*> OpenDb(const std::string& path, bool read_only) {
  sqlite3* db = nullptr;
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    Status s = read_only && ::access(path.c_str(), F_OK) != 0
                   ? NotFound("audit: no log at " + path)
                   : SqlError(db, "cannot open database", path);
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 5000);
  return db;
}

}  // namespace

struct AuditLog::Impl {
  std::string path;
  OpenOptions options;
  sqlite3* db = nullptr;
  Pkey key;
  std::string key_id;

  // Tree state, guarded by db_mu.
  std::mutex db_mu;
  CompactRange range;
  Digest256 prev{};
  std::uint64_t last_checkpoint = 0;

  // Group commit queue.
  struct Pending {
    nlohmann::json record;
    std::uint64_t seq = 0;
    Status status;
    bool done = false;
  };
  std::mutex q_mu;
  std::condition_variable q_cv;     // wakes the writer
  std::condition_variable done_cv;  // wakes appenders
  std::deque<Pending*> queue;
  bool stop = false;
  std::thread writer;

  ~Impl() {
    if (db) sqlite3_close(db);
  }

  Status CheckpointLocked() {
    std::uint64_t size = range.size();
    if (size == last_checkpoint) return Status::Ok();
    Digest256 root = range.Root();
    std::int64_t t = NowMs();
    std::string sig = key ? Sign(key.get(), CheckpointMessage(size, root, t)) : "";
    if (key && sig.empty()) return Internal("audit: signing failed at checkpoint");
    Stmt s(db, "INSERT INTO checkpoints(size, root, time_ms, signature, key_id) VALUES(?,?,?,?,?)");
    if (!s.ok()) return SqlError(db, "prepare checkpoint", path);
    s.Bind(1, static_cast<std::int64_t>(size));
    s.BindBlob(2, root.data(), root.size());
    s.Bind(3, t);
    if (key) {
      s.BindBlob(4, sig.data(), sig.size());
      s.Bind(5, key_id);
    }
    if (s.Step() != SQLITE_DONE) return SqlError(db, "insert checkpoint", path);
    last_checkpoint = size;
    return Status::Ok();
  }

  // Commits `batch` in one transaction (one fsync); fills seq/status.
  void CommitBatch(std::vector<Pending*>& batch) {
    std::lock_guard<std::mutex> lock(db_mu);
    CompactRange saved_range = range;
    Digest256 saved_prev = prev;
    std::uint64_t saved_cp = last_checkpoint;
    Status status;
    if (!Exec(db, "BEGIN IMMEDIATE")) status = SqlError(db, "begin", path);
    if (status.ok()) {
      Stmt ins(db, "INSERT INTO records(seq, data, leaf_hash) VALUES(?,?,?)");
      if (!ins.ok()) status = SqlError(db, "prepare insert", path);
      for (Pending* p : batch) {
        if (!status.ok()) break;
        p->seq = range.size();
        p->record["seq"] = p->seq;
        p->record["prev"] = Hex(prev);
        std::string data = p->record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        Digest256 leaf = LeafHash(data);
        sqlite3_reset(ins.get());
        ins.Bind(1, static_cast<std::int64_t>(p->seq));
        ins.Bind(2, data);
        ins.BindBlob(3, leaf.data(), leaf.size());
        if (ins.Step() != SQLITE_DONE) {
          status = SqlError(db, "insert record", path);
          break;
        }
        range.Append(leaf);
        prev = leaf;
      }
      if (status.ok() &&
          range.size() - last_checkpoint >= static_cast<std::uint64_t>(options.checkpoint_every))
        status = CheckpointLocked();
      if (status.ok() && !Exec(db, "COMMIT")) status = SqlError(db, "commit", path);
      if (!status.ok()) Exec(db, "ROLLBACK");
    }
    if (!status.ok()) {
      range = saved_range;
      prev = saved_prev;
      last_checkpoint = saved_cp;
    }
    for (Pending* p : batch) p->status = status;
  }

  void WriterLoop() {
    std::unique_lock<std::mutex> lock(q_mu);
    while (true) {
      bool woke = q_cv.wait_for(lock, std::chrono::milliseconds(options.checkpoint_idle_ms),
                                [&] { return stop || !queue.empty(); });
      if (!woke) {  // idle: sign whatever tail is unsigned
        lock.unlock();
        {
          std::lock_guard<std::mutex> g(db_mu);
          if (range.size() != last_checkpoint && Exec(db, "BEGIN IMMEDIATE")) {
            if (CheckpointLocked().ok())
              Exec(db, "COMMIT");
            else
              Exec(db, "ROLLBACK");
          }
        }
        lock.lock();
        continue;
      }
      if (queue.empty() && stop) return;
      std::vector<Pending*> batch(queue.begin(), queue.end());
      queue.clear();
      lock.unlock();
      CommitBatch(batch);
      lock.lock();
      for (Pending* p : batch) p->done = true;
      done_cv.notify_all();
    }
  }
};

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AuditLog::~AuditLog() {
  {
    std::lock_guard<std::mutex> lock(impl_->q_mu);
    impl_->stop = true;
  }
  impl_->q_cv.notify_all();
  if (impl_->writer.joinable()) impl_->writer.join();
  Checkpoint().ok();  // best effort: records are already durable
}

std::uint64_t AuditLog::size() const {
  std::lock_guard<std::mutex> lock(impl_->db_mu);
  return impl_->range.size();
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path,
                                                 const OpenOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->options = options;
  if (impl->options.checkpoint_every < 1) impl->options.checkpoint_every = 1;
  if (impl->options.checkpoint_idle_ms < 10) impl->options.checkpoint_idle_ms = 10;
  if (!options.signing_key_pem_path.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(options.signing_key_pem_path));
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    impl->key.reset(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    if (!impl->key || EVP_PKEY_get_base_id(impl->key.get()) != EVP_PKEY_EC)
      return InvalidArgument("audit: signing key at " + options.signing_key_pem_path +
                             ": not a PEM ECDSA private key");
    impl->key_id = core::ToHex(core::Sha256Of(PublicKeyPem(impl->key.get()))).substr(0, 16);
  }
  AIRLOCK_ASSIGN_OR_RETURN(impl->db, OpenDb(path, false));
  sqlite3* db = impl->db;
  if (!Exec(db, "PRAGMA journal_mode=WAL") ||
      !Exec(db, options.fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") ||
      !Exec(db,
            "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS records(seq INTEGER PRIMARY KEY, data TEXT NOT NULL,"
            " leaf_hash BLOB NOT NULL);"
            "CREATE TABLE IF NOT EXISTS checkpoints(size INTEGER PRIMARY KEY, root BLOB NOT NULL,"
            " time_ms INTEGER NOT NULL, signature BLOB, key_id TEXT);"))
    return SqlError(db, "cannot initialise schema", path);
  {
    Stmt s(db, "SELECT v FROM meta WHERE k='format'");
    if (s.ok() && s.Step() == SQLITE_ROW) {
      if (s.Text(0) != kFormat) return Corrupt("audit: not an airlock audit log at " + path);
    } else {
      Exec(db, "INSERT OR IGNORE INTO meta(k, v) VALUES('format', 'airlock-audit-v1')");
    }
  }
  if (impl->key) {
    // Record every public key that ever signed, so offline verification can find them.
    Stmt s(db, "INSERT OR IGNORE INTO meta(k, v) VALUES(?, ?)");
    s.Bind(1, "public_key:" + impl->key_id);
    s.Bind(2, PublicKeyPem(impl->key.get()));
    if (s.Step() != SQLITE_DONE) return SqlError(db, "store public key", path);
  }
  {
    Stmt s(db, "SELECT seq, leaf_hash FROM records ORDER BY seq");
    if (!s.ok()) return SqlError(db, "read records", path);
    while (s.Step() == SQLITE_ROW) {
      std::string h = s.Blob(1);
      if (h.size() != 32 || static_cast<std::uint64_t>(s.Int(0)) != impl->range.size())
        return Corrupt("audit: log at " + path + " is damaged; run `airlock audit verify`");
      Digest256 d;
      std::memcpy(d.data(), h.data(), 32);
      impl->range.Append(d);
      impl->prev = d;
    }
    Stmt c(db, "SELECT MAX(size) FROM checkpoints");
    if (c.ok() && c.Step() == SQLITE_ROW && !c.IsNull(0))
      impl->last_checkpoint = static_cast<std::uint64_t>(c.Int(0));
  }
  Impl* raw = impl.get();
  impl->writer = std::thread([raw] { raw->WriterLoop(); });
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(impl)));
}

Result<std::uint64_t> AuditLog::Append(const AuditRecord& record) {
  Impl::Pending p;
  p.record = ToJson(record);
  if (record.time_ms == 0) p.record["time_ms"] = NowMs();
  std::unique_lock<std::mutex> lock(impl_->q_mu);
  if (impl_->stop) return Unavailable("audit: log is closing at " + impl_->path);
  impl_->queue.push_back(&p);
  impl_->q_cv.notify_one();
  impl_->done_cv.wait(lock, [&] { return p.done; });
  if (!p.status.ok()) return p.status;
  return p.seq;
}

Status AuditLog::Checkpoint() {
  std::lock_guard<std::mutex> lock(impl_->db_mu);
  if (impl_->range.size() == impl_->last_checkpoint) return Status::Ok();
  if (!Exec(impl_->db, "BEGIN IMMEDIATE")) return SqlError(impl_->db, "begin", impl_->path);
  Status s = impl_->CheckpointLocked();
  if (s.ok() && !Exec(impl_->db, "COMMIT")) s = SqlError(impl_->db, "commit", impl_->path);
  if (!s.ok()) Exec(impl_->db, "ROLLBACK");
  return s;
}

Result<VerifyReport> VerifyLog(const std::string& path, const std::string& public_key_pem_path) {
  AIRLOCK_ASSIGN_OR_RETURN(sqlite3 * db, OpenDb(path, true));
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> guard(db, sqlite3_close);
  VerifyReport report;
  {
    Stmt s(db, "SELECT v FROM meta WHERE k='format'");
    if (!s.ok() || s.Step() != SQLITE_ROW || s.Text(0) != kFormat)
      return Corrupt("audit: not an airlock audit log at " + path);
  }
  // Keys: a pinned key file overrides the keys recorded in the log.
  std::map<std::string, Pkey> keys;
  Pkey pinned;
  if (!public_key_pem_path.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(public_key_pem_path));
    pinned = LoadPublicKey(pem);
    if (!pinned) return InvalidArgument("audit: no PEM key in " + public_key_pem_path);
  } else {
    Stmt s(db, "SELECT k, v FROM meta WHERE k LIKE 'public_key:%'");
    while (s.ok() && s.Step() == SQLITE_ROW) keys[s.Text(0).substr(11)] = LoadPublicKey(s.Text(1));
  }
  struct Cp {
    std::uint64_t size;
    std::string root, sig, key_id;
    std::int64_t time_ms;
  };
  std::vector<Cp> cps;
  {
    Stmt s(db, "SELECT size, root, time_ms, signature, key_id FROM checkpoints ORDER BY size");
    if (!s.ok()) return Corrupt("audit: checkpoints table missing at " + path);
    while (s.Step() == SQLITE_ROW)
      cps.push_back(
          {static_cast<std::uint64_t>(s.Int(0)), s.Blob(1), s.Blob(3), s.Text(4), s.Int(2)});
  }
  report.checkpoints = cps.size();
  auto fail = [&report](std::string problem) {
    if (report.first_problem.empty()) report.first_problem = std::move(problem);
  };
  std::size_t next_cp = 0;
  CompactRange range;
  Digest256 prev{};
  auto check_checkpoints = [&]() {
    while (next_cp < cps.size() && cps[next_cp].size == range.size()) {
      const Cp& cp = cps[next_cp++];
      Digest256 root = range.Root();
      if (cp.root.size() != 32 || std::memcmp(cp.root.data(), root.data(), 32) != 0) {
        fail("checkpoint at size " + std::to_string(cp.size) + ": root does not match records 0.." +
             std::to_string(cp.size - 1) +
             " (a record before it was changed, removed, inserted or reordered)");
        continue;
      }
      std::string message = CheckpointMessage(cp.size, root, cp.time_ms);
      if (cp.sig.empty()) {
        if (pinned || !keys.empty())
          fail("checkpoint at size " + std::to_string(cp.size) + " is not signed");
        continue;
      }
      EVP_PKEY* key = pinned.get();
      if (!key) {
        auto it = keys.find(cp.key_id);
        key = it == keys.end() ? nullptr : it->second.get();
      }
      if (!key) {
        fail("checkpoint at size " + std::to_string(cp.size) + ": unknown signing key '" +
             cp.key_id + "'");
      } else if (!VerifySignature(key, message, cp.sig)) {
        fail("checkpoint at size " + std::to_string(cp.size) + ": bad signature");
      } else {
        report.signed_checkpoints++;
      }
    }
  };
  Stmt s(db, "SELECT seq, data, leaf_hash FROM records ORDER BY seq");
  if (!s.ok()) return Corrupt("audit: records table missing at " + path);
  while (s.Step() == SQLITE_ROW) {
    std::uint64_t i = range.size();
    std::uint64_t seq = static_cast<std::uint64_t>(s.Int(0));
    std::string data = s.Text(1);
    std::string stored = s.Blob(2);
    std::string at = "record " + std::to_string(i);
    if (seq != i) {
      fail(at + " is missing (the next stored record is " + std::to_string(seq) +
           "): records were removed");
    }
    Digest256 leaf = LeafHash(data);
    if (stored.size() != 32 || std::memcmp(stored.data(), leaf.data(), 32) != 0)
      fail(at + " was changed: its content does not match its leaf hash");
    nlohmann::json j = nlohmann::json::parse(data, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      fail(at + " is not valid JSON (changed)");
    } else {
      auto jseq = j.find("seq");
      if (jseq == j.end() || !jseq->is_number_unsigned() || jseq->get<std::uint64_t>() != seq)
        fail(at + " claims another position: records were reordered or moved");
      auto jprev = j.find("prev");
      if (jprev == j.end() || !jprev->is_string() || jprev->get<std::string>() != Hex(prev))
        fail(at + ": hash chain broken (the record before it was changed, removed or reordered)");
    }
    range.Append(leaf);
    prev = leaf;
    check_checkpoints();
  }
  report.records = range.size();
  if (next_cp < cps.size())
    fail("checkpoint at size " + std::to_string(cps[next_cp].size) + " but the log holds only " +
         std::to_string(range.size()) + " records: records were removed from the end");
  std::uint64_t last = cps.empty() ? 0 : cps.back().size;
  report.unsigned_tail = range.size() > last ? range.size() - last : 0;
  if (report.unsigned_tail)
    report.warnings.push_back(std::to_string(report.unsigned_tail) +
                              " record(s) after the last checkpoint are not yet covered by one");
  if (keys.empty() && !pinned && !cps.empty())
    report.warnings.push_back("checkpoints are unsigned (no signing key configured)");
  if (!pinned && !keys.empty())
    report.warnings.push_back(
        "signatures checked with the key stored in the log; pin it with --public-key");
  report.ok = report.first_problem.empty();
  return report;
}

Result<std::vector<StoredRecord>> ListRecords(const std::string& path, const RecordFilter& f) {
  AIRLOCK_ASSIGN_OR_RETURN(sqlite3 * db, OpenDb(path, true));
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> guard(db, sqlite3_close);
  Stmt s(db,
         "SELECT seq, data FROM records WHERE (?1 = '' OR json_extract(data, '$.key_id') = ?1)"
         " AND (?2 = '' OR json_extract(data, '$.model') = ?2)"
         " AND (?3 = '' OR EXISTS (SELECT 1 FROM json_each(data, '$.data_classes')"
         "                          WHERE value = ?3))"
         " AND json_extract(data, '$.time_ms') >= ?4 ORDER BY seq DESC LIMIT ?5");
  if (!s.ok()) return IoError("audit: cannot query at " + path + ": " + sqlite3_errmsg(db));
  s.Bind(1, f.key_id);
  s.Bind(2, f.model);
  s.Bind(3, f.data_class);
  s.Bind(4, f.since_ms);
  s.Bind(5, static_cast<std::int64_t>(f.limit));
  std::vector<StoredRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW)
    out.push_back({static_cast<std::uint64_t>(s.Int(0)), s.Text(1)});
  if (rc != SQLITE_DONE)
    return IoError("audit: query failed at " + path + ": " + sqlite3_errmsg(db));
  std::reverse(out.begin(), out.end());
  return out;
}

Status GenerateSigningKey(const std::string& path) {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return Internal("audit: EC key generation failed");
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio ||
      PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    BIO_free(bio);
    return Internal("audit: PEM encoding failed");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    BIO_free(bio);
    return IoError("audit: cannot create key file at " + path + " (exists?)");
  }
  bool ok = n > 0 && ::write(fd, data, static_cast<std::size_t>(n)) == n && ::fsync(fd) == 0;
  ::close(fd);
  BIO_free(bio);
  return ok ? Status::Ok() : IoError("audit: write failed at " + path);
}

}  // namespace airlock::audit
