// The assessment report: one self-contained HTML page (inline CSS and SVG charts, no external
// resources, readable when printed), the same data as JSON, and a CycloneDX 1.5 ML-BOM entry.
// Every input is pinned by digest (model file, suites, Airlock version). Several models can be
// put side by side (`airlock assess --compare`).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "assess/probe.h"
#include "assess/runner.h"
#include "scan/scan.h"

namespace airlock::assess {

struct SignatureCheck {
  std::string status;  // "verified", "failed", "not checked"
  std::string detail;
};

// Quantization quality against a reference model on the organization's own text (perplexity of
// both, and KL divergence of this model's token distribution from the reference's).
struct QuantizationQuality {
  std::string reference_path;
  std::string text_path;
  std::int64_t positions = 0;  // scored tokens
  double ppl = 0, ppl_err = 0, ppl_ref = 0, ppl_ref_err = 0;
  double ppl_ratio = 0, ppl_ratio_err = 0;
  double kld = 0, kld_err = 0;    // mean KL(ref || model), nats
  double top1 = 0, top1_err = 0;  // top-1 agreement, fraction
  int top_k = 0;                  // reference rows kept; KL is a lower bound when < vocab
  double mean_tail_mass = 0;
};

struct ModelAssessment {
  std::string model_path;
  std::string model_name;
  std::string model_sha256;
  std::uint64_t model_bytes = 0;
  std::optional<scan::ScanReport> scan;
  SignatureCheck signature{"not checked", "no public key given"};
  std::string inspect_json;  // `airlock inspect --json` output; empty when unavailable
  std::optional<RunSummary> probes;
  std::string probes_unavailable_reason;  // why probes were not run, when they were not
  std::optional<QuantizationQuality> quantization;
  std::string quantization_error;  // why the comparison failed, when it was asked for
};

struct Report {
  std::string airlock_version;
  std::string created_at;  // RFC 3339 UTC
  std::vector<ModelAssessment> models;
  std::vector<DetectorAccuracy> detector_accuracy;
};

std::string RenderHtml(const Report& report);
std::string RenderJson(const Report& report);
std::string RenderCycloneDx(const Report& report);

}  // namespace airlock::assess
