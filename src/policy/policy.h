// The gateway's data policy, parsed from a TOML file: upstreams (with jurisdiction and the data
// classes they may receive in clear), local models, enabled detectors, rules mapping data classes
// to actions, reasoning handling, audit and server settings. Decide() turns the data classes found
// in a request plus its routing target into a verdict (allow / transform / block).
// Egress is deny-by-default: only upstreams declared here are ever contacted, and an upstream only
// receives a detected data class in clear when it lists it in allowed_data_classes.
// Ownership: plain values. Thread-safety: a const Policy is safe to share between threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "policy/detectors.h"

namespace airlock::policy {

enum class Action { kAllow, kRedact, kPseudonymize, kBlock, kRestrict };
std::string_view ActionName(Action a);

enum class ReasoningAction { kPass, kStrip, kLog };
std::string_view ReasoningActionName(ReasoningAction a);

struct Upstream {
  std::string name;
  std::string base_url;      // e.g. "http://127.0.0.1:9000/v1" or "https://api.example.com/v1"
  std::string api_key_env;   // name of the environment variable holding its key (may be empty)
  std::string jurisdiction;  // ISO country/region code, upper case ("US", "CN", "EU", "DE")
  std::vector<DataClass> allowed_data_classes;
  std::vector<std::string> models;  // model names routed to this upstream
  int timeout_s = 60;
  // Identity of an https upstream, checked during the TLS handshake, before any byte of a request
  // is sent (docs/security.md, "Upstream identity"). All optional; each one set must hold.
  std::string ca_file;  // PEM CA bundle for https upstreams (default: the system store)
  // RFC 7469 pins (base64 SHA-256 of a DER SubjectPublicKeyInfo): some key of the verified chain
  // must be one of them. Several allow rotation.
  std::vector<std::string> spki_sha256;
  std::string subject;       // the leaf certificate's subject, RFC 2253 form, exactly
  std::string organization;  // one of the leaf subject's O (organizationName) values, exactly
  std::string client_cert;   // PEM certificate presented to the upstream (mTLS; the first one)
  std::string client_key;    // its PEM private key
};

// An upstream base_url split into its parts. Only scheme, host, port and path are allowed.
struct BaseUrl {
  std::string scheme;  // "http" or "https"
  std::string host;    // a name or an IP address (IPv6 without brackets)
  int port = 0;        // 1..65535 (80/443 when absent)
  std::string path;    // "" or "/v1", no trailing slash
};
// Errors (kInvalidArgument, naming the problem): another scheme, userinfo ("user@"), a query, a
// fragment, "." or ".." path segments, percent-encoding or backslashes in the path, an empty or
// malformed host, a port that is not a number in 1..65535.
Result<BaseUrl> ParseBaseUrl(std::string_view url);

struct LocalModel {
  std::string name;
  std::string path;  // GGUF file
  // Public key (PEM) the model's OpenSSF model-signing signature must verify with before it is
  // loaded; empty: `[server] require_signature` (when set) applies.
  std::string require_signature;
};

// Which way a rule applies: requests (what leaves for a model), responses (what a model answers,
// reasoning included), or both (the default).
enum class Direction { kBoth, kRequest, kResponse };

struct Rule {
  std::vector<DataClass> data_classes;
  Action action = Action::kAllow;
  Direction direction = Direction::kBoth;
  // For kRestrict: jurisdictions the data may go to in clear; "local" means local models.
  std::vector<std::string> allow_jurisdictions;
};

struct AuditSettings {
  std::string path = "airlock-audit.db";
  bool store_text = false;  // keep full prompt/response text in records
  // Ed25519 PEM private key signing checkpoints; created (with its .pub) when absent. Empty:
  // "<path>.key". Anyone who can read it can sign checkpoints: the anchors below are what a
  // machine owner cannot rewrite.
  std::string signing_key;
  std::string origin;      // checkpoint origin line; empty: chosen when the log is created
  std::string public_key;  // pinned key for `airlock audit verify` (PEM .pub or verifier key)
  std::vector<std::string> anchor_files;  // append-only files receiving every checkpoint
  bool syslog = false;                    // also log every checkpoint to syslog/journald
  std::vector<std::string> witnesses;     // tlog-witness URLs (http://host:port[/prefix])
  std::vector<std::string> witness_keys;  // their cosignature verifier keys (optional)
  int checkpoint_every = 100;             // records between signed checkpoints
  // With a [store] url: also append every checkpoint to the shared store, for `audit verify` of
  // the whole deployment (docs/deploy.md). false for a log that is not kept (e.g. a local-model
  // worker behind an auditing gateway, its log on an emptyDir).
  bool publish_to_store = true;
  // false (default): synchronous=NORMAL in WAL mode, safe against kill -9 of the server.
  // true: SQLite synchronous=FULL, every group commit is fsync'd (also survives power loss).
  bool fsync = false;
};

struct ServerSettings {
  std::string keys_db = "airlock-keys.db";
  std::size_t max_body_bytes = 1 << 20;
  int header_timeout_s = 10;     // request line and headers (and the TLS handshake), from connect
  int read_timeout_s = 10;       // the whole request body, once the headers are in
  int write_timeout_s = 30;      // each write to the client
  int keep_alive_timeout_s = 5;  // idle keep-alive connection: next request's headers within it
  int keep_alive_max_requests = 100;
  int max_connections = 4096;            // open client connections in total
  int max_connections_per_address = 64;  // from one client address bucket (see below)
  // Completions in flight at once from one client address bucket / one API key; above either the
  // request gets 429 (Retry-After) and is audited. 0: derived from `threads` (a quarter / a half
  // of it, at least 1), so that one client can never hold every worker. Set values must be below
  // `threads`.
  int max_completions_per_address = 0;
  int max_completions_per_key = 0;
  // Clients are counted per address bucket: an IPv4 address, or an IPv6 prefix of this many bits
  // (one host usually holds a whole /64). Applies to the connection and completion caps.
  int ipv6_client_prefix = 64;
  std::string tls_cert;      // PEM certificate chain; with tls_key: HTTPS (reloaded on SIGHUP)
  std::string tls_key;       // PEM private key
  int drain_timeout_s = 30;  // SIGTERM: in-flight requests may finish within it, then cancelled
  // Overall limit for one completion request, streamed or not (an upstream that keeps a stream
  // open with comments, or trickles a response, is cut off here: 504).
  int request_timeout_s = 600;
  int threads = 64;
  // The completion caps in effect (the set values, or those derived from `threads`).
  int CompletionsPerAddress() const {
    return max_completions_per_address > 0 ? max_completions_per_address : std::max(1, threads / 4);
  }
  int CompletionsPerKey() const {
    return max_completions_per_key > 0 ? max_completions_per_key : std::max(1, threads / 2);
  }
  int default_max_tokens = 1024;  // used for budget reservations when a request sets none
  // false: GET /metrics needs an API key whenever keys exist (like every other endpoint but
  // /health); true: anyone who can reach the port may scrape it.
  bool public_metrics = false;
  // Public key (PEM) every local model's signature must verify with before it is loaded, unless
  // its [[local_models]] entry names its own key. Empty: no signature required.
  std::string require_signature;
};

// Shared gateway state for several replicas (server/keys.h): keys, budgets and rate limits in
// PostgreSQL. Empty url: the SQLite file [server] keys_db.
struct StoreSettings {
  std::string url;            // postgresql://user@host:port/db?sslmode=... (no password in it)
  std::string password_file;  // a file holding the password (e.g. a mounted secret)
  std::string password_env;   // or the environment variable holding it
};

struct Policy {
  std::vector<Upstream> upstreams;
  std::vector<LocalModel> local_models;
  std::vector<DataClass> detectors;  // enabled classes; empty = all
  std::vector<Rule> rules;
  ReasoningAction reasoning = ReasoningAction::kPass;
  AuditSettings audit;
  ServerSettings server;
  StoreSettings store;

