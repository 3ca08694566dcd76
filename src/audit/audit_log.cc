#include "audit/audit_log.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <sys/file.h>
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
#include "audit/note.h"
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

// "<hostname>/airlock-audit/<8 random hex digits>", with characters a key name cannot hold
// replaced by '-'.
std::string DefaultOrigin() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  std::string name = host;
  for (char& c : name)
    if (static_cast<unsigned char>(c) <= 0x20 || c == '+' || c == 0x7f) c = '-';
  unsigned char rnd[4] = {};
  RAND_bytes(rnd, sizeof rnd);
  return name + "/airlock-audit/" + core::ToHex(std::span<const std::uint8_t>(rnd, 4));
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
  if (!r.upstream_cert_sha256.empty()) j["upstream_cert_sha256"] = r.upstream_cert_sha256;
  if (!r.upstream_spki_sha256.empty()) j["upstream_spki_sha256"] = r.upstream_spki_sha256;
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

// An exclusive lock on "<log>.lock" held for as long as the log is open for writing: two writers
// on one log would race for sequence numbers and drop records (found by an outside attack:
// answered requests of the second gateway left no record). Declared first, released last.
struct WriterLock {
  int fd = -1;
  WriterLock() = default;
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;
  ~WriterLock() {
    if (fd >= 0) ::close(fd);
  }
};

struct AuditLog::Impl {
  WriterLock writer_lock;
  std::string path;
  OpenOptions options;
  sqlite3* db = nullptr;
  std::shared_ptr<NoteSigner> signer;
  std::string origin;
  std::unique_ptr<Anchors> anchors;
  std::string latest_note;  // guarded by db_mu

  // Tree state, guarded by db_mu.
  std::mutex db_mu;
  CompactRange range;
  Digest256 prev{};
  std::uint64_t last_checkpoint = 0;
  std::string pending_note;  // written in the open transaction, not yet committed

  // Statements of every commit, prepared once (guarded by db_mu).
  sqlite3_stmt* begin_stmt = nullptr;
  sqlite3_stmt* commit_stmt = nullptr;
  sqlite3_stmt* insert_stmt = nullptr;

  // Group commit queue. The appending thread that finds no commit in progress commits everything
  // queued (its own record and those that arrived meanwhile) in one transaction; the others wait
  // for that commit, and one of those whose record came too late then commits the next batch. No
  // hand-off to another thread on the path of a request.
  struct Pending {
    nlohmann::json record;
    std::uint64_t seq = 0;
    Status status;
    bool done = false;
  };
  std::mutex q_mu;
  std::condition_variable q_cv;     // wakes the idle-checkpoint thread (closing)
  std::condition_variable done_cv;  // wakes appenders: a batch is committed
  std::deque<Pending*> queue;
  bool committing = false;  // a thread is in CommitBatch
  bool stop = false;
  std::chrono::steady_clock::time_point last_append = std::chrono::steady_clock::now();
  std::thread writer;  // signs the unsigned tail after checkpoint_idle_ms without appends

  ~Impl() {
    for (sqlite3_stmt* s : {begin_stmt, commit_stmt, insert_stmt}) sqlite3_finalize(s);
    if (db) sqlite3_close(db);
  }

