#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "audit/anchors.h"
#include "audit/audit_log.h"
#include "audit/note.h"
#include "audit/witness.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "core/text.h"
#include "policy/policy.h"
#include "server/checkpoints.h"

namespace airlock::cli {
namespace {

struct AuditArgs {
  std::vector<std::string> logs;
  std::string log_dir;  // verify: every *.db in it and in its immediate subfolders
  std::string config;
  std::vector<std::string> public_keys;
  std::vector<std::string> trusted_checkpoints;
  std::string key_id, model, data_class;
  std::int64_t since_ms = 0;
  std::size_t limit = 100;
  bool json = false;
  std::string keygen_path;
  // witness
  std::string state_dir, witness_key, witness_name, host = "127.0.0.1";
  int port = 7380;
  std::vector<std::string> witness_logs;
};

Result<policy::AuditSettings> Settings(const AuditArgs& a) {
  if (!a.config.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(policy::Policy p, policy::LoadPolicy(a.config));
    return p.audit;
  }
  return policy::AuditSettings();
}

Result<std::vector<std::string>> LogPaths(const AuditArgs& a) {
  if (!a.logs.empty()) return a.logs;
  AIRLOCK_ASSIGN_OR_RETURN(policy::AuditSettings s, Settings(a));
  return std::vector<std::string>{s.path};
}

Result<std::string> LogPath(const AuditArgs& a) {
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<std::string> paths, LogPaths(a));
  if (paths.size() != 1) return InvalidArgument("give one --log");
  return paths[0];
}

Result<std::string> ReadTextFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return NotFound("cannot open " + path);
  std::string data;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    data.append(buf, n);
    if (data.size() > 64 * audit::kMaxNoteBytes) {
      std::fclose(f);
      return InvalidArgument(path + " is too large for a checkpoint file");
    }
  }
  std::fclose(f);
  return data;
}

// Text from a log file or a checkpoint is not trusted: no control characters reach the terminal.
std::string Printable(const std::string& s) { return core::TerminalSafe(s); }

int Usage(const std::string& message) {
  std::fprintf(stderr, "airlock audit: %s\n", message.c_str());
  return kExitError;
}

// The audit logs in `dir` and in its immediate subfolders (one per replica volume): files named
// *.db, sorted. Errors: kNotFound (no such folder, or no log in it).
Result<std::vector<std::string>> LogsInFolder(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound("--log-dir " + dir + " is not a folder");
  std::vector<std::string> out;
  auto add_from = [&out](const fs::path& folder) {
    std::error_code e;
    for (const auto& entry : fs::directory_iterator(folder, e))
      if (entry.is_regular_file(e) && entry.path().extension() == ".db")
        out.push_back(entry.path().string());
  };
  add_from(dir);
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_directory(ec)) add_from(entry.path());
  if (out.empty()) return NotFound("--log-dir " + dir + " holds no *.db audit log");
  std::sort(out.begin(), out.end());
  return out;
}

// A checkpoint row of the shared store as a trusted checkpoint: its note must parse and say what
// the row's columns say. Returns the note, or a problem (the row was forged or damaged).
Result<audit::Note> PublishedNote(const server::PublishedCheckpoint& row) {
  auto note = audit::ParseNote(row.note);
  if (!note) return Corrupt("its note is malformed: " + note.error().message());
  auto cp = audit::ParseCheckpointBody(note->body);
  if (!cp) return Corrupt("its note is malformed: " + cp.error().message());
  std::string root = audit::Base64Encode(
      std::string_view(reinterpret_cast<const char*>(cp->root.data()), cp->root.size()));
  if (cp->origin != row.origin || cp->size != row.size || root != row.root_base64)
    return Corrupt("the row says origin '" + row.origin + "' size " + std::to_string(row.size) +
                   " root " + row.root_base64 + " but its note says origin '" + cp->origin +
                   "' size " + std::to_string(cp->size) + " root " + root +
                   ": the row was changed or forged");
  return std::move(*note);
}

