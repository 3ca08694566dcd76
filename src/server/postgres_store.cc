// KeyStore on PostgreSQL: every admission decision is made inside the database, so any number of
// gateway replicas share one set of budgets and rate limits. Nothing about a key is cached in the
// process: authentication reads the key's row on every request, so a revocation made through any
// replica (or `airlock keys revoke`) applies to the next request everywhere.
//
// Reserve is one call of the airlock_reserve() function the migration installs: it locks the
// key's row (FOR UPDATE, so reservations of one key are serialized across replicas), charges
// reservations whose lease expired (their replica died) in full, checks the rate window (the
// reservations of the last 60 s by the database's clock) and then increases reserved_tokens with
// a conditional UPDATE (used + reserved + amount <= budget); no value is read into a replica,
// changed and written back. Settlement (airlock_settle) takes the same row lock first, charges the
// actual cost, releases the rest of the reservation, and does nothing for a reservation already
// settled.
#include "server/internal/postgres_store.h"

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "core/hash.h"
#include "server/internal/key_tokens.h"
#include "server/internal/pg_result.h"

namespace airlock::server::internal {
namespace {

// Each migration step brings the schema from version (index) to version (index + 1).
const char* const kMigrations[] = {
    // 0 -> 1: keys, reservations (also the rate window), and the admission functions.
    R"sql(
CREATE TABLE airlock_keys (
  id TEXT PRIMARY KEY,
  hash BYTEA NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL,
  revoked BOOLEAN NOT NULL DEFAULT FALSE,
  models TEXT NOT NULL DEFAULT '[]',
  rpm BIGINT NOT NULL DEFAULT 0 CHECK (rpm >= 0),
  tpm BIGINT NOT NULL DEFAULT 0 CHECK (tpm >= 0),
  budget_tokens BIGINT NOT NULL DEFAULT 0 CHECK (budget_tokens >= 0),
  used_tokens BIGINT NOT NULL DEFAULT 0,
  reserved_tokens BIGINT NOT NULL DEFAULT 0 CHECK (reserved_tokens >= 0));

-- One row per admitted request: in flight while charged IS NULL; kept 60 s after it was created
-- as the rate-limit window.
CREATE TABLE airlock_reservations (
  id BIGSERIAL PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES airlock_keys(id),
  tokens BIGINT NOT NULL CHECK (tokens >= 0),
  charged BIGINT,
  created_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL);
CREATE INDEX airlock_reservations_key_time ON airlock_reservations (key_id, created_at);
-- The reservations in flight, searched on every reservation for expired leases: a hot key's
-- settled rows (up to a minute of them) must not be scanned for that.
CREATE INDEX airlock_reservations_in_flight ON airlock_reservations (key_id, expires_at)
  WHERE charged IS NULL;

CREATE FUNCTION airlock_reserve(p_key TEXT, p_tokens BIGINT, p_lease_s INTEGER,
                                OUT reservation_id BIGINT, OUT outcome TEXT,
                                OUT used BIGINT, OUT reserved BIGINT, OUT limit_value BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
  k airlock_keys%ROWTYPE;
  now_ts TIMESTAMPTZ := clock_timestamp();
  expired BIGINT;
  window_requests BIGINT;
  window_tokens BIGINT;
BEGIN
  SELECT * INTO k FROM airlock_keys WHERE id = p_key FOR UPDATE;
  IF NOT FOUND OR k.revoked THEN
    outcome := 'revoked';
    RETURN;
  END IF;
  -- Reservations of a replica that died: the work they caused is unknown, so charged in full.
  WITH gone AS (
    UPDATE airlock_reservations SET charged = tokens
    WHERE key_id = p_key AND charged IS NULL AND expires_at < now_ts RETURNING tokens)
  SELECT coalesce(sum(tokens), 0) INTO expired FROM gone;
  IF expired > 0 THEN
    UPDATE airlock_keys SET reserved_tokens = reserved_tokens - expired,
                            used_tokens = used_tokens + expired
    WHERE id = p_key RETURNING * INTO k;
  END IF;
  DELETE FROM airlock_reservations
  WHERE key_id = p_key AND charged IS NOT NULL AND created_at <= now_ts - interval '60 seconds';
  IF k.rpm > 0 OR k.tpm > 0 THEN
    SELECT count(*), coalesce(sum(coalesce(charged, tokens)), 0)
      INTO window_requests, window_tokens
    FROM airlock_reservations
    WHERE key_id = p_key AND created_at > now_ts - interval '60 seconds';
    IF k.rpm > 0 AND window_requests >= k.rpm THEN
      outcome := 'rpm';
      limit_value := k.rpm;
      RETURN;
    END IF;
    IF k.tpm > 0 AND window_tokens + p_tokens > k.tpm THEN
      outcome := 'tpm';
      limit_value := k.tpm;
      RETURN;
    END IF;
  END IF;
  UPDATE airlock_keys SET reserved_tokens = reserved_tokens + p_tokens
  WHERE id = p_key
    AND (budget_tokens = 0 OR used_tokens + reserved_tokens + p_tokens <= budget_tokens)
  RETURNING used_tokens, reserved_tokens INTO used, reserved;
  IF NOT FOUND THEN
    outcome := 'budget';
    used := k.used_tokens;
    reserved := k.reserved_tokens;
    limit_value := k.budget_tokens;
    RETURN;
  END IF;
  INSERT INTO airlock_reservations (key_id, tokens, created_at, expires_at)
  VALUES (p_key, p_tokens, now_ts, now_ts + make_interval(secs => p_lease_s))
  RETURNING id INTO reservation_id;
  outcome := 'ok';
END $$;

CREATE FUNCTION airlock_settle(p_id BIGINT, p_actual BIGINT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
  v_key TEXT;
  v_tokens BIGINT;
  v_rate_limited BOOLEAN;
BEGIN
  SELECT key_id INTO v_key FROM airlock_reservations WHERE id = p_id;
  IF NOT FOUND THEN
    RETURN FALSE;
  END IF;
  -- The key's row first, as in airlock_reserve: one lock order, no deadlock.
  SELECT rpm > 0 OR tpm > 0 INTO v_rate_limited FROM airlock_keys WHERE id = v_key FOR UPDATE;
  UPDATE airlock_reservations SET charged = p_actual
  WHERE id = p_id AND charged IS NULL RETURNING tokens INTO v_tokens;
  IF NOT FOUND THEN
    RETURN FALSE;
  END IF;
  -- Settled rows are only kept as the rate window of a key that has one.
  IF NOT v_rate_limited THEN
    DELETE FROM airlock_reservations WHERE id = p_id;
  END IF;
  UPDATE airlock_keys SET reserved_tokens = reserved_tokens - v_tokens,
                          used_tokens = used_tokens + p_actual
  WHERE id = v_key;
  RETURN TRUE;
END $$;
)sql",
    // 1 -> 2: the audit checkpoints each replica publishes (server/checkpoints.h), append-only.
    R"sql(
CREATE TABLE airlock_audit_checkpoints (
  id BIGSERIAL PRIMARY KEY,
  origin TEXT NOT NULL,
  tree_size BIGINT NOT NULL CHECK (tree_size >= 0),
  root_hash TEXT NOT NULL,
  note TEXT NOT NULL,
  published_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  UNIQUE (origin, tree_size, root_hash));
-- Airlock never changes or removes a row, and the triggers refuse UPDATE, DELETE and TRUNCATE
-- to everyone. (The table's owner can drop them: what a verifier trusts is each note's
-- signature and its consistency with the replica's log, not this table.)
CREATE FUNCTION airlock_audit_checkpoints_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'airlock_audit_checkpoints is append-only';
END $$;
CREATE TRIGGER airlock_audit_checkpoints_no_change BEFORE UPDATE OR DELETE
  ON airlock_audit_checkpoints FOR EACH ROW EXECUTE FUNCTION airlock_audit_checkpoints_refuse();
CREATE TRIGGER airlock_audit_checkpoints_no_truncate BEFORE TRUNCATE
  ON airlock_audit_checkpoints FOR EACH STATEMENT
  EXECUTE FUNCTION airlock_audit_checkpoints_refuse();
)sql",
};
static_assert(std::size(kMigrations) == kPostgresSchemaVersion);

constexpr const char* kKeyColumns =
    "id, name, created_ms, revoked, models, rpm, tpm, budget_tokens, used_tokens";

std::int64_t Int(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return 0;
  return std::strtoll(PQgetvalue(r, row, col), nullptr, 10);
}

std::string Text(const PGresult* r, int row, int col) {
  return PQgetisnull(r, row, col) ? std::string() : std::string(PQgetvalue(r, row, col));
}

KeyInfo RowToInfo(const PGresult* r, int row) {
  KeyInfo k;
  k.id = Text(r, row, 0);
  k.name = Text(r, row, 1);
  k.created_ms = Int(r, row, 2);
  k.revoked = Text(r, row, 3) == "t";
  // As with SQLite: a models column that is not exactly a list of names revokes, never widens.
  if (auto models = ParseModels(Text(r, row, 4))) {
    k.models = std::move(*models);
  } else {
    k.revoked = true;
  }
  k.rpm = Int(r, row, 5);
  k.tpm = Int(r, row, 6);
  k.budget_tokens = Int(r, row, 7);
  k.used_tokens = Int(r, row, 8);
  return k;
}

class PostgresKeyStore final : public KeyStore {
 public:
  explicit PostgresKeyStore(PostgresOptions options) : options_(std::move(options)) {}
  ~PostgresKeyStore() override {
    for (PGconn* c : idle_) PQfinish(c);
    if (probe_conn_) PQfinish(probe_conn_);
  }

  std::string Describe() const override { return options_.url; }
  Status Migrate();

  Result<std::pair<std::string, KeyInfo>> Create(const std::string& name,
                                                 const std::vector<std::string>& models,
                                                 std::int64_t rpm, std::int64_t tpm,
                                                 std::int64_t budget_tokens) override;
  Result<std::vector<KeyInfo>> List() override;
  Status Revoke(const std::string& id) override;
  Result<bool> HasAnyKey() override;
  Result<KeyInfo> Authenticate(std::string_view token) override;
  Result<Reservation> Reserve(const KeyInfo& key, std::int64_t tokens) override;
  void Reconcile(const Reservation& r, std::int64_t actual_tokens) override;
  Status Ping() override;

 private:
  // A pooled connection, returned on destruction (or closed when it broke).
  class Lease {
   public:
    Lease(PostgresKeyStore* store, PGconn* conn) : store_(store), conn_(conn) {}
    Lease(Lease&& o) noexcept : store_(o.store_), conn_(o.conn_) { o.conn_ = nullptr; }
    ~Lease() {
      if (conn_) store_->Release(conn_);
    }
    PGconn* get() const { return conn_; }

   private:
    PostgresKeyStore* store_;
    PGconn* conn_;
  };

  Status Unreachable(const std::string& detail) const {
    return Unavailable("server: the shared key store " + options_.url +
                       " cannot be reached: " + detail);
  }
  Result<PGconn*> Connect();
  Result<Lease> Acquire();
  void Release(PGconn* conn);
  // Runs one statement with text parameters. A broken connection (or one that timed out) gives
  // kUnavailable; an error the server reported gives kIo.
  Result<PgResult> Exec(PGconn* conn, const char* sql, const std::vector<std::string>& params,
                        ExecStatusType want);
  Result<PgResult> Run(const char* sql, const std::vector<std::string>& params,
                       ExecStatusType want = PGRES_TUPLES_OK);

  PostgresOptions options_;
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<PGconn*> idle_;
  std::set<PGconn*> broken_;  // in use, to be closed when released (see Exec)
  int open_ = 0;
  std::atomic<bool> any_key_seen_{false};  // HasAnyKey found one: rows are never deleted
  // Ping's own connection: a probe never waits behind requests for a pooled one.
  std::mutex probe_mu_;
  PGconn* probe_conn_ = nullptr;
};

Status PostgresKeyStore::Ping() {
  std::lock_guard<std::mutex> lock(probe_mu_);
  if (probe_conn_ && PQstatus(probe_conn_) != CONNECTION_OK) {
    PQfinish(probe_conn_);
    probe_conn_ = nullptr;
  }
  if (!probe_conn_) {
    AIRLOCK_ASSIGN_OR_RETURN(probe_conn_, Connect());
  }
  auto answered = Exec(probe_conn_, "SELECT 1", {}, PGRES_TUPLES_OK);
  if (answered) return Status::Ok();
  {
    std::lock_guard<std::mutex> pool_lock(pool_mu_);
    broken_.erase(probe_conn_);
  }
  PQfinish(probe_conn_);
  probe_conn_ = nullptr;
  return Unreachable(answered.error().message());
}

Result<PGconn*> PostgresKeyStore::Connect() { return ConnectPostgres(options_); }

Result<PostgresKeyStore::Lease> PostgresKeyStore::Acquire() {
  std::unique_lock<std::mutex> lock(pool_mu_);
  bool free = pool_cv_.wait_for(lock, std::chrono::seconds(10), [this] {
    return !idle_.empty() || open_ < options_.max_connections;
  });
  if (!free) return Unreachable("no free database connection within 10 s");
  if (!idle_.empty()) {
    PGconn* c = idle_.back();
    idle_.pop_back();
    return Lease(this, c);
  }
  ++open_;
  lock.unlock();
  auto conn = Connect();
  if (!conn) {
    std::lock_guard<std::mutex> relock(pool_mu_);
    --open_;
    pool_cv_.notify_one();
    return conn.error();
  }
  return Lease(this, *conn);
}

void PostgresKeyStore::Release(PGconn* conn) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  bool broken = broken_.erase(conn) > 0;
  if (!broken && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE) {
    idle_.push_back(conn);
  } else {
    PQfinish(conn);
    --open_;
  }
  pool_cv_.notify_one();
}

Result<PgResult> PostgresKeyStore::Exec(PGconn* conn, const char* sql,
                                        const std::vector<std::string>& params,
                                        ExecStatusType want) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PgResult r(PQexecParams(conn, sql, static_cast<int>(values.size()), nullptr, values.data(),
                          nullptr, nullptr, 0));
  if (r && PQresultStatus(r.get()) == want) return r;
  std::string detail = PgFirstLine(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn));
  const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
  // Connection exceptions (08...), shutdowns (57P0x) and statement/lock timeouts (57014,
  // 55P03) mean the database is not serving us right now. So does an error without SQLSTATE:
  // libpq made it, not the server (after a server crash, "server closed the connection
  // unexpectedly" comes while PQstatus still says CONNECTION_OK); such a connection is closed
  // when it is released.
  std::string sqlstate = state ? state : "";
  if (sqlstate.empty() && PQstatus(conn) == CONNECTION_OK) {
    std::lock_guard<std::mutex> lock(pool_mu_);
    broken_.insert(conn);
  }
  if (sqlstate.empty() || PQstatus(conn) != CONNECTION_OK || sqlstate.rfind("08", 0) == 0 ||
      sqlstate.rfind("57", 0) == 0 || sqlstate == "55P03")
    return Unreachable(detail);
  return IoError("server: the shared key store " + options_.url + " failed: " + detail);
}

