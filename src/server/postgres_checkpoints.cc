// Audit checkpoints in the shared PostgreSQL store (server/checkpoints.h): the publisher that
// every replica runs beside its local log, and the reader `airlock audit verify` uses.
#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "audit/note.h"
#include "server/checkpoints.h"
#include "server/internal/pg_result.h"
#include "server/internal/postgres_store.h"

namespace airlock::server {
namespace {

using internal::PgFirstLine;
using internal::PgResult;

constexpr std::size_t kMaxQueued = 10000;
constexpr auto kFirstPause = std::chrono::milliseconds(250);
constexpr auto kLongestPause = std::chrono::seconds(5);

class PostgresCheckpointPublisher final : public CheckpointPublisher {
 public:
  explicit PostgresCheckpointPublisher(internal::PostgresOptions options)
      : options_(std::move(options)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~PostgresCheckpointPublisher() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    if (conn_) PQfinish(conn_);
  }

  void Publish(const std::string& note, std::uint64_t) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back({next_id_++, note});
      if (queue_.size() > kMaxQueued) {
        queue_.pop_front();
        ++dropped_;
      }
    }
    cv_.notify_one();
  }
  std::uint64_t pending() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size();
  }
  std::uint64_t published() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return published_;
  }

 private:
  struct Queued {
    std::uint64_t id;
    std::string note;
  };

  // Appends one checkpoint (a second copy of the same one is not stored twice).
  Status Store(const std::string& note_text) {
    AIRLOCK_ASSIGN_OR_RETURN(audit::Note note, audit::ParseNote(note_text));
    AIRLOCK_ASSIGN_OR_RETURN(audit::Checkpoint cp, audit::ParseCheckpointBody(note.body));
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
      if (conn_) PQfinish(conn_);
      conn_ = nullptr;
      AIRLOCK_ASSIGN_OR_RETURN(conn_, internal::ConnectPostgres(options_));
    }
    std::string size = std::to_string(cp.size);
    std::string root = audit::Base64Encode(
        std::string_view(reinterpret_cast<const char*>(cp.root.data()), cp.root.size()));
    const char* values[] = {cp.origin.c_str(), size.c_str(), root.c_str(), note_text.c_str()};
    PgResult r(PQexecParams(conn_,
                            "INSERT INTO airlock_audit_checkpoints (origin, tree_size, root_hash, "
                            "note) VALUES ($1, $2, $3, $4) ON CONFLICT (origin, tree_size, "
                            "root_hash) DO NOTHING",
                            4, nullptr, values, nullptr, nullptr, 0));
    if (r && PQresultStatus(r.get()) == PGRES_COMMAND_OK) return Status::Ok();
    std::string detail = PgFirstLine(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn_));
    // A fresh connection for the next try: after a server crash libpq may still call this one
    // CONNECTION_OK.
    PQfinish(conn_);
    conn_ = nullptr;
    return Unavailable("server: the shared key store " + options_.url + " failed: " + detail);
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    auto pause = std::chrono::milliseconds(kFirstPause);
    bool failing = false;
    std::uint64_t dropped_reported = 0;
    while (true) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      Queued next = queue_.front();
      lock.unlock();
      Status s = Store(next.note);
      lock.lock();
      if (dropped_ > dropped_reported) {
        std::fprintf(stderr,
                     "airlock serve: %llu audit checkpoint(s) were dropped from the publishing "
                     "queue (full); later ones still pin them\n",
                     static_cast<unsigned long long>(dropped_ - dropped_reported));
        dropped_reported = dropped_;
      }
      if (s.ok()) {
        if (!queue_.empty() && queue_.front().id == next.id) queue_.pop_front();
        ++published_;
        if (failing)
          std::fprintf(stderr,
                       "airlock serve: audit checkpoints reach the shared store again (%zu "
                       "still queued)\n",
                       queue_.size());
        failing = false;
        pause = kFirstPause;
        continue;
      }
      if (!failing)
        std::fprintf(stderr,
                     "airlock serve: publishing an audit checkpoint failed (auditing goes on; "
                     "retrying): %s\n",
                     s.message().c_str());
      failing = true;
      if (stop_) {
        std::fprintf(stderr,
                     "airlock serve: %zu audit checkpoint(s) not published at exit; the next "
                     "start publishes the log's latest\n",
                     queue_.size());
        return;
      }
      cv_.wait_for(lock, pause, [this] { return stop_; });
      pause = std::min<std::chrono::milliseconds>(pause * 2, kLongestPause);
    }
  }

  internal::PostgresOptions options_;
  PGconn* conn_ = nullptr;  // used by the thread only
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  std::uint64_t next_id_ = 0, dropped_ = 0, published_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

Result<std::shared_ptr<CheckpointPublisher>> OpenCheckpointPublisher(const policy::Policy& policy) {
  AIRLOCK_ASSIGN_OR_RETURN(internal::PostgresOptions o, internal::PostgresOptionsFor(policy));
  return std::shared_ptr<CheckpointPublisher>(
      std::make_shared<PostgresCheckpointPublisher>(std::move(o)));
}

Result<std::vector<PublishedCheckpoint>> ReadPublishedCheckpoints(const policy::Policy& policy) {
  AIRLOCK_ASSIGN_OR_RETURN(internal::PostgresOptions o, internal::PostgresOptionsFor(policy));
  AIRLOCK_ASSIGN_OR_RETURN(PGconn * conn, internal::ConnectPostgres(o));
  std::unique_ptr<PGconn, void (*)(PGconn*)> guard(conn, PQfinish);
  auto failed = [&](PGresult* r) {
    return IoError("server: reading the published checkpoints of " + o.url +
                   " failed: " + PgFirstLine(r ? PQresultErrorMessage(r) : PQerrorMessage(conn)));
  };
  PgResult exists(PQexec(conn, "SELECT to_regclass('airlock_audit_checkpoints') IS NOT NULL"));
  if (!exists || PQresultStatus(exists.get()) != PGRES_TUPLES_OK) return failed(exists.get());
  if (std::string_view(PQgetvalue(exists.get(), 0, 0)) != "t")
    return NotFound("server: " + o.url +
                    " has no airlock_audit_checkpoints table: no gateway of this version has "
                    "used it yet");
  PgResult r(PQexec(conn,
                    "SELECT origin, tree_size, root_hash, note FROM airlock_audit_checkpoints "
                    "ORDER BY id"));
  if (!r || PQresultStatus(r.get()) != PGRES_TUPLES_OK) return failed(r.get());
  std::vector<PublishedCheckpoint> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    PublishedCheckpoint c;
    c.origin = PQgetvalue(r.get(), i, 0);
    c.size = std::strtoull(PQgetvalue(r.get(), i, 1), nullptr, 10);
    c.root_base64 = PQgetvalue(r.get(), i, 2);
    c.note = PQgetvalue(r.get(), i, 3);
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace airlock::server
