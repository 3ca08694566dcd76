#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "audit/audit_log.h"
#include "cli/commands.h"
#include "core/text.h"
#include "policy/policy.h"

namespace airlock::cli {
namespace {

struct AuditArgs {
  std::string log;
  std::string config;
  std::string public_key;
  std::string key_id, model, data_class;
  std::int64_t since_ms = 0;
  std::size_t limit = 100;
  bool json = false;
  std::string keygen_path;
};

Result<std::string> LogPath(const AuditArgs& a) {
  if (!a.log.empty()) return a.log;
  if (!a.config.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(policy::Policy p, policy::LoadPolicy(a.config));
    return p.audit.path;
  }
  return policy::AuditSettings().path;
}

int RunVerify(const AuditArgs& a) {
  auto path = LogPath(a);
  if (!path) {
    std::fprintf(stderr, "airlock audit: %s\n", path.error().message().c_str());
    return 3;
  }
  auto r = audit::VerifyLog(*path, a.public_key);
  if (!r) {
    std::fprintf(stderr, "airlock audit: %s\n", r.error().message().c_str());
    return 3;
  }
  if (r->ok) {
    std::printf("OK: %llu records, %llu checkpoints (%llu signature(s) verified)\n",
                static_cast<unsigned long long>(r->records),
                static_cast<unsigned long long>(r->checkpoints),
                static_cast<unsigned long long>(r->signed_checkpoints));
  } else {
    std::printf("FAILED: %s\n", core::TerminalSafe(r->first_problem).c_str());
  }
  for (const auto& w : r->warnings) std::printf("warning: %s\n", core::TerminalSafe(w).c_str());
  return r->ok ? 0 : 1;
}

int RunShow(const AuditArgs& a) {
  auto path = LogPath(a);
  if (!path) {
    std::fprintf(stderr, "airlock audit: %s\n", path.error().message().c_str());
    return 3;
  }
  audit::RecordFilter f;
  f.key_id = a.key_id;
  f.model = a.model;
  f.data_class = a.data_class;
  f.since_ms = a.since_ms;
  f.limit = a.limit;
  auto records = audit::ListRecords(*path, f);
  if (!records) {
    std::fprintf(stderr, "airlock audit: %s\n", records.error().message().c_str());
    return 3;
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
    std::printf(
        "%llu t=%lld key=%s model=%s upstream=%s(%s) status=%d tokens=%lld+%lld "
        "classes=[%s] actions=[%s]\n",
        static_cast<unsigned long long>(r.seq), num("time_ms"), str("key_id").c_str(),
        str("model").c_str(), str("upstream").c_str(), str("jurisdiction").c_str(),
        static_cast<int>(num("status")), num("prompt_tokens"), num("completion_tokens"),
        classes.c_str(), actions.c_str());
  }
  return 0;
}

void AddLogOptions(CLI::App* c, AuditArgs* a) {
  c->add_option("--log", a->log, "Audit log database (default: the policy's audit.path)");
  c->add_option("-c,--config", a->config, "Policy file naming the audit log");
}

}  // namespace

void AddAuditCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<AuditArgs>();
  CLI::App* cmd = app.add_subcommand("audit", "Verify and inspect the gateway's audit log");
  cmd->require_subcommand(1);
  cmd->footer(
      "Exit codes (verify): 0 log intact; 1 inconsistency found (printed); 3 usage or I/O error.\n"
      "Examples:\n"
      "  airlock audit keygen audit-key.pem\n"
      "  airlock audit verify --log airlock-audit.db --public-key audit-key.pub.pem\n"
      "  airlock audit show --log airlock-audit.db --class email --limit 20\n");
  CLI::App* verify = cmd->add_subcommand(
      "verify",
      "Check the whole log offline; report the first changed, removed or reordered "
      "record or bad checkpoint");
  AddLogOptions(verify, args.get());
  verify->add_option("--public-key", args->public_key,
                     "PEM public (or private) key to check checkpoint signatures against");
  verify->callback([args, exit_code] { *exit_code = RunVerify(*args); });
  CLI::App* show = cmd->add_subcommand("show", "List records, newest last");
  AddLogOptions(show, args.get());
  show->add_option("--key", args->key_id, "Only this API key id");
  show->add_option("--model", args->model, "Only this model");
  show->add_option("--class", args->data_class, "Only records where this data class was found");
  show->add_option("--since-ms", args->since_ms, "Only records at or after this Unix time (ms)");
  show->add_option("--limit", args->limit, "At most this many records")->capture_default_str();
  show->add_flag("--json", args->json, "Print the stored JSON records");
  show->callback([args, exit_code] { *exit_code = RunShow(*args); });
  CLI::App* keygen = cmd->add_subcommand("keygen", "Create an ECDSA P-256 checkpoint signing key");
  keygen->add_option("path", args->keygen_path, "Where to write the PEM private key")->required();
  keygen->callback([args, exit_code] {
    Status s = audit::GenerateSigningKey(args->keygen_path);
    if (!s.ok()) std::fprintf(stderr, "airlock audit: %s\n", s.message().c_str());
    *exit_code = s.ok() ? 0 : 3;
  });
}

}  // namespace airlock::cli
