// Gateway state shared by every request: API keys, token budgets and rate limits, behind one
// interface (KeyStore) with two implementations, selected in one place (OpenKeyStore):
// - SQLite (the embedded default for one machine, `[server] keys_db`): keys stored only as
//   SHA-256 hashes (keys are 256-bit random, so a fast hash suffices), compared in constant time;
//   admission is reserve-then-reconcile under one in-process lock.
// - PostgreSQL (`[store] url = "postgresql://..."`, for N gateway replicas on shared state): the
//   same keys table; a reservation is one atomic statement in the database (the key's row is
//   locked, the budget update is conditional), so replicas together never overspend a budget or
//   exceed a rate limit; revocation is read on every request (no cache). The schema is created and
//   migrated by Airlock (versioned, airlock_schema_version). A database outage fails closed:
//   Authenticate and Reserve return kUnavailable (the gateway answers 503).
// A request reserves its worst-case token cost before it is forwarded and is charged its actual
// cost afterwards, so concurrent requests can never overspend a budget or a TPM limit.
// Ownership: a KeyStore owns its database connections. Thread-safety: all methods are
// thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "policy/policy.h"

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
  // Opens or creates the SQLite key database at `path`. Errors: kIo.
  static Result<std::unique_ptr<KeyStore>> Open(const std::string& path);
  virtual ~KeyStore() = default;

  // Where the state lives, for messages: the SQLite path, or the PostgreSQL URL (which never
  // holds a password).
  virtual std::string Describe() const = 0;

  // Creates a key; returns the secret token (shown once, never stored) and its info. Errors:
  // kInvalidArgument (a negative limit; a name or model holding control characters, bidi
  // overrides or invalid UTF-8; an empty model name).
  virtual Result<std::pair<std::string, KeyInfo>> Create(const std::string& name,
                                                         const std::vector<std::string>& models,
                                                         std::int64_t rpm, std::int64_t tpm,
                                                         std::int64_t budget_tokens) = 0;
  virtual Result<std::vector<KeyInfo>> List() = 0;
  // Errors: kNotFound.
  virtual Status Revoke(const std::string& id) = 0;
  // Whether a key was ever created in this store, revoked and expired ones included (rows are
  // never deleted). A store that has held a key never serves anonymous requests again: revoking
  // the last key must lock the gateway, not open it.
  virtual Result<bool> HasAnyKey() = 0;
  // Validates a bearer token. Errors: kPermissionDenied (unknown, malformed or revoked key; the
  // message never contains the token), kUnavailable (the shared store cannot be reached).
  virtual Result<KeyInfo> Authenticate(std::string_view token) = 0;

  // Admits a request costing at most `tokens`. Errors: kLimitExceeded with a reason (rate limit,
  // token rate limit, budget exhausted), kPermissionDenied (the key was revoked meanwhile),
  // kUnavailable (the shared store cannot be reached: nothing was reserved).
  virtual Result<Reservation> Reserve(const KeyInfo& key, std::int64_t tokens) = 0;
  // Charges the actual cost and frees the reservation. The gateway caps max_tokens and estimates
  // prompt tokens from above, so for a compliant upstream actual <= reserved. Pass 0 for a request
  // that failed before the upstream did any work.
  virtual void Reconcile(const Reservation& r, std::int64_t actual_tokens) = 0;
  // Whether the store answers now (the readiness probe). Errors: kUnavailable. SQLite, a local
  // file, always answers.
  virtual Status Ping() { return Status::Ok(); }

 protected:
  KeyStore() = default;
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;
};

// The one place the store is chosen: PostgreSQL when `[store] url` is set (its password from
// `[store] password_file` or the environment variable `[store] password_env`), else SQLite at
// `[server] keys_db`. A reservation left by a replica that died is charged in full once it is
// older than `[server] request_timeout_s` plus a minute. Errors: kInvalidArgument (a URL that is
// not postgresql:// or that holds a password), kUnavailable (the database cannot be reached),
// kIo.
Result<std::unique_ptr<KeyStore>> OpenKeyStore(const policy::Policy& policy);

}  // namespace airlock::server
