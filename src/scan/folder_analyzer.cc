#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

// Placeholder until the model-folder analyzer lands: no cross-file checks yet (the files
// themselves are still scanned one by one).
void AnalyzeModelFolder(const std::string& root, const std::vector<std::string>& files,
                        FileReport& folder_report, const ScanOptions& options) {
  Finding f;
  f.rule_id = "scan.unsupported";
  f.severity = Severity::kLow;
  f.message = "model-folder cross-file checks are not implemented yet";
  f.path = root;
  f.incomplete = true;
  folder_report.findings.push_back(std::move(f));
}

}  // namespace airlock::scan::internal
