#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "core/text.h"
#include "policy/policy.h"
#include "server/keys.h"

namespace airlock::cli {
namespace {

struct KeysArgs {
  std::string db;
  std::string config;
  std::string name;
  std::vector<std::string> models;
  bool models_given = false;  // --models was on the command line (possibly as '')
  std::int64_t rpm = 0, tpm = 0, budget = 0;
  std::string id;
};

Result<std::unique_ptr<server::KeyStore>> OpenStore(const KeysArgs& a) {
  if (!a.db.empty()) return server::KeyStore::Open(a.db);
  // The policy's store: [store] url (PostgreSQL, shared by replicas) or [server] keys_db.
  policy::Policy p;
  if (!a.config.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(p, policy::LoadPolicy(a.config));
  }
  return server::OpenKeyStore(p);
}

std::string Limit(std::int64_t v) { return v ? std::to_string(v) : "-"; }

int RunCreate(const KeysArgs& a) {
  auto store = OpenStore(a);
  if (!store) {
    std::fprintf(stderr, "airlock keys: %s\n", store.error().message().c_str());
    return kExitError;
  }
  // An empty list means "every model": `--models ''` must not grant that by accident.
  if (a.models_given && a.models.empty()) {
    std::fprintf(stderr,
                 "airlock keys: --models needs at least one model name (leave it out to allow "
                 "every model)\n");
    return kExitError;
  }
  auto k = (*store)->Create(a.name, a.models, a.rpm, a.tpm, a.budget);
  if (!k) {
    std::fprintf(stderr, "airlock keys: %s\n", k.error().message().c_str());
    return kExitError;
  }
  std::printf("%s\n", k->first.c_str());
  std::fprintf(stderr,
               "created key id %s; the secret above is shown once and stored only as a hash\n",
               k->second.id.c_str());
  return 0;
}

int RunList(const KeysArgs& a) {
  auto store = OpenStore(a);
  if (!store) {
    std::fprintf(stderr, "airlock keys: %s\n", store.error().message().c_str());
    return kExitError;
  }
  auto keys = (*store)->List();
  if (!keys) {
    std::fprintf(stderr, "airlock keys: %s\n", keys.error().message().c_str());
    return kExitError;
  }
  std::printf("%-14s %-16s %-8s %-8s %-10s %-12s %-12s %s\n", "ID", "NAME", "STATUS", "RPM", "TPM",
              "BUDGET", "USED", "MODELS");
  // Names and models come from whoever created the key: escaped so they cannot move the cursor,
  // recolour or forge rows of the table.
  for (const auto& k : *keys) {
    std::string models;
    for (const auto& m : k.models) models += (models.empty() ? "" : ",") + core::TerminalSafe(m);
    std::printf("%-14s %-16s %-8s %-8s %-10s %-12s %-12lld %s\n", core::TerminalSafe(k.id).c_str(),
                core::TerminalSafe(k.name).c_str(), k.revoked ? "revoked" : "active",
                Limit(k.rpm).c_str(), Limit(k.tpm).c_str(), Limit(k.budget_tokens).c_str(),
                static_cast<long long>(k.used_tokens), models.empty() ? "(all)" : models.c_str());
  }
  return 0;
}

int RunRevoke(const KeysArgs& a) {
  auto store = OpenStore(a);
  if (!store) {
    std::fprintf(stderr, "airlock keys: %s\n", store.error().message().c_str());
    return kExitError;
  }
  if (Status s = (*store)->Revoke(a.id); !s.ok()) {
    std::fprintf(stderr, "airlock keys: %s\n", s.message().c_str());
    return s.code() == StatusCode::kNotFound ? kExitFailed : kExitError;
  }
  std::fprintf(stderr, "revoked key %s\n", core::TerminalSafe(a.id).c_str());
  return 0;
}

void AddStoreOptions(CLI::App* c, KeysArgs* a) {
  c->add_option("--db", a->db,
                "Key database (default: the policy's server.keys_db, else "
                "airlock-keys.db)");
  c->add_option("-c,--config", a->config,
                "Policy file naming the key store ([store] url for PostgreSQL, else [server] "
                "keys_db)");
}

}  // namespace

void AddKeysCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<KeysArgs>();
  CLI::App* cmd = app.add_subcommand("keys", "Manage gateway API keys (stored only as hashes)");
  cmd->require_subcommand(1);
  cmd->footer(
      "Examples:\n"
      "  airlock keys create --db keys.db --name ci --models gpt-4o-mini --rpm 60 --budget 100000\n"
      "  airlock keys list --db keys.db\n"
      "  airlock keys revoke 3f9a0c1b7d2e --db keys.db\n"
      "  airlock keys revoke 3f9a0c1b7d2e --config policy.toml   # [store] url: every replica\n");
  CLI::App* create = cmd->add_subcommand("create", "Create a key; prints the secret once");
  AddStoreOptions(create, args.get());
  create->add_option("--name", args->name, "Label (control characters are refused)");
  CLI::Option* models =
      create
          ->add_option(
              "--models", args->models,
              "Models this key may use, comma-separated (leave out for all; '' is an error)")
          ->delimiter(',');
  create->add_option("--rpm", args->rpm, "Requests per minute (0: unlimited)");
  create->add_option("--tpm", args->tpm, "Tokens per minute (0: unlimited)");
  create->add_option("--budget", args->budget, "Lifetime token budget (0: unlimited)");
  create->callback([args, exit_code, models] {
    args->models_given = models->count() > 0;
    *exit_code = RunCreate(*args);
  });
  CLI::App* list = cmd->add_subcommand("list", "List keys with limits and usage");
  AddStoreOptions(list, args.get());
  list->callback([args, exit_code] { *exit_code = RunList(*args); });
  CLI::App* revoke = cmd->add_subcommand("revoke", "Revoke a key by id");
  AddStoreOptions(revoke, args.get());
  revoke->add_option("id", args->id, "Key id (from `keys list`)")->required();
  revoke->callback([args, exit_code] { *exit_code = RunRevoke(*args); });
}

}  // namespace airlock::cli