Result<PgResult> PostgresKeyStore::Run(const char* sql, const std::vector<std::string>& params,
                                       ExecStatusType want) {
  AIRLOCK_ASSIGN_OR_RETURN(Lease lease, Acquire());
  return Exec(lease.get(), sql, params, want);
}

Status PostgresKeyStore::Migrate() {
  AIRLOCK_ASSIGN_OR_RETURN(Lease lease, Acquire());
  PGconn* c = lease.get();
  auto rollback = [c] { PQclear(PQexec(c, "ROLLBACK")); };
  AIRLOCK_TRY(Exec(c, "BEGIN", {}, PGRES_COMMAND_OK).status());
  // Replicas starting together: one migrates, the others wait here and then find it done.
  auto steps = [&]() -> Status {
    AIRLOCK_TRY(
        Exec(c, "SELECT pg_advisory_xact_lock(7364021585110211)", {}, PGRES_TUPLES_OK).status());
    AIRLOCK_TRY(Exec(c,
                     "CREATE TABLE IF NOT EXISTS airlock_schema_version (version INTEGER NOT "
                     "NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                     {}, PGRES_COMMAND_OK)
                    .status());
    AIRLOCK_ASSIGN_OR_RETURN(
        PgResult v, Exec(c, "SELECT coalesce(max(version), 0) FROM airlock_schema_version", {},
                         PGRES_TUPLES_OK));
    std::int64_t version = Int(v.get(), 0, 0);
    if (version > kPostgresSchemaVersion)
      return Unsupported("server: the shared key store " + options_.url + " has schema version " +
                         std::to_string(version) + ", newer than this airlock's (" +
                         std::to_string(kPostgresSchemaVersion) + "): upgrade airlock");
    for (std::int64_t step = version; step < kPostgresSchemaVersion; ++step) {
      PgResult r(PQexec(c, kMigrations[step]));
      if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK)
        return IoError("server: migrating the shared key store " + options_.url +
                       " to schema version " + std::to_string(step + 1) + " failed: " +
                       PgFirstLine(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(c)));
      AIRLOCK_TRY(Exec(c, "INSERT INTO airlock_schema_version (version) VALUES ($1)",
                       {std::to_string(step + 1)}, PGRES_COMMAND_OK)
                      .status());
    }
    return Exec(c, "COMMIT", {}, PGRES_COMMAND_OK).status();
  };
  Status s = steps();
  if (!s.ok()) rollback();
  return s;
}

