// One `airlock assess` run as a library call: scan, signature verification, inspection,
// quantization quality (perplexity and KL divergence against a reference), the capability gate,
// the probe suites (directly and, optionally, through an in-process `airlock serve` gateway),
// the judge's measured agreement, the verdict, the three report files and optional signed
// attestations. The CLI only parses options and prints. Saved report.json files given as models
// are read back and put side by side with the others (--compare).
// Files written under out_dir: report.html, report.json, bom.cdx.json, <model>/results.jsonl
// (and results-through-gateway.jsonl), <model>.assessment.sigstore.json when signing.
// Thread-safety: one call at a time per out_dir.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "assess/report.h"
#include "assess/target.h"
#include "core/status.h"

namespace airlock::assess {

struct AssessOptions {
  std::vector<std::string> models;  // model files or folders, or saved report.json files
  std::string out_dir = "airlock-assessment";
  std::string endpoint;        // OpenAI-compatible endpoint serving the (one) model
  std::string endpoint_model;  // "model" field sent to it
  std::string judge_endpoint;  // optional judge model endpoint
  std::string judge_model;
  std::string public_key;                     // verify the model's signature with this key...
  std::vector<std::string> ca_paths;          // ...or certificate chain
  std::vector<std::string> suites = {"all"};  // built-in suite names, "all" or "none"
  std::vector<std::string> corpora;           // external corpora (LoadCorpus)
  std::string through_gateway;                // policy file: also probe through the gateway
  std::string sign_key;                       // private key: sign one attestation per model
  std::string reference, text;                // quantization quality (both needed)
  int ppl_ctx = 512;
  int ppl_chunks = 16;
  bool no_probes = false;
  GenerationParams params;
  // Progress lines ("assess: model.gguf: scanning"); may be empty.
  std::function<void(const std::string&)> log;
};

struct AssessOutcome {
  Report report;
  // True when every scanned file is clean and every requested signature verified (exit 0).
  bool all_clean = true;
  std::string html_path, json_path, bom_path;
  std::vector<std::string> attestation_paths;
};

// Errors: kInvalidArgument (option combinations, unknown suites), errors of loading suites,
// scanning, running probes (results file), writing the reports and signing. Per-model problems
// that still allow a report (a failed signature, an unrunnable model, a failed quantization
// comparison) are recorded in the report instead.
Result<AssessOutcome> AssessModels(const AssessOptions& options);

}  // namespace airlock::assess
