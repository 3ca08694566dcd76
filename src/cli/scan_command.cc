#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/file.h"
#include "scan/report.h"
#include "scan/scan.h"

namespace airlock::cli {
namespace {

struct ScanArgs {
  std::vector<std::string> paths;
  std::string format = "text";
  std::string fail_on = "high";
  std::string output;
  bool hash = false;
  bool verbose = false;
  bool no_color = false;
};

int RunScan(const ScanArgs& a) {
  auto fail_on = scan::ParseSeverity(a.fail_on);
  if (!fail_on) {
    std::fprintf(stderr, "airlock scan: --fail-on must be info, low, medium, high or critical\n");
    return scan::kExitUsage;
  }
  scan::ScanOptions options;
  options.hash = a.hash;
  options.progress = a.format == "text" || !a.output.empty();
  auto report = scan::ScanPaths(a.paths, options);
  if (!report.has_value()) {
    std::fprintf(stderr, "airlock scan: %s\n", report.error().message().c_str());
    return scan::kExitUsage;
  }
  std::string text;
  if (a.format == "json") {
    text = scan::RenderJson(*report);
  } else if (a.format == "sarif") {
    text = scan::RenderSarif(*report);
  } else {
    bool color = a.output.empty() && !a.no_color && ::isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR");
    text = scan::RenderText(*report, color, a.verbose);
  }
  if (a.output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else if (Status s = core::WriteFileAtomic(a.output, text); !s.ok()) {
    std::fprintf(stderr, "airlock scan: %s\n", s.message().c_str());
    return scan::kExitUsage;
  }
  return scan::ExitCodeFor(*report, *fail_on);
}

}  // namespace

void AddScanCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ScanArgs>();
  CLI::App* cmd = app.add_subcommand(
      "scan", "Statically vet model files, folders and archives without executing them");
  cmd->footer(
      "Verdicts: clean, malicious, inconclusive (fail closed: anything not fully understood is\n"
      "inconclusive, never clean).\n"
      "Exit codes: 0 all clean; 1 a finding at or above --fail-on; 2 inconclusive; 3 usage or\n"
      "tool error.\n"
      "Examples:\n"
      "  airlock scan model.pt\n"
      "  airlock scan ./Qwen2.5-0.5B-Instruct --format sarif -o scan.sarif\n");
  cmd->add_option("paths", args->paths, "Files, model folders or archives to scan")->required();
  cmd->add_option("--format", args->format, "Output format")
      ->check(CLI::IsMember({"text", "json", "sarif"}))
      ->capture_default_str();
  cmd->add_option("--fail-on", args->fail_on,
                  "Lowest severity that makes the exit code 1 (info|low|medium|high|critical)")
      ->capture_default_str();
  cmd->add_option("-o,--output", args->output, "Write the report to this file instead of stdout");
  cmd->add_flag("--hash", args->hash, "Also print the SHA-256 of every file scanned");
  cmd->add_flag("-v,--verbose", args->verbose, "Show informational findings too");
  cmd->add_flag("--no-color", args->no_color, "Never colour the text output");
  cmd->callback([args, exit_code] { *exit_code = RunScan(*args); });
}

}  // namespace airlock::cli