int RunVerify(const AuditArgs& a) {
  auto paths = LogPaths(a);
  if (!paths) return Usage(paths.error().message());
  if (!a.log_dir.empty()) {
    auto found = LogsInFolder(a.log_dir);
    if (!found) return Usage(found.error().message());
    if (a.logs.empty()) paths->clear();  // not the policy's default log
    paths->insert(paths->end(), found->begin(), found->end());
  }
  audit::VerifyOptions options;
  std::vector<std::string> key_files = a.public_keys;
  if (key_files.empty()) {
    auto settings = Settings(a);
    if (!settings) return Usage(settings.error().message());
    if (!settings->public_key.empty()) key_files.push_back(settings->public_key);
  }
  if (key_files.empty())
    return Usage(
        "no pinned public key: pass --public-key FILE (the .pub beside the signing key, or a "
        "verifier key) or set [audit] public_key in the policy; a key read from the log itself "
        "proves nothing");
  for (const auto& f : key_files) {
    auto v = audit::LoadNoteVerifier(f);
    if (!v) return Usage(v.error().message());
    options.public_keys.push_back(std::move(*v));
  }
  std::vector<std::pair<std::string, std::string>> trusted_origins;  // origin, file
  for (const auto& f : a.trusted_checkpoints) {
    auto text = f.rfind("http://", 0) == 0 ? audit::FetchText(f) : ReadTextFile(f);
    if (!text) return Usage(text.error().message());
    auto notes = audit::ParseNotes(*text);
    if (!notes) return Usage("trusted checkpoint " + f + ": " + notes.error().message());
    for (auto& n : *notes) {
      auto cp = audit::ParseCheckpointBody(n.body);
      if (!cp) return Usage("trusted checkpoint " + f + ": " + cp.error().message());
      trusted_origins.emplace_back(cp->origin, f);
      options.trusted_checkpoints.push_back(std::move(n));
    }
  }
  bool all_ok = true;
  bool all_complete = true;
  // A deployment's replicas publish their checkpoints to the shared store ([store] url of the
  // policy): every row is a trusted checkpoint of its replica's log.
  std::set<std::string> published_origins;
  if (!a.config.empty()) {
    auto p = policy::LoadPolicy(a.config);
    if (!p) return Usage(p.error().message());
    if (!p->store.url.empty()) {
      auto rows = server::ReadPublishedCheckpoints(*p);
      if (!rows) return Usage(rows.error().message());
      std::printf("%zu checkpoint(s) published to the shared store %s\n", rows->size(),
                  Printable(p->store.url).c_str());
      for (std::size_t i = 0; i < rows->size(); ++i) {
        const server::PublishedCheckpoint& row = (*rows)[i];
        auto note = PublishedNote(row);
        if (!note) {
          all_ok = false;
          std::printf("FAILED %s: checkpoint row %zu of the shared store: %s\n",
                      Printable(row.origin).c_str(), i + 1,
                      Printable(note.error().message()).c_str());
          continue;
        }
        published_origins.insert(row.origin);
        trusted_origins.emplace_back(row.origin, "the shared store");
        options.trusted_checkpoints.push_back(std::move(*note));
      }
    }
  }
  std::vector<std::string> origins;
  for (const auto& path : *paths) {
    auto r = audit::VerifyLog(path, options);
    if (!r) {
      std::fprintf(stderr, "airlock audit: %s\n", r.error().message().c_str());
      return kExitError;
    }
    origins.push_back(r->origin);
    if (r->ok && !r->complete) {
      all_complete = false;
      const std::uint64_t covered = r->records - r->unsigned_tail;
      std::printf(
          "INCOMPLETE %s (%s): %llu of %llu records verified (%llu checkpoints, %llu "
          "signature(s), %llu trusted checkpoint(s) extended); the newest %llu are covered by no "
          "signed checkpoint, so whoever can write the file could have rewritten or added them "
          "(a running server signs them after 5 s without requests, and when it stops: verify "
          "again then)\n",
          Printable(r->origin).c_str(), path.c_str(), static_cast<unsigned long long>(covered),
          static_cast<unsigned long long>(r->records),
          static_cast<unsigned long long>(r->checkpoints),
          static_cast<unsigned long long>(r->signed_checkpoints),
          static_cast<unsigned long long>(r->trusted_checked),
          static_cast<unsigned long long>(r->unsigned_tail));
    } else if (r->ok) {
      std::printf(
          "OK %s (%s): %llu records, %llu checkpoints (%llu signature(s) verified), %llu trusted "
          "checkpoint(s) extended\n",
          Printable(r->origin).c_str(), path.c_str(), static_cast<unsigned long long>(r->records),
          static_cast<unsigned long long>(r->checkpoints),
          static_cast<unsigned long long>(r->signed_checkpoints),
          static_cast<unsigned long long>(r->trusted_checked));
    } else {
      all_ok = false;
      std::printf("FAILED %s (%s): %s\n", Printable(r->origin).c_str(), path.c_str(),
                  Printable(r->first_problem).c_str());
    }
    for (const auto& w : r->warnings)
      std::printf("warning: %s (%s): %s\n", Printable(r->origin).c_str(), path.c_str(),
                  Printable(w).c_str());
    if (!published_origins.empty() && !published_origins.count(r->origin))
      std::printf("warning: %s (%s): no checkpoint of this log is in the shared store\n",
                  Printable(r->origin).c_str(), path.c_str());
  }
  // Each replica has its own origin: two logs under one origin are a fork (or a copy) of one log,
  // and a checkpoint of either would vouch for both.
  for (std::size_t i = 0; i < origins.size(); ++i)
    for (std::size_t j = i + 1; j < origins.size(); ++j)
      if (origins[i] == origins[j]) {
        all_ok = false;
        std::printf("FAILED %s: %s and %s have the same origin; each replica needs its own\n",
                    Printable(origins[i]).c_str(), (*paths)[i].c_str(), (*paths)[j].c_str());
      }
  // A published checkpoint of a log that was not given (or whose origin was changed) is a failure:
  // the replica it anchors is missing from the verification.
  std::set<std::pair<std::string, std::string>> missing;
  for (const auto& [origin, file] : trusted_origins) {
    if (std::find(origins.begin(), origins.end(), origin) == origins.end() &&
        missing.insert({origin, file}).second) {
      all_ok = false;
      std::printf(
          "FAILED %s: trusted checkpoint in %s matches none of the logs given (the replica's log "
          "is missing)\n",
          Printable(origin).c_str(), file.c_str());
    }
  }
  if (!all_ok) return kExitFailed;
  return all_complete ? kExitOk : kExitIncomplete;
}

