// API keys for the gateway: stored in SQLite only as SHA-256 hashes (keys are 256-bit random, so a
// fast hash suffices), compared in constant time, with per-key allowed models, rate limits
// (requests and tokens per minute) and a token budget. Admission is reserve-then-reconcile under
// one lock: a request reserves its worst-case token cost before it is forwarded and is charged its
// actual cost afterwards, so concurrent requests can never overspend a budget or a TPM limit.
// Ownership: KeyStore owns its SQLite connection. Thread-safety: all methods are thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

struct sqlite3;

namespace airlock::server {

struct KeyInfo {
  std::string id;    // public identifier, e.g. "3f9a0c1b7d2e"
  std::string name;  // human label
  std::int64_t created_ms = 0;
  bool revoked = false;
  std::vector<std::string> models;  // empty: all models
  std::int64_t rpm = 0;             // requests per minute; 0: unlimited
  std::int64_t tpm = 0;             // tokens per minute; 0: unlimited
  std::int64_t budget_tokens = 0;   // lifetime token budget; 0: unlimited
  std::int64_t used_tokens = 0;
};

struct Reservation {
  std::string key_id;
  std::int64_t tokens = 0;
  std::uint64_t serial = 0;
};

class KeyStore {
 public:
  // Opens or creates the key database. Errors: kIo.
  static Result<std::unique_ptr<KeyStore>> Open(const std::string& path);
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  // Creates a key; returns the secret token (shown once, never stored) and its info. Errors:
  // kInvalidArgument (a negative limit; a name or model holding control characters, bidi
  // overrides or invalid UTF-8; an empty model name).
  Result<std::pair<std::string, KeyInfo>> Create(const std::string& name,
                                                 const std::vector<std::string>& models,
                                                 std::int64_t rpm, std::int64_t tpm,
                                                 std::int64_t budget_tokens);
  Result<std::vector<KeyInfo>> List();
  // Errors: kNotFound.
  Status Revoke(const std::string& id);
  // Whether any non-revoked key exists.
  Result<bool> HasActiveKeys();
  // Validates a bearer token. Errors: kPermissionDenied (unknown, malformed or revoked key; the
  // message never contains the token).
  Result<KeyInfo> Authenticate(std::string_view token);

  // Admits a request costing at most `tokens`. Errors: kLimitExceeded with a reason (rate limit,
  // token rate limit, budget exhausted).
  Result<Reservation> Reserve(const KeyInfo& key, std::int64_t tokens);
  // Charges the actual cost and frees the reservation. The gateway caps max_tokens and estimates
  // prompt tokens from above, so for a compliant upstream actual <= reserved. Pass 0 for a request
  // that failed before the upstream did any work.
  void Reconcile(const Reservation& r, std::int64_t actual_tokens);

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
  explicit KeyStore(sqlite3* db, std::string path);

  sqlite3* db_;
  std::string path_;
  std::mutex db_mu_;
  std::mutex admit_mu_;
  std::map<std::string, KeyState> state_;
  std::uint64_t next_serial_ = 1;
};

}  // namespace airlock::server
