#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "assess/assess.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "core/text.h"

namespace airlock::cli {
namespace {

struct AssessArgs {
  assess::AssessOptions options;
  bool compare = false;
};

// Option parsing and printing only; the assessment itself is assess::AssessModels.
int RunAssess(const AssessArgs& a) {
  if (a.compare && a.options.models.size() < 2) {
    std::fprintf(stderr, "airlock assess: --compare needs at least two models or reports\n");
    return kExitError;
  }
  assess::AssessOptions options = a.options;
  options.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  auto outcome = assess::AssessModels(options);
  if (!outcome.has_value()) {
    std::fprintf(stderr, "airlock assess: %s\n", outcome.error().message().c_str());
    return kExitError;
  }
  for (const auto& m : outcome->report.models)
    std::printf("verdict: %s: %s\n", core::TerminalSafe(m.model_name).c_str(),
                m.verdict.decision.c_str());
  for (const auto& path : outcome->attestation_paths) std::printf("signed: %s\n", path.c_str());
  std::printf("report: %s\njson:   %s\nbom:    %s\n", outcome->html_path.c_str(),
              outcome->json_path.c_str(), outcome->bom_path.c_str());
  return outcome->all_clean ? kExitOk : kExitFailed;
}

}  // namespace

void AddAssessCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<AssessArgs>();
  assess::AssessOptions& o = a->options;
  CLI::App* cmd = app.add_subcommand(
      "assess",
      "Scan, verify, inspect and probe a model; write one risk report (HTML + JSON + CycloneDX)");
  cmd->footer(
      "Writes OUT/report.html (self-contained), OUT/report.json and OUT/bom.cdx.json. Probe\n"
      "results are kept in OUT/<model>/results.jsonl, so an interrupted assessment resumes.\n"
      "The report opens with a verdict (adopt / adopt with controls / do not adopt) and its\n"
      "reasons. Behaviour rates are shown only when the model passes the capability gate (a\n"
      "bilingual instruction-following battery); docs/assessment.md explains the rules.\n"
      "Exit codes: 0 report written, every file scanned clean (and the signature verified when a "
      "key\n"
      "was given); 1 report written, some file not clean or the signature did not verify; 3 usage\n"
      "or tool error.\n"
      "Examples:\n"
      "  airlock assess model.gguf --endpoint http://127.0.0.1:8080/v1 --out report\n"
      "  airlock assess --compare a.gguf b.gguf --no-probes\n"
      "  airlock assess --compare old/report.json new/report.json --out diff\n");
  cmd->add_option("models", o.models, "Model files or folders, or saved report.json files")
      ->required();
  cmd->add_option("--out", o.out_dir, "Output folder")->capture_default_str();
  cmd->add_option("--endpoint", o.endpoint, "OpenAI-compatible endpoint serving the model");
  cmd->add_option("--model", o.endpoint_model, "Model name to send to the endpoint");
  cmd->add_option("--key", o.public_key, "Public key (PEM) to verify the model's signature with");
  cmd->add_option("--certificate-chain", o.ca_paths,
                  "CA certificate(s) for certificate-signed models");
  cmd->add_option("--suite", o.suites,
                  "Suites to run (default: all; 'none' to run only --corpus files)");
  cmd->add_option("--corpus", o.corpora, "External corpus file(s) to add");
  cmd->add_flag("--compare", a->compare,
                "Put several models (or saved report.json files) side by side; differences are "
                "tested with a two-sided Fisher exact test");
  cmd->add_option(
      "--sign", o.sign_key,
      "Private key (PEM): sign an in-toto attestation of the assessment per model "
      "(verify with: airlock verify MODEL --predicate-type assessment --attestation FILE "
      "--key PUB)");
  cmd->add_option("--reference", o.reference,
                  "Reference (e.g. F16) GGUF: add a quantization-quality section (needs --text)");
  cmd->add_option("--text", o.text, "Text to measure perplexity and KL divergence on");
  cmd->add_option("--ppl-ctx", o.ppl_ctx, "Chunk length for the comparison")->capture_default_str();
  cmd->add_option("--ppl-chunks", o.ppl_chunks, "Chunks to score (-1: all)")->capture_default_str();
  cmd->add_option(
      "--through-gateway", o.through_gateway,
      "Also run the suites through `airlock serve` with this policy file in front of "
      "the model (a local GGUF, or the --endpoint as its upstream); the report shows both");
  cmd->add_option("--judge-endpoint", o.judge_endpoint,
                  "Judge model endpoint (OpenAI-compatible): scores harmfulness and one-sidedness; "
                  "its agreement with the labelled set goes into the report");
  cmd->add_option("--judge-model", o.judge_model, "Judge model name");
  cmd->add_flag("--no-probes", o.no_probes, "Only scan and inspect");
  cmd->add_option("--temperature", o.params.temperature, "Sampling temperature")
      ->capture_default_str();
  cmd->add_option("--max-tokens", o.params.max_tokens, "Reply length cap")->capture_default_str();
  cmd->add_option("--seed", o.params.seed, "Sampling seed")->capture_default_str();
  cmd->callback([a, exit_code] { *exit_code = RunAssess(*a); });
}

}  // namespace airlock::cli