Result<std::pair<std::string, KeyInfo>> PostgresKeyStore::Create(
    const std::string& name, const std::vector<std::string>& models, std::int64_t rpm,
    std::int64_t tpm, std::int64_t budget_tokens) {
  AIRLOCK_TRY(ValidateNewKey(name, models, rpm, tpm, budget_tokens));
  AIRLOCK_ASSIGN_OR_RETURN(auto id_token, NewIdAndToken());
  KeyInfo info;
  info.id = id_token.first;
  info.name = name;
  info.created_ms = NowMs();
  info.models = models;
  info.rpm = rpm;
  info.tpm = tpm;
  info.budget_tokens = budget_tokens;
  std::string hash_hex = core::ToHex(core::Sha256Of(id_token.second));
  AIRLOCK_TRY(Run("INSERT INTO airlock_keys (id, hash, name, created_ms, models, rpm, tpm, "
                  "budget_tokens) VALUES ($1, decode($2, 'hex'), $3, $4, $5, $6, $7, $8)",
                  {info.id, hash_hex, name, std::to_string(info.created_ms), ModelsJson(models),
                   std::to_string(rpm), std::to_string(tpm), std::to_string(budget_tokens)},
                  PGRES_COMMAND_OK)
                  .status());
  return std::make_pair(id_token.second, info);
}

