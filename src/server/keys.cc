#include "server/keys.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/hash.h"
#include "core/text.h"
#include "server/internal/key_tokens.h"

namespace airlock::server {
namespace internal {

constexpr std::string_view kPrefix = "ak_";

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string RandomHex(std::size_t bytes) {
  std::vector<std::uint8_t> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) return "";
  return core::ToHex(buf);
}

std::optional<std::string> TokenId(std::string_view token) {
  if (token.size() != kPrefix.size() + 12 + 1 + 64 || token.substr(0, 3) != kPrefix ||
      token[kPrefix.size() + 12] != '_')
    return std::nullopt;
  return std::string(token.substr(kPrefix.size(), 12));
}

Status ValidateNewKey(const std::string& name, const std::vector<std::string>& models,
                      std::int64_t rpm, std::int64_t tpm, std::int64_t budget_tokens) {
  if (rpm < 0 || tpm < 0 || budget_tokens < 0)
    return InvalidArgument("server: keys create: limits must be >= 0");
  // Names and models are printed by `keys list` and logged: no terminal control sequences.
  if (core::HasUnsafeTerminalText(name))
    return InvalidArgument(
        "server: keys create: the name contains control characters or invalid UTF-8");
  for (const auto& m : models)
    if (m.empty() || core::HasUnsafeTerminalText(m))
      return InvalidArgument(
          "server: keys create: a model name is empty or contains control characters (an empty "
          "--models list would mean every model)");
  return Status::Ok();
}

Result<std::pair<std::string, std::string>> NewIdAndToken() {
  std::string id = RandomHex(6);
  std::string secret = RandomHex(32);
  if (id.empty() || secret.empty()) return Internal("server: keys: no randomness");
  return std::make_pair(id, std::string(kPrefix) + id + "_" + secret);
}

std::optional<std::vector<std::string>> ParseModels(const std::string& json_text) {
  nlohmann::json models = nlohmann::json::parse(json_text, nullptr, false);
  if (!models.is_array()) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& m : models) {
    if (!m.is_string() || m.get_ref<const std::string&>().empty()) return std::nullopt;
    out.push_back(m.get<std::string>());
  }
  return out;
}

std::string ModelsJson(const std::vector<std::string>& models) {
  return nlohmann::json(models).dump();
}

}  // namespace internal

namespace {

using namespace internal;

Status SqlError(sqlite3* db, const std::string& what, const std::string& path) {
  return IoError("server: keys " + what + " at " + path + ": " + sqlite3_errmsg(db));
}

KeyInfo RowToInfo(sqlite3_stmt* s) {
  KeyInfo k;
  auto text = [s](int c) {
    const unsigned char* t = sqlite3_column_text(s, c);
    return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
  };
  k.id = text(0);
  k.name = text(1);
  k.created_ms = sqlite3_column_int64(s, 2);
  k.revoked = sqlite3_column_int64(s, 3) != 0;
  // An empty list means "every model", so a models column that cannot be read exactly (not a JSON
  // array of non-empty strings: a hand edit, a bad migration, another tool) must not widen the key
  // to every model: the key is treated as revoked instead.
  if (auto models = ParseModels(text(4))) {
    k.models = std::move(*models);
  } else {
    k.revoked = true;
  }
  k.rpm = sqlite3_column_int64(s, 5);
  k.tpm = sqlite3_column_int64(s, 6);
  k.budget_tokens = sqlite3_column_int64(s, 7);
  k.used_tokens = sqlite3_column_int64(s, 8);
  return k;
}

constexpr const char* kColumns =
    "id, name, created_ms, revoked, models, rpm, tpm, budget_tokens, used_tokens";

// One machine: usage persisted in SQLite, reservations and rate windows in this process (so
// several processes on one SQLite file do not share them: use [store] url for replicas).
class SqliteKeyStore final : public KeyStore {
 public:
  SqliteKeyStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqliteKeyStore() override {
    for (sqlite3_stmt* s : {count_keys_, lookup_, add_usage_}) sqlite3_finalize(s);
    sqlite3_close(db_);
  }
  std::string Describe() const override { return path_; }
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

 private:
  struct WindowEntry {
    std::int64_t time_ms;
    std::int64_t tokens;
    std::uint64_t serial;
  };
  struct KeyState {
    bool loaded = false;
    std::int64_t used = 0;      // persisted usage
    std::int64_t reserved = 0;  // in-flight reservations
    std::deque<WindowEntry> window;
  };