  // `*slot` prepared once from `sql`, reset for a new use; nullptr when it cannot be prepared.
  sqlite3_stmt* Cached(sqlite3_stmt** slot, const char* sql) {
    if (*slot == nullptr &&
        sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, nullptr) != SQLITE_OK) {
      sqlite3_finalize(*slot);
      *slot = nullptr;
      return nullptr;
    }
    sqlite3_reset(*slot);
    return *slot;
  }
  bool StepCached(sqlite3_stmt** slot, const char* sql) {
    sqlite3_stmt* s = Cached(slot, sql);
    if (s == nullptr) return false;
    bool ok = sqlite3_step(s) == SQLITE_DONE;
    sqlite3_reset(s);
    return ok;
  }

  // Signs a checkpoint of the current tree unless one exists for its size (`force`: sign anyway;
  // used once for the empty tree of a new log, so that every log has a signed checkpoint).
  Status CheckpointLocked(bool force = false) {
    std::uint64_t size = range.size();
    if (size == last_checkpoint && !force) return Status::Ok();
    Digest256 root = range.Root();
    std::int64_t t = NowMs();
    Note note;
    note.body = CheckpointBody({origin, size, root, {}});
    AIRLOCK_ASSIGN_OR_RETURN(NoteSignature sig, signer->Sign(note.body));
    note.signatures.push_back(std::move(sig));
    std::string text = FormatNote(note);
    Stmt s(db, "INSERT INTO checkpoints(size, root, time_ms, note) VALUES(?,?,?,?)");
    if (!s.ok()) return SqlError(db, "prepare checkpoint", path);
    s.Bind(1, static_cast<std::int64_t>(size));
    s.BindBlob(2, root.data(), root.size());
    s.Bind(3, t);
    s.Bind(4, text);
    if (s.Step() != SQLITE_DONE) return SqlError(db, "insert checkpoint", path);
    last_checkpoint = size;
    pending_note = std::move(text);
    return Status::Ok();
  }

  // Hands the checkpoint written by the last committed transaction to the anchors. Only after
  // COMMIT: an anchor never holds a checkpoint the log could lose on a crash.
  void PublishCommitted() {
    if (pending_note.empty()) return;
    latest_note = pending_note;
    if (anchors) anchors->Publish(pending_note, last_checkpoint);
    pending_note.clear();
  }

  // Commits `batch` in one transaction (one fsync); fills seq/status.
  void CommitBatch(std::vector<Pending*>& batch) {
    std::lock_guard<std::mutex> lock(db_mu);
    CompactRange saved_range = range;
    Digest256 saved_prev = prev;
    std::uint64_t saved_cp = last_checkpoint;
    Status status;
    if (!StepCached(&begin_stmt, "BEGIN IMMEDIATE")) status = SqlError(db, "begin", path);
    if (status.ok()) {
      sqlite3_stmt* ins =
          Cached(&insert_stmt, "INSERT INTO records(seq, data, leaf_hash) VALUES(?,?,?)");
      if (ins == nullptr) status = SqlError(db, "prepare insert", path);
      for (Pending* p : batch) {
        if (!status.ok()) break;
        p->seq = range.size();
        p->record["seq"] = p->seq;
        p->record["prev"] = Hex(prev);
        std::string data = p->record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        Digest256 leaf = LeafHash(data);
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, static_cast<std::int64_t>(p->seq));
        sqlite3_bind_text(ins, 2, data.data(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
        sqlite3_bind_blob(ins, 3, leaf.data(), static_cast<int>(leaf.size()), SQLITE_TRANSIENT);
        int rc = sqlite3_step(ins);
        sqlite3_reset(ins);
        if (rc != SQLITE_DONE) {
          status = SqlError(db, "insert record", path);
          break;
        }
        range.Append(leaf);
        prev = leaf;
      }
      if (status.ok() &&
          range.size() - last_checkpoint >= static_cast<std::uint64_t>(options.checkpoint_every))
        status = CheckpointLocked();
      if (status.ok() && !StepCached(&commit_stmt, "COMMIT")) status = SqlError(db, "commit", path);
      if (!status.ok()) Exec(db, "ROLLBACK");
    }
    if (status.ok()) PublishCommitted();
    if (!status.ok()) {
      pending_note.clear();
      range = saved_range;
      prev = saved_prev;
      last_checkpoint = saved_cp;
    }
    for (Pending* p : batch) p->status = status;
  }

  // With q_mu held by `lock` and no commit in progress: commits everything queued, then wakes
  // the appenders (q_mu is released during the commit, so more records queue meanwhile).
  // noexcept: an exception here (out of memory) would leave other threads' records unsettled and
  // their threads waiting forever; the process ends instead, as it did when a writer thread threw.
  void CommitQueued(std::unique_lock<std::mutex>& lock) noexcept {
    committing = true;
    std::vector<Pending*> batch(queue.begin(), queue.end());
    queue.clear();
    lock.unlock();
    CommitBatch(batch);
    lock.lock();
    for (Pending* p : batch) p->done = true;
    committing = false;
    done_cv.notify_all();
  }

  // Signs a checkpoint of an unsigned tail once no record was appended for checkpoint_idle_ms.
  void IdleCheckpointLoop() {
    const auto idle = std::chrono::milliseconds(options.checkpoint_idle_ms);
    std::unique_lock<std::mutex> lock(q_mu);
    while (!stop) {
      auto due = last_append + idle;
      if (std::chrono::steady_clock::now() < due) {
        q_cv.wait_until(lock, due, [&] { return stop; });
        continue;
      }
      const auto seen = last_append;
      lock.unlock();
      {
        std::lock_guard<std::mutex> g(db_mu);
        if (range.size() != last_checkpoint && Exec(db, "BEGIN IMMEDIATE")) {
          if (CheckpointLocked().ok() && Exec(db, "COMMIT")) {
            PublishCommitted();
          } else {
            Exec(db, "ROLLBACK");
            pending_note.clear();
          }
        }
      }
      lock.lock();
      // Nothing more to sign until the next append (which moves last_append).
      q_cv.wait_for(lock, idle, [&] { return stop || last_append != seen; });
    }
  }
};

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AuditLog::~AuditLog() {
  {
    std::unique_lock<std::mutex> lock(impl_->q_mu);
    impl_->stop = true;
    // Appends already queued finish (their threads commit them) before the log closes.
    impl_->done_cv.wait(lock, [&] { return impl_->queue.empty() && !impl_->committing; });
  }
  impl_->q_cv.notify_all();
  if (impl_->writer.joinable()) impl_->writer.join();
  Checkpoint().ok();       // best effort: records are already durable
  impl_->anchors.reset();  // delivers what is queued (bounded by the anchors' timeouts)
}