Result<std::vector<KeyInfo>> PostgresKeyStore::List() {
  std::string sql = std::string("SELECT ") + kKeyColumns + " FROM airlock_keys ORDER BY created_ms";
  AIRLOCK_ASSIGN_OR_RETURN(PgResult r, Run(sql.c_str(), {}));
  std::vector<KeyInfo> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(RowToInfo(r.get(), i));
  return out;
}

Status PostgresKeyStore::Revoke(const std::string& id) {
  AIRLOCK_ASSIGN_OR_RETURN(
      PgResult r, Run("UPDATE airlock_keys SET revoked = TRUE WHERE id = $1 RETURNING id", {id}));
  if (PQntuples(r.get()) == 0) return NotFound("server: keys: no key with id '" + id + "'");
  return Status::Ok();
}

Result<bool> PostgresKeyStore::HasAnyKey() {
  // "Yes" is final (keys are revoked, never deleted), so it is remembered; "no" (every request
  // anonymous) is asked again each time.
  if (any_key_seen_.load()) return true;
  AIRLOCK_ASSIGN_OR_RETURN(PgResult r, Run("SELECT EXISTS (SELECT 1 FROM airlock_keys)", {}));
  bool any = Text(r.get(), 0, 0) == "t";
  if (any) any_key_seen_ = true;
  return any;
}