int RunCheckpoint(const AuditArgs& a) {
  auto path = LogPath(a);
  if (!path) return Usage(path.error().message());
  auto latest = audit::ReadLatestCheckpoint(*path);
  if (!latest) return Usage(latest.error().message());
  if (latest->note.empty()) {
    std::fprintf(stderr, "airlock audit: %s has no signed checkpoint yet\n", path->c_str());
    return kExitFailed;
  }
  // The file is not trusted: print only a well-formed note (no control characters reach a
  // terminal); whether it is signed by the right key is for `audit verify` to say.
  auto note = audit::ParseNote(latest->note);
  if (!note) {
    std::fprintf(stderr, "airlock audit: the latest checkpoint in %s is malformed: %s\n",
                 path->c_str(), note.error().message().c_str());
    return kExitFailed;
  }
  std::fwrite(latest->note.data(), 1, latest->note.size(), stdout);
  return 0;
}

std::atomic<bool> witness_stop{false};

int RunWitness(const AuditArgs& a) {
  audit::WitnessOptions options;
  options.state_dir = a.state_dir;
  if (a.witness_name.empty()) return Usage("--name is required (the witness's key name)");
  auto signer = audit::NoteSigner::Load(a.witness_key, a.witness_name);
  if (!signer) return Usage(signer.error().message());
  options.signer = *signer;
  for (const auto& spec : a.witness_logs) {
    std::size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0)
      return Usage("--log expects ORIGIN=PUBLIC_KEY_FILE, got '" + spec + "'");
    auto v = audit::LoadNoteVerifier(spec.substr(eq + 1));
    if (!v) return Usage(v.error().message());
    std::string origin = spec.substr(0, eq);
    if (!v->name.empty() && v->name != origin)
      return Usage("verifier key in " + spec.substr(eq + 1) + " is for '" + v->name + "'");
    v->name = origin;
    options.logs.push_back(std::move(*v));
  }
  auto witness = audit::Witness::Open(std::move(options));
  if (!witness) return Usage(witness.error().message());
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread watcher([set] {
    int sig = 0;
    sigwait(&set, &sig);
    witness_stop = true;
  });
  const std::string vkey = (*signer)->Verifier(0x04).VerifierKey();
  Status s = audit::ServeWitness(
      **witness, a.host, a.port,
      [&](int port) {
        std::printf("airlock audit witness: listening on http://%s:%d\ncosignature key: %s\n",
                    a.host.c_str(), port, vkey.c_str());
        std::fflush(stdout);
      },
      witness_stop);
  witness_stop = true;
  pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  if (!s.ok()) return Usage(s.message());
  return 0;
}