const std::string& AuditLog::origin() const { return impl_->origin; }

std::string AuditLog::LatestCheckpointNote() const {
  std::lock_guard<std::mutex> lock(impl_->db_mu);
  return impl_->latest_note;
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
  const std::string& key_path = options.signing_key_pem_path;
  if (key_path.empty())
    return InvalidArgument("audit: no checkpoint signing key configured for " + path);
  bool created_key = false;
  if (::access(key_path.c_str(), F_OK) != 0) {
    if (!options.create_signing_key)
      return NotFound("audit: no checkpoint signing key at " + key_path +
                      " (create one with `airlock audit keygen " + key_path + "`)");
    AIRLOCK_TRY(GenerateEd25519Key(key_path));
    created_key = true;
  }
  const std::string lock_path = path + ".lock";
  impl->writer_lock.fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (impl->writer_lock.fd < 0)
    return IoError("audit: cannot open " + lock_path + ": " + std::strerror(errno));
  if (::flock(impl->writer_lock.fd, LOCK_EX | LOCK_NB) != 0)
    return Unavailable("audit: the log at " + path +
                       " is open for writing in another process (another airlock serve, or one "
                       "still draining); a log has one writer");
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
  // Logs written before checkpoints were signed notes have no `note` column yet.
  {
    bool has_note = false;
    Stmt s(db, "SELECT name FROM pragma_table_info('checkpoints')");
    while (s.ok() && s.Step() == SQLITE_ROW) has_note |= s.Text(0) == "note";
    if (!has_note && !Exec(db, "ALTER TABLE checkpoints ADD COLUMN note TEXT"))
      return SqlError(db, "cannot add the note column", path);
  }
  {
    Stmt s(db, "SELECT v FROM meta WHERE k='origin'");
    if (s.ok() && s.Step() == SQLITE_ROW) {
      impl->origin = s.Text(0);
      if (!options.origin.empty() && options.origin != impl->origin)
        return InvalidArgument("audit: log at " + path + " has origin '" + impl->origin +
                               "', not the configured '" + options.origin +
                               "' (a log's origin never changes)");
    } else {
      impl->origin = options.origin.empty() ? DefaultOrigin() : options.origin;
      Stmt ins(db, "INSERT INTO meta(k, v) VALUES('origin', ?)");
      ins.Bind(1, impl->origin);
      if (ins.Step() != SQLITE_DONE) return SqlError(db, "store origin", path);
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(impl->signer, NoteSigner::Load(key_path, impl->origin));
  {
    // Record the verifier key of every key that ever signed (informational: verification only
    // trusts pinned keys).
    Stmt s(db, "INSERT OR IGNORE INTO meta(k, v) VALUES(?, ?)");
    NoteVerifier v = impl->signer->Verifier();
    s.Bind(1, "verifier_key:" + v.VerifierKey());
    s.Bind(2, v.VerifierKey());
    if (s.Step() != SQLITE_DONE) return SqlError(db, "store public key", path);
  }
  if (created_key)
    std::fprintf(stderr,
                 "airlock audit: created checkpoint signing key %s; its public key is %s "
                 "(verifier key %s). Keep a copy of the public key off this machine and pin it: "
                 "airlock audit verify --log %s --public-key %s.pub\n",
                 key_path.c_str(), (key_path + ".pub").c_str(),
                 impl->signer->Verifier().VerifierKey().c_str(), path.c_str(), key_path.c_str());
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
    Stmt c(db, "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1");
    if (c.ok() && c.Step() == SQLITE_ROW) {
      impl->last_checkpoint = static_cast<std::uint64_t>(c.Int(0));
      impl->latest_note = c.Text(1);
    } else if (impl->range.size() == 0) {
      // A new log starts with a signed checkpoint of the empty tree: from then on a log without
      // checkpoints is one whose checkpoints were removed.
      Status st = Exec(db, "BEGIN IMMEDIATE") ? impl->CheckpointLocked(/*force=*/true)
                                              : SqlError(db, "begin", path);
      if (st.ok() && !Exec(db, "COMMIT")) st = SqlError(db, "commit", path);
      if (!st.ok()) {
        Exec(db, "ROLLBACK");
        return st;
      }
      impl->latest_note = impl->pending_note;
    }
  }
  if (!options.anchors.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(impl->anchors, Anchors::Create(options.anchors, path, impl->origin));
  }
  impl->PublishCommitted();  // the empty tree's checkpoint of a new log
  Impl* raw = impl.get();
  impl->writer = std::thread([raw] { raw->IdleCheckpointLoop(); });
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(impl)));
}