Result<KeyInfo> PostgresKeyStore::Authenticate(std::string_view token) {
  Status denied = PermissionDenied("server: invalid API key");
  std::optional<std::string> id = TokenId(token);
  if (!id) return denied;
  std::string presented = core::ToHex(core::Sha256Of(token));
  std::string sql = std::string("SELECT ") + kKeyColumns +
                    ", encode(hash, 'hex') FROM airlock_keys WHERE id = $1";
  AIRLOCK_ASSIGN_OR_RETURN(PgResult r, Run(sql.c_str(), {*id}));
  if (PQntuples(r.get()) != 1) return denied;
  std::string stored = Text(r.get(), 0, 9);
  bool match = stored.size() == presented.size() &&
               CRYPTO_memcmp(stored.data(), presented.data(), presented.size()) == 0;
  KeyInfo info = RowToInfo(r.get(), 0);
  if (!match || info.revoked) return denied;
  return info;
}

Result<Reservation> PostgresKeyStore::Reserve(const KeyInfo& key, std::int64_t tokens) {
  if (tokens < 0) tokens = 0;
  AIRLOCK_ASSIGN_OR_RETURN(
      PgResult r,
      Run("SELECT reservation_id, outcome, used, reserved, limit_value FROM airlock_reserve($1, "
          "$2, $3)",
          {key.id, std::to_string(tokens), std::to_string(options_.reservation_lease_s)}));
  if (PQntuples(r.get()) != 1) return IoError("server: airlock_reserve returned no row");
  std::string outcome = Text(r.get(), 0, 1);
  std::string limit = std::to_string(Int(r.get(), 0, 4));
  if (outcome == "ok")
    return Reservation{key.id, tokens, static_cast<std::uint64_t>(Int(r.get(), 0, 0))};
  if (outcome == "revoked") return PermissionDenied("server: invalid API key");
  if (outcome == "rpm")
    return LimitExceeded("rate limit reached: " + limit + " requests per minute");
  if (outcome == "tpm")
    return LimitExceeded("token rate limit reached: " + limit +
                         " tokens per minute (this request may use up to " +
                         std::to_string(tokens) + ")");
  return LimitExceeded("token budget exhausted: " + std::to_string(Int(r.get(), 0, 2)) + " of " +
                       limit + " used, " + std::to_string(Int(r.get(), 0, 3)) +
                       " reserved by requests in flight (all replicas)");
}