  // The statement `sql` prepared once (kept in *slot, guarded by db_mu_) and reset for a new use;
  // nullptr when it cannot be prepared. Every request runs these: parsing the SQL each time was
  // a visible share of a proxied request's CPU. Callers reset it once read, so that no read
  // transaction stays open (it would hide keys created by `airlock keys create` meanwhile).
  sqlite3_stmt* Cached(sqlite3_stmt** slot, const char* sql) {
    if (*slot == nullptr &&
        sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, nullptr) != SQLITE_OK) {
      sqlite3_finalize(*slot);
      *slot = nullptr;
      return nullptr;
    }
    sqlite3_reset(*slot);
    sqlite3_clear_bindings(*slot);
    return *slot;
  }

  sqlite3* db_;
  std::string path_;
  std::mutex db_mu_;
  sqlite3_stmt* count_keys_ = nullptr;
  sqlite3_stmt* lookup_ = nullptr;
  sqlite3_stmt* add_usage_ = nullptr;
  std::mutex admit_mu_;
  std::map<std::string, KeyState> state_;
  std::uint64_t next_serial_ = 1;
};

}  // namespace

Result<std::unique_ptr<KeyStore>> KeyStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    Status s = SqlError(db, "cannot open database", path);
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 5000);
  const char* schema =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS keys(id TEXT PRIMARY KEY, hash BLOB NOT NULL, name TEXT,"
      " created_ms INTEGER, revoked INTEGER NOT NULL DEFAULT 0, models TEXT NOT NULL DEFAULT '[]',"
      " rpm INTEGER NOT NULL DEFAULT 0, tpm INTEGER NOT NULL DEFAULT 0,"
      " budget_tokens INTEGER NOT NULL DEFAULT 0, used_tokens INTEGER NOT NULL DEFAULT 0);";
  if (sqlite3_exec(db, schema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    Status s = SqlError(db, "cannot initialise schema", path);
    sqlite3_close(db);
    return s;
  }
  return std::unique_ptr<KeyStore>(new SqliteKeyStore(db, path));
}

Result<std::pair<std::string, KeyInfo>> SqliteKeyStore::Create(
    const std::string& name, const std::vector<std::string>& models, std::int64_t rpm,
    std::int64_t tpm, std::int64_t budget_tokens) {
  AIRLOCK_TRY(ValidateNewKey(name, models, rpm, tpm, budget_tokens));
  AIRLOCK_ASSIGN_OR_RETURN(auto id_token, NewIdAndToken());
  KeyInfo info;
  info.id = id_token.first;
  const std::string& token = id_token.second;
  core::Digest256 hash = core::Sha256Of(token);
  info.name = name;
  info.created_ms = NowMs();
  info.models = models;
  info.rpm = rpm;
  info.tpm = tpm;
  info.budget_tokens = budget_tokens;
  std::lock_guard<std::mutex> lock(db_mu_);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "INSERT INTO keys(id, hash, name, created_ms, models, rpm, tpm, "
                         "budget_tokens) VALUES(?,?,?,?,?,?,?,?)",
                         -1, &s, nullptr) != SQLITE_OK)
    return SqlError(db_, "prepare insert", path_);
  std::string models_json = ModelsJson(models);
  sqlite3_bind_text(s, 1, info.id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(s, 2, hash.data(), static_cast<int>(hash.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 3, name.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 4, info.created_ms);
  sqlite3_bind_text(s, 5, models_json.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 6, rpm);
  sqlite3_bind_int64(s, 7, tpm);
  sqlite3_bind_int64(s, 8, budget_tokens);
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return SqlError(db_, "insert", path_);
  return std::make_pair(token, info);
}

Result<std::vector<KeyInfo>> SqliteKeyStore::List() {
  std::lock_guard<std::mutex> lock(db_mu_);
  sqlite3_stmt* s = nullptr;
  std::string sql = std::string("SELECT ") + kColumns + " FROM keys ORDER BY created_ms";
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
    return SqlError(db_, "list", path_);
  std::vector<KeyInfo> out;
  while (sqlite3_step(s) == SQLITE_ROW) out.push_back(RowToInfo(s));
  sqlite3_finalize(s);
  return out;
}

Status SqliteKeyStore::Revoke(const std::string& id) {
  std::lock_guard<std::mutex> lock(db_mu_);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, "UPDATE keys SET revoked=1 WHERE id=?", -1, &s, nullptr) != SQLITE_OK)
    return SqlError(db_, "revoke", path_);
  sqlite3_bind_text(s, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return SqlError(db_, "revoke", path_);
  if (sqlite3_changes(db_) == 0) return NotFound("server: keys: no key with id '" + id + "'");
  return Status::Ok();
}