Result<std::uint64_t> AuditLog::Append(const AuditRecord& record) {
  Impl::Pending p;
  p.record = ToJson(record);
  if (record.time_ms == 0) p.record["time_ms"] = NowMs();
  std::unique_lock<std::mutex> lock(impl_->q_mu);
  if (impl_->stop) return Unavailable("audit: log is closing at " + impl_->path);
  impl_->queue.push_back(&p);
  impl_->last_append = std::chrono::steady_clock::now();
  while (!p.done) {
    if (!impl_->committing)
      impl_->CommitQueued(lock);  // includes p: it is queued and nobody took it yet
    else
      impl_->done_cv.wait(lock);
  }
  if (!p.status.ok()) return p.status;
  return p.seq;
}

Status AuditLog::Checkpoint() {
  std::lock_guard<std::mutex> lock(impl_->db_mu);
  if (impl_->range.size() == impl_->last_checkpoint) return Status::Ok();
  if (!Exec(impl_->db, "BEGIN IMMEDIATE")) return SqlError(impl_->db, "begin", impl_->path);
  Status s = impl_->CheckpointLocked();
  if (s.ok() && !Exec(impl_->db, "COMMIT")) s = SqlError(impl_->db, "commit", impl_->path);
  if (s.ok()) {
    impl_->PublishCommitted();
  } else {
    Exec(impl_->db, "ROLLBACK");
    impl_->pending_note.clear();
  }
  return s;
}

namespace {
std::string Records(std::uint64_t size) {
  return size == 0 ? "the empty tree" : "records 0.." + std::to_string(size - 1);
}
}  // namespace

