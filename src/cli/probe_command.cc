#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "assess/probe.h"
#include "assess/runner.h"
#include "assess/target.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "core/file.h"

namespace airlock::cli {
namespace {

struct ProbeArgs {
  std::string target;
  std::string endpoint;
  std::string model;
  std::string api_key_env;
  std::vector<std::string> suites;
  std::vector<std::string> corpora;
  std::string out = "airlock-probe";
  std::string judge_endpoint;
  std::string judge_model;
  double temperature = 0.0;
  int max_tokens = 256;
  std::uint64_t seed = 42;
  bool no_resume = false;
  bool list = false;
  bool behind_gateway = false;
};

std::string Pct(const assess::Rate& r) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%5.1f%% [%4.1f-%5.1f] (%d/%d)", r.rate * 100, r.low * 100,
                r.high * 100, r.hits, r.total);
  return buf;
}

int RunProbe(const ProbeArgs& a) {
  auto builtin = assess::BuiltinSuites();
  if (!builtin.has_value()) {
    std::fprintf(stderr, "airlock probe: %s\n", builtin.error().message().c_str());
    return kExitError;
  }
  if (a.list) {
    for (const auto& s : *builtin)
      std::printf("%-26s %3zu probes  %s\n", s.name.c_str(), s.probes.size(), s.intent.c_str());
    return 0;
  }
  if (a.endpoint.empty() == a.target.empty()) {
    std::fprintf(stderr,
                 "airlock probe: give exactly one of --target MODEL.gguf or --endpoint URL\n");
    return kExitError;
  }
  std::vector<assess::Suite> chosen;
  for (const auto& name : a.suites) {
    bool found = false;
    for (const auto& s : *builtin) {
      if (name == "all" || s.name == name) {
        chosen.push_back(s);
        found = true;
      }
    }
    if (!found) {
      std::fprintf(stderr, "airlock probe: unknown suite '%s' (try --list-suites)\n", name.c_str());
      return kExitError;
    }
  }
  for (const auto& path : a.corpora) {
    auto corpus = assess::LoadCorpus(path);
    if (!corpus.has_value()) {
      std::fprintf(stderr, "airlock probe: %s\n", corpus.error().message().c_str());
      return kExitError;
    }
    chosen.push_back(std::move(*corpus));
  }
  if (chosen.empty()) {
    std::fprintf(stderr, "airlock probe: name at least one --suite (or 'all') or --corpus\n");
    return kExitError;
  }
  assess::EndpointOptions eo;
  eo.base_url = a.endpoint;
  eo.model = a.model;
  eo.trust_policy_blocks = a.behind_gateway;
  if (!a.api_key_env.empty()) {
    const char* key = std::getenv(a.api_key_env.c_str());
    if (key == nullptr) {
      std::fprintf(stderr, "airlock probe: environment variable %s is not set\n",
                   a.api_key_env.c_str());
      return kExitError;
    }
    eo.api_key = key;
  }
  auto target =
      a.target.empty() ? assess::MakeEndpointTarget(eo) : assess::MakeLocalTarget(a.target);
  if (!target.has_value()) {
    std::fprintf(stderr, "airlock probe: %s\n", target.error().message().c_str());
    return kExitError;
  }
  std::unique_ptr<assess::ChatTarget> judge;
  if (!a.judge_endpoint.empty()) {
    assess::EndpointOptions jo;
    jo.base_url = a.judge_endpoint;
    jo.model = a.judge_model;
    auto j = assess::MakeEndpointTarget(jo);
    if (!j.has_value()) {
      std::fprintf(stderr, "airlock probe: judge: %s\n", j.error().message().c_str());
      return kExitError;
    }
    judge = std::move(*j);
  }
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  assess::RunOptions ro;
  ro.params = {a.temperature, a.max_tokens, a.seed};
  ro.results_path = (std::filesystem::path(a.out) / "results.jsonl").string();
  ro.resume = !a.no_resume;
  ro.judge = judge.get();
  auto summary = assess::RunSuites(**target, chosen, ro);
  if (!summary.has_value()) {
    std::fprintf(stderr, "airlock probe: %s\n", summary.error().message().c_str());
    return kExitError;
  }
  auto summary_path = (std::filesystem::path(a.out) / "summary.json").string();
  if (Status s = core::WriteFileAtomic(summary_path, assess::SummaryJson(*summary)); !s.ok()) {
    std::fprintf(stderr, "airlock probe: %s\n", s.message().c_str());
    return kExitError;
  }
  int errors = 0;
  std::printf("target: %s\n\n", summary->target.c_str());
  for (const auto& s : summary->suites) {
    errors += s.errors;
    std::string reason;
    if (!assess::SuiteMeaningful(*summary, s, &reason)) {
      // Bad replies (oversized, late, malformed) are never scored; too many of them and the rate
      // describes nothing.
      std::printf("%-26s %s\n", s.name.c_str(), reason.c_str());
      continue;
    }
    std::printf("%-26s %-20s %s\n", s.name.c_str(),
                s.metric == assess::Metric::kRefusal ? "refusal rate" : "attack success",
                Pct(s.rates.overall).c_str());
    for (const auto& [cat, r] : s.rates.by_category)
      std::printf("  %-24s %-20s %s\n", cat.c_str(), "", Pct(r).c_str());
  }
  std::printf("\nresults: %s\nsummary: %s\n", ro.results_path.c_str(), summary_path.c_str());
  if (errors > 0) {
    std::fprintf(stderr, "airlock probe: %d probe(s) failed to run; rerun to retry them\n", errors);
    return kExitIncomplete;
  }
  return 0;
}

}  // namespace

void AddProbeCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<ProbeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "probe", "Red-team a model with built-in probe suites or external corpora");
  cmd->footer(
      "Writes OUT/results.jsonl (every prompt, reply and verdict; a rerun resumes it) and\n"
      "OUT/summary.json (rates with 95% Wilson intervals per suite, category and language).\n"
      "The endpoint and the judge are untrusted: each reply is read under a size cap (64 KiB +\n"
      "512 bytes per --max-tokens token) and a deadline (30 s + 250 ms per token); an over-long,\n"
      "late or malformed reply (content null, an array, deeply nested) is recorded as an error,\n"
      "never scored. A suite with more than 10% errors is reported as not meaningful.\n"
      "Exit codes: 0 done; 2 some probes failed to run; 3 usage or tool error.\n"
      "Examples:\n"
      "  airlock probe --list-suites\n"
      "  airlock probe --target qwen2.5-0.5b-instruct-q4_k_m.gguf --suite all --out run0\n"
      "  airlock probe --endpoint http://127.0.0.1:8080/v1 --suite prompt-injection --suite "
      "jailbreak\n"
      "  airlock probe --endpoint http://127.0.0.1:8080 --corpus harmful_behaviors.csv --out "
      "run1\n");
  cmd->add_option("--target", a->target, "Local GGUF model to probe (run by the Airlock engine)");
  cmd->add_option("--endpoint", a->endpoint, "OpenAI-compatible base URL (http://host:port[/v1])");
  cmd->add_option("--model", a->model, "Model name to send");
  cmd->add_flag("--behind-gateway", a->behind_gateway,
                "The endpoint is an `airlock serve` gateway you run: its HTTP 403 policy refusals "
                "count as blocked attacks (otherwise a 403 is recorded as an error)");
  cmd->add_option("--api-key-env", a->api_key_env, "Environment variable holding the API key");
  cmd->add_option("--suite", a->suites,
                  "Built-in suite to run (repeatable; 'all' for every suite)");
  cmd->add_option(
      "--corpus", a->corpora,
      "External corpus: HarmBench/AdvBench/JailbreakBench/Do-Not-Answer CSV or JSON(L)");
  cmd->add_option("--out", a->out, "Output folder")->capture_default_str();
  cmd->add_option("--judge-endpoint", a->judge_endpoint, "Judge model endpoint (optional)");
  cmd->add_option("--judge-model", a->judge_model, "Judge model name");
  cmd->add_option("--temperature", a->temperature, "Sampling temperature")->capture_default_str();
  cmd->add_option("--max-tokens", a->max_tokens, "Reply length cap")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Sampling seed")->capture_default_str();
  cmd->add_flag("--no-resume", a->no_resume, "Start over instead of resuming OUT/results.jsonl");
  cmd->add_flag("--list-suites", a->list, "List the built-in suites and exit");
  cmd->callback([a, exit_code] { *exit_code = RunProbe(*a); });
}

}  // namespace airlock::cli