  // The upstream serving `model`, or nullptr.
  const Upstream* FindUpstreamForModel(std::string_view model) const;
  const LocalModel* FindLocalModel(std::string_view model) const;
};

// Parses a policy from TOML text. `origin` names it in error messages. Errors: kInvalidArgument
// with the offending key and line ("policy: unknown data class 'mail' at rules[2].data_classes").
Result<Policy> ParsePolicy(std::string_view toml_text, std::string_view origin = "policy");
// Reads and parses a file. Errors: kNotFound, kIo, kInvalidArgument.
Result<Policy> LoadPolicy(const std::string& path);

// Where a request is going.
struct Target {
  bool local = false;                  // a local model
  const Upstream* upstream = nullptr;  // set when !local
};

struct Verdict {
  bool blocked = false;
  std::string reason;  // for blocked verdicts: which class and rule refused it (no data values)
  // Per detected class, the action applied (kAllow, kRedact, kPseudonymize).
  std::map<DataClass, Action> actions;
};

// Decides what happens to a request whose text contains `found` classes, sent to `target`.
// Rules with direction "response" are skipped.
Verdict Decide(const Policy& policy, const std::vector<DataClass>& found, const Target& target);

// Decides what happens to model output that contains `found` classes: the first rule for a class
// whose direction covers responses applies; block blocks, redact and pseudonymize both redact
// (there is nobody to restore a placeholder for), allow and restrict let it pass.
Verdict DecideResponse(const Policy& policy, const std::vector<DataClass>& found);

}  // namespace airlock::policy