Result<VerifyReport> VerifyLog(const std::string& path, const VerifyOptions& options) {
  if (options.public_keys.empty())
    return InvalidArgument(
        "audit: no pinned public key: pass --public-key FILE (the .pub written beside the signing "
        "key) or set [audit] public_key; the keys stored in a log prove nothing");
  AIRLOCK_ASSIGN_OR_RETURN(sqlite3 * db, OpenDb(path, true));
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> guard(db, sqlite3_close);
  VerifyReport report;
  {
    Stmt s(db, "SELECT v FROM meta WHERE k='format'");
    if (!s.ok() || s.Step() != SQLITE_ROW || s.Text(0) != kFormat)
      return Corrupt("audit: not an airlock audit log at " + path);
  }
  auto fail = [&report](std::string problem) {
    if (report.first_problem.empty()) report.first_problem = std::move(problem);
  };
  {
    Stmt s(db, "SELECT v FROM meta WHERE k='origin'");
    if (s.ok() && s.Step() == SQLITE_ROW) report.origin = s.Text(0);
  }
  // The keys that apply to this log: PEM keys sign under its origin, verifier keys only when their
  // name is its origin.
  std::vector<NoteVerifier> keys;
  for (NoteVerifier k : options.public_keys) {
    if (k.name.empty()) k.name = report.origin;
    if (k.name == report.origin) keys.push_back(std::move(k));
  }
  auto key_ids = [&keys] {
    std::string out;
    for (const auto& k : keys) {
      char id[9];
      std::snprintf(id, sizeof id, "%08x", k.key_id());
      out += (out.empty() ? "" : ", ") + std::string(id);
    }
    return out.empty() ? std::string("none for this origin") : out;
  };
  // Checks a checkpoint note: parses, names this log's origin and `size`, signed by a pinned key.
  // Returns the checkpoint, or nullopt after recording the problem (prefixed with `what`).
  auto check_note = [&](const Note& note, const std::string& what,
                        std::optional<std::uint64_t> size) -> std::optional<Checkpoint> {
    auto cp = ParseCheckpointBody(note.body);
    if (!cp) {
      fail(what + ": " + cp.error().message());
      return std::nullopt;
    }
    if (cp->origin != report.origin) {
      fail(what + ": origin '" + cp->origin + "' is not this log's origin '" + report.origin + "'");
      return std::nullopt;
    }
    if (size && cp->size != *size) {
      fail(what + ": its note is for size " + std::to_string(cp->size));
      return std::nullopt;
    }
    for (const auto& k : keys)
      if (FindValidSignature(note, k)) return *cp;
    std::string signers;
    for (const auto& sig : note.signatures) {
      char id[9];
      std::snprintf(id, sizeof id, "%08x", sig.key_id);
      signers += (signers.empty() ? "" : ", ") + sig.name + " key ID " + id;
    }
    fail(what + " is not signed by the pinned public key (pinned key ID " + key_ids() +
         "; signed by " + signers +
         "): the signing key was swapped, the checkpoint re-signed or changed");
    return std::nullopt;
  };

  struct Row {
    std::uint64_t size;
    std::string root, note;
    bool has_note;
  };
  std::vector<Row> cps;
  {
    bool has_note = false;  // logs from before signed notes have no note column
    {
      Stmt t(db, "SELECT name FROM pragma_table_info('checkpoints')");
      while (t.ok() && t.Step() == SQLITE_ROW) has_note |= t.Text(0) == "note";
    }
    Stmt s(db, has_note ? "SELECT size, root, note FROM checkpoints ORDER BY size"
                        : "SELECT size, root, NULL FROM checkpoints ORDER BY size");
    if (!s.ok()) return Corrupt("audit: checkpoints table missing at " + path);
    while (s.Step() == SQLITE_ROW)
      cps.push_back({static_cast<std::uint64_t>(s.Int(0)), s.Blob(1), s.Text(2), !s.IsNull(2)});
  }
  report.checkpoints = cps.size();
  std::size_t next_cp = 0;
  CompactRange range;
  Digest256 prev{};
  auto check_checkpoints = [&]() {
    while (next_cp < cps.size() && cps[next_cp].size == range.size()) {
      const Row& row = cps[next_cp++];
      const std::string at = "checkpoint at size " + std::to_string(row.size);
      Digest256 root = range.Root();
      if (row.root.size() != 32 || std::memcmp(row.root.data(), root.data(), 32) != 0) {
        fail(at + ": root does not match " + Records(row.size) +
             " (a record before it was changed, removed, inserted or reordered)");
        continue;
      }
      if (!row.has_note) {
        fail(at +
             " has no signed note (written before checkpoints were C2SP signed notes, or "
             "its note was removed)");
        continue;
      }
      auto note = ParseNote(row.note);
      if (!note) {
        fail(at + ": " + note.error().message());
        continue;
      }
      auto cp = check_note(*note, at, row.size);
      if (!cp) continue;
      if (cp->root != root) {
        fail(at + ": the signed root does not match " + Records(row.size));
        continue;
      }
      // Consecutive checkpoints are consistent (the older tree a prefix of the newer) because each
      // root was just recomputed from this one sequence of leaves; a consistency proof built from
      // those same leaves would only repeat that, at O(records) per checkpoint.
      report.signed_checkpoints++;
    }
  };
  // Trusted checkpoints of this origin, by size; each is removed once the log's root at its size
  // matches it. Their problems are reported after the log's own.
  std::map<std::uint64_t, std::vector<std::pair<std::string, Digest256>>> trusted_at;
  std::vector<std::string> trusted_problems;
  {
    std::string saved = std::move(report.first_problem);
    report.first_problem.clear();
    for (const Note& trusted : options.trusted_checkpoints) {
      auto body = ParseCheckpointBody(trusted.body);
      if (!body || body->origin != report.origin) continue;  // another log's (caller reports it)
      report.trusted_checked++;
      const std::string at = "trusted checkpoint at size " + std::to_string(body->size);
      auto cp = check_note(trusted, at, std::nullopt);
      if (!report.first_problem.empty()) {
        trusted_problems.push_back(std::move(report.first_problem));
        report.first_problem.clear();
      }
      if (cp) trusted_at[cp->size].emplace_back(at, cp->root);
    }
    report.first_problem = std::move(saved);
  }
  auto check_trusted = [&]() {
    auto it = trusted_at.find(range.size());
    if (it == trusted_at.end()) return;
    const Digest256 root = range.Root();
    std::erase_if(it->second, [&root](const auto& p) { return p.second == root; });
    if (it->second.empty()) trusted_at.erase(it);
  };
  Stmt s(db, "SELECT seq, data, leaf_hash FROM records ORDER BY seq");
  if (!s.ok()) return Corrupt("audit: records table missing at " + path);
  check_checkpoints();  // the empty tree's checkpoint
  check_trusted();
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
    check_trusted();
  }
  report.records = range.size();
  if (next_cp < cps.size())
    fail("checkpoint at size " + std::to_string(cps[next_cp].size) + " but the log holds only " +
         std::to_string(range.size()) + " records: records were removed from the end");
  // A log is created with a signed checkpoint of its empty tree, so a log without any checkpoint
  // (even an empty one: "delete everything") lost them.
  if (cps.empty())
    fail(
        "the log has no checkpoint (every log starts with a signed one of its empty tree), so "
        "none covers its " +
        std::to_string(range.size()) + " record(s): checkpoints were removed");
  // Checkpoints published outside the file: the log must still extend each of them, i.e. have
  // the same root at that size (then every older size is a prefix of it too).
  for (auto& [size, pinned] : trusted_at) {
    for (const auto& [at, root] : pinned) {
      if (size > range.size())
        fail(at + " but the log holds only " + std::to_string(range.size()) +
             " records: records were removed from the end (tail truncation or rollback)");
      else
        fail(at +
             ": the log does not extend it (its root at that size differs): records up to that "
             "size were changed, removed or rewritten");
    }
  }
  for (auto& problem : trusted_problems) fail(std::move(problem));
  std::uint64_t last = cps.empty() ? 0 : cps.back().size;
  report.unsigned_tail = range.size() > last ? range.size() - last : 0;
  // Records no signed checkpoint covers can be rewritten or added by whoever writes the file
  // (their hashes use no key): not verified, so the report is incomplete, never plainly ok.
  report.complete = report.unsigned_tail == 0;
  if (options.trusted_checkpoints.empty())
    report.warnings.push_back(
        "no trusted checkpoint given: removing the newest records together with their "
        "checkpoints cannot be detected (pass --trusted-checkpoint with a published checkpoint)");
  report.ok = report.first_problem.empty();
  return report;
}

Result<LatestCheckpoint> ReadLatestCheckpoint(const std::string& path) {
  AIRLOCK_ASSIGN_OR_RETURN(sqlite3 * db, OpenDb(path, true));
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> guard(db, sqlite3_close);
  LatestCheckpoint out;
  {
    Stmt s(db, "SELECT v FROM meta WHERE k='format'");
    if (!s.ok() || s.Step() != SQLITE_ROW || s.Text(0) != kFormat)
      return Corrupt("audit: not an airlock audit log at " + path);
  }
  {
    Stmt s(db, "SELECT v FROM meta WHERE k='origin'");
    if (s.ok() && s.Step() == SQLITE_ROW) out.origin = s.Text(0);
  }
  Stmt s(db, "SELECT note FROM checkpoints WHERE note IS NOT NULL ORDER BY size DESC LIMIT 1");
  if (!s.ok()) return Corrupt("audit: checkpoints table missing at " + path);
  if (s.Step() == SQLITE_ROW) out.note = s.Text(0);
  return out;
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

Status GenerateSigningKey(const std::string& path) { return GenerateEd25519Key(path); }

}  // namespace airlock::audit