void PostgresKeyStore::Reconcile(const Reservation& r, std::int64_t actual_tokens) {
  if (actual_tokens < 0) actual_tokens = 0;
  auto settled = Run("SELECT airlock_settle($1, $2)",
                     {std::to_string(r.serial), std::to_string(actual_tokens)});
  // The reservation stays in the database and is charged in full when its lease expires: a
  // failed settlement can over-charge a key, never under-charge it.
  if (!settled)
    std::fprintf(stderr,
                 "airlock serve: settling reservation %llu of key %s failed (it will be charged "
                 "in full when its lease expires): %s\n",
                 static_cast<unsigned long long>(r.serial), r.key_id.c_str(),
                 settled.error().message().c_str());
}

}  // namespace

Result<PGconn*> ConnectPostgres(const PostgresOptions& options) {
  auto unreachable = [&options](const std::string& detail) {
    return Unavailable("server: the shared key store " + options.url +
                       " cannot be reached: " + detail);
  };
  // connect_timeout first, so that a value in the URL overrides it; the password after the URL
  // (the URL has none), so that it comes only from the file or the environment.
  std::vector<const char*> keys = {"connect_timeout", "dbname", "application_name"};
  std::vector<const char*> values = {"5", options.url.c_str(), "airlock"};
  if (!options.password.empty()) {
    keys.push_back("password");
    values.push_back(options.password.c_str());
  }
  // Bounded statements: a lock or query that hangs is an outage, not a stuck request.
  keys.push_back("options");
  values.push_back(
      "-c statement_timeout=10000 -c lock_timeout=10000 -c client_min_messages=warning");
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* conn = PQconnectdbParams(keys.data(), values.data(), 1);
  if (!conn) return unreachable("out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string detail = PgFirstLine(PQerrorMessage(conn));
    PQfinish(conn);
    return unreachable(detail);
  }
  // The server's warnings (e.g. "terminating connection due to immediate shutdown") go to the
  // log as ours do, not bare on stderr.
  PQsetNoticeProcessor(
      conn,
      [](void*, const char* message) {
        std::fprintf(stderr, "airlock: the shared key store says: %s", message);
      },
      nullptr);
  return conn;
}

Status ValidatePostgresUrl(const std::string& url) {
  if (url.rfind("postgresql://", 0) != 0 && url.rfind("postgres://", 0) != 0)
    return InvalidArgument("server: [store] url must start with postgresql:// (got a URL of " +
                           std::to_string(url.size()) + " characters that does not)");
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &error);
  if (!parsed) {
    // libpq's message may quote the URL, password included: not repeated.
    PQfreemem(error);
    return InvalidArgument(
        "server: [store] url is not a valid PostgreSQL connection URL (libpq cannot parse it)");
  }
  bool has_password = false;
  for (PQconninfoOption* o = parsed; o->keyword; ++o)
    if (std::string_view(o->keyword) == "password" && o->val && *o->val) has_password = true;
  PQconninfoFree(parsed);
  if (has_password)
    return InvalidArgument(
        "server: [store] url holds a password: put it in a file named by [store] "
        "password_file (or an environment variable named by password_env) instead, so that it "
        "is never printed with the URL");
  return Status::Ok();
}

Result<std::unique_ptr<KeyStore>> OpenPostgresKeyStore(const PostgresOptions& options) {
  AIRLOCK_TRY(ValidatePostgresUrl(options.url));
  auto store = std::make_unique<PostgresKeyStore>(options);
  AIRLOCK_TRY(store->Migrate());
  return std::unique_ptr<KeyStore>(std::move(store));
}

}  // namespace airlock::server::internal