Result<bool> SqliteKeyStore::HasAnyKey() {
  std::lock_guard<std::mutex> lock(db_mu_);
  sqlite3_stmt* s = Cached(&count_keys_, "SELECT EXISTS (SELECT 1 FROM keys)");
  if (s == nullptr) return SqlError(db_, "count", path_);
  int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW) {
    Status error = SqlError(db_, "count", path_);
    sqlite3_reset(s);
    return error;  // the caller fails closed: keys are required
  }
  bool any = sqlite3_column_int64(s, 0) > 0;
  sqlite3_reset(s);
  return any;
}

Result<KeyInfo> SqliteKeyStore::Authenticate(std::string_view token) {
  Status denied = PermissionDenied("server: invalid API key");
  std::optional<std::string> parsed_id = TokenId(token);
  if (!parsed_id) return denied;
  const std::string& id = *parsed_id;
  core::Digest256 presented = core::Sha256Of(token);
  std::lock_guard<std::mutex> lock(db_mu_);
  static const std::string sql = std::string("SELECT ") + kColumns + ", hash FROM keys WHERE id=?";
  sqlite3_stmt* s = Cached(&lookup_, sql.c_str());
  if (s == nullptr) return SqlError(db_, "lookup", path_);
  sqlite3_bind_text(s, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  Result<KeyInfo> result = denied;
  if (sqlite3_step(s) == SQLITE_ROW) {
    const void* stored = sqlite3_column_blob(s, 9);
    int n = sqlite3_column_bytes(s, 9);
    bool match = stored && n == 32 && CRYPTO_memcmp(stored, presented.data(), 32) == 0;
    KeyInfo info = RowToInfo(s);
    if (match && !info.revoked) result = std::move(info);
  }
  sqlite3_reset(s);
  return result;
}

Result<Reservation> SqliteKeyStore::Reserve(const KeyInfo& key, std::int64_t tokens) {
  std::lock_guard<std::mutex> lock(admit_mu_);
  KeyState& st = state_[key.id];
  if (!st.loaded) {
    st.used = key.used_tokens;
    st.loaded = true;
  }
  std::int64_t now = NowMs();
  while (!st.window.empty() && st.window.front().time_ms <= now - 60000) st.window.pop_front();
  if (key.rpm > 0 && static_cast<std::int64_t>(st.window.size()) >= key.rpm)
    return LimitExceeded("rate limit reached: " + std::to_string(key.rpm) + " requests per minute");
  if (key.tpm > 0) {
    std::int64_t in_window = 0;
    for (const WindowEntry& e : st.window) in_window += e.tokens;
    if (in_window + tokens > key.tpm)
      return LimitExceeded("token rate limit reached: " + std::to_string(key.tpm) +
                           " tokens per minute (this request may use up to " +
                           std::to_string(tokens) + ")");
  }
  if (key.budget_tokens > 0 && st.used + st.reserved + tokens > key.budget_tokens)
    return LimitExceeded("token budget exhausted: " + std::to_string(st.used) + " of " +
                         std::to_string(key.budget_tokens) + " used, " +
                         std::to_string(st.reserved) + " reserved by requests in flight");
  Reservation r{key.id, tokens, next_serial_++};
  st.reserved += tokens;
  st.window.push_back({now, tokens, r.serial});
  return r;
}

void SqliteKeyStore::Reconcile(const Reservation& r, std::int64_t actual_tokens) {
  if (actual_tokens < 0) actual_tokens = 0;
  {
    std::lock_guard<std::mutex> lock(admit_mu_);
    KeyState& st = state_[r.key_id];
    st.reserved -= r.tokens;
    st.used += actual_tokens;
    for (WindowEntry& e : st.window)
      if (e.serial == r.serial) e.tokens = actual_tokens;
  }
  if (actual_tokens == 0) return;
  std::lock_guard<std::mutex> lock(db_mu_);
  if (sqlite3_stmt* s =
          Cached(&add_usage_, "UPDATE keys SET used_tokens = used_tokens + ? WHERE id=?")) {
    sqlite3_bind_int64(s, 1, actual_tokens);
    sqlite3_bind_text(s, 2, r.key_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_step(s);
    sqlite3_reset(s);
  }
}

}  // namespace airlock::server
