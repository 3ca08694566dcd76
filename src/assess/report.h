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