int RunShow(const AuditArgs& a) {
  auto path = LogPath(a);
  if (!path) return Usage(path.error().message());
  audit::RecordFilter f;
  f.key_id = a.key_id;
  f.model = a.model;
  f.data_class = a.data_class;
  f.since_ms = a.since_ms;
  f.limit = a.limit;
  auto records = audit::ListRecords(*path, f);
  if (!records) {
    std::fprintf(stderr, "airlock audit: %s\n", records.error().message().c_str());
    return kExitError;
  }
  for (const auto& r : *records) {
    if (a.json) {
      std::printf("%s\n", r.json.c_str());
      continue;
    }
    auto j = nlohmann::json::parse(r.json, nullptr, false);
    if (j.is_discarded()) {
      std::printf("%llu <unreadable record>\n", static_cast<unsigned long long>(r.seq));
      continue;
    }
    std::string classes, actions;
    if (!j.is_object()) j = nlohmann::json::object();
    auto list = [&j](const char* field, const char* sep) {
      std::string out;
      auto it = j.find(field);
      if (it == j.end() || !it->is_array()) return out;
      for (const auto& c : *it)
        if (c.is_string())
          out += (out.empty() ? "" : sep) + core::TerminalSafe(c.get<std::string>());
      return out;
    };
    classes = list("data_classes", ",");
    actions = list("actions", "; ");
    auto str = [&j](const char* field) {
      auto it = j.find(field);
      // Model names and upstream fields come from clients and policy files: escaped.
      return it != j.end() && it->is_string() ? core::TerminalSafe(it->get<std::string>())
                                              : std::string();
    };
    auto num = [&j](const char* field) {
      auto it = j.find(field);
      return it != j.end() && it->is_number_integer() ? it->get<long long>() : 0LL;
    };
    // The certificate that answered (or was refused), for https upstreams.
    std::string peer;
    if (std::string cert = str("upstream_cert_sha256"); !cert.empty())
      peer = " cert=sha256:" + cert + " spki=" + str("upstream_spki_sha256");
    std::printf(
        "%llu t=%lld key=%s model=%s upstream=%s(%s)%s status=%d tokens=%lld+%lld "
        "classes=[%s] actions=[%s]\n",
        static_cast<unsigned long long>(r.seq), num("time_ms"), str("key_id").c_str(),
        str("model").c_str(), str("upstream").c_str(), str("jurisdiction").c_str(), peer.c_str(),
        static_cast<int>(num("status")), num("prompt_tokens"), num("completion_tokens"),
        classes.c_str(), actions.c_str());
  }
  return 0;
}

void AddLogOptions(CLI::App* c, AuditArgs* a) {
  c->add_option("--log", a->logs, "Audit log database (default: the policy's audit.path)");
  c->add_option("-c,--config", a->config, "Policy file naming the audit log");
}

}  // namespace

void AddAuditCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<AuditArgs>();
  CLI::App* cmd = app.add_subcommand("audit", "Verify and inspect the gateway's audit log");
  cmd->require_subcommand(1);
  cmd->footer(
      "Exit codes (verify): 0 every log intact; 1 inconsistency found (printed); 3 usage or I/O\n"
      "error, including no pinned public key.\n"
      "Examples:\n"
      "  airlock audit keygen audit-key.pem            # audit-key.pem + audit-key.pem.pub\n"
      "  airlock audit checkpoint --log airlock-audit.db > saved.checkpoint\n"
      "  airlock audit verify --log airlock-audit.db --public-key audit-key.pem.pub \\\n"
      "      --trusted-checkpoint saved.checkpoint\n"
      "  airlock audit verify --config gateway.toml --log-dir replica-logs/ \\\n"
      "      --public-key gw0.pub --public-key gw1.pub   # replicas + the shared store\n"
      "  airlock audit witness --state wstate --key witness.pem --name witness.example/w1 \\\n"
      "      --log ORIGIN=audit-key.pem.pub\n"
      "  airlock audit show --log airlock-audit.db --class email --limit 20\n"
      "See docs/audit.md.\n");
  CLI::App* verify = cmd->add_subcommand(
      "verify",
      "Check logs offline: records, hash chain, signed checkpoints (C2SP notes), consistency "
      "with published checkpoints; report per origin");
  verify->add_option("--log", args->logs,
                     "Audit log database; repeat for replicas (default: the policy's audit.path)");
  verify->add_option("--log-dir", args->log_dir,
                     "Folder of replicas' audit logs: every *.db in it and in its immediate "
                     "subfolders");
  verify->add_option("-c,--config", args->config,
                     "Policy file naming the audit log and its public key; with a [store] url, "
                     "every checkpoint the replicas published there is checked against their "
                     "logs, and a replica with published checkpoints but no log given fails");
  verify->add_option("--public-key", args->public_keys,
                     "Pinned public key: PEM (.pub from keygen) or a note verifier key; repeat "
                     "for replicas with their own keys (required, or [audit] public_key)");
  verify->add_option("--trusted-checkpoint", args->trusted_checkpoints,
                     "File or http:// URL with one or more published checkpoint notes (anchor "
                     "file, witness GET /checkpoint?origin=..., saved `audit checkpoint`); the "
                     "log must extend each");
  verify->callback([args, exit_code] { *exit_code = RunVerify(*args); });
  CLI::App* checkpoint = cmd->add_subcommand(
      "checkpoint", "Print the latest signed checkpoint (a C2SP tlog-checkpoint signed note)");
  AddLogOptions(checkpoint, args.get());
  checkpoint->callback([args, exit_code] { *exit_code = RunCheckpoint(*args); });
  CLI::App* show = cmd->add_subcommand("show", "List records, newest last");
  AddLogOptions(show, args.get());
  show->add_option("--key", args->key_id, "Only this API key id");
  show->add_option("--model", args->model, "Only this model");
  show->add_option("--class", args->data_class, "Only records where this data class was found");
  show->add_option("--since-ms", args->since_ms, "Only records at or after this Unix time (ms)");
  show->add_option("--limit", args->limit, "At most this many records")->capture_default_str();
  show->add_flag("--json", args->json, "Print the stored JSON records");
  show->callback([args, exit_code] { *exit_code = RunShow(*args); });
  CLI::App* keygen = cmd->add_subcommand(
      "keygen", "Create an Ed25519 checkpoint (or witness) signing key: PATH and PATH.pub");
  keygen->add_option("path", args->keygen_path, "Where to write the PEM private key")->required();
  keygen->callback([args, exit_code] {
    Status s = audit::GenerateSigningKey(args->keygen_path);
    if (!s.ok()) {
      std::fprintf(stderr, "airlock audit: %s\n", s.message().c_str());
    } else {
      std::printf(
          "wrote %s (private key, mode 0600) and %s.pub (public key: keep a copy off this "
          "machine and pin it with --public-key)\n",
          args->keygen_path.c_str(), args->keygen_path.c_str());
    }
    *exit_code = s.ok() ? kExitOk : kExitError;
  });
  CLI::App* witness = cmd->add_subcommand(
      "witness",
      "Run a minimal C2SP tlog-witness: keeps the latest consistent checkpoint of each log and "
      "cosigns it (POST /add-checkpoint, GET /checkpoint?origin=...)");
  witness->add_option("--state", args->state_dir, "Folder holding the latest checkpoints")
      ->required();
  witness->add_option("--key", args->witness_key, "Witness Ed25519 private key (audit keygen)")
      ->required();
  witness->add_option("--name", args->witness_name, "Witness name, e.g. witness.example/w1")
      ->required();
  witness
      ->add_option("--log", args->witness_logs,
                   "ORIGIN=PUBLIC_KEY_FILE of a log to witness (PEM or verifier key); repeat")
      ->required();
  witness->add_option("--host", args->host, "Address to bind")->capture_default_str();
  witness->add_option("--port", args->port, "Port to bind (0 picks a free one)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  witness->callback([args, exit_code] { *exit_code = RunWitness(*args); });
}

}  // namespace airlock::cli
