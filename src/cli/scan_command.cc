#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <memory>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/sandboxing.h"
#include "core/file.h"
#include "core/version.h"
#include "scan/report.h"
#include "scan/scan.h"
#include "sign/sign.h"

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
  std::string attest_key;  // sign the verdict as an in-toto attestation with this private key
  std::string attest_out;
};

// Signs the scan verdict (with the full JSON report) as an in-toto statement over the model's
// model-signing digest. Returns 0, or the exit code of a usage/tool error.
// Where --attest writes: --attestation-out, else MODEL.scan-attestation.json.
std::string AttestationPath(const ScanArgs& a) {
  if (!a.attest_out.empty()) return a.attest_out;
  std::string base = a.paths[0];
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return base + ".scan-attestation.json";
}

int WriteScanAttestation(const ScanArgs& a, const scan::ScanReport& report) {
  const std::string& model = a.paths[0];
  const std::string out = AttestationPath(a);
  std::time_t now = std::time(nullptr);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::string predicate = std::string("{\"scanner\":{\"name\":\"airlock\",\"version\":\"") +
                          kVersion + "\"},\"verdict\":\"" +
                          std::string(scan::VerdictName(report.verdict)) + "\",\"scannedAt\":\"" +
                          when + "\",\"report\":" + scan::RenderJson(report) + "}";
  sign::SigningKey key;
  key.private_key_path = a.attest_key;
  auto bundle = sign::AttestModel(model, {out}, sign::kScanAttestationType, predicate, key);
  if (!bundle.has_value()) {
    std::fprintf(stderr, "airlock scan: cannot attest: %s\n", bundle.error().message().c_str());
    return kExitError;
  }
  if (Status s = core::WriteFileAtomic(OutputPath(out), *bundle); !s.ok()) {
    std::fprintf(stderr, "airlock scan: %s\n", s.message().c_str());
    return kExitError;
  }
  std::fprintf(stderr, "airlock scan: signed attestation (verdict %s) written to %s\n",
               std::string(scan::VerdictName(report.verdict)).c_str(), out.c_str());
  return 0;
}

int RunScan(const ScanArgs& a) {
  auto fail_on = scan::ParseSeverity(a.fail_on);
  if (!fail_on) {
    std::fprintf(stderr, "airlock scan: --fail-on must be info, low, medium, high or critical\n");
    return kExitError;
  }
  scan::ScanOptions options;
  options.hash = a.hash;
  options.progress = a.format == "text" || !a.output.empty();
  std::vector<std::string> inputs = a.paths;
  inputs.push_back(a.attest_key);
  if (!EnterSandbox(
          "scan", inputs,
          {a.output, a.attest_key.empty() || a.paths.size() != 1 ? "" : AttestationPath(a)}))
    return kExitError;
  auto report = scan::ScanPaths(a.paths, options);
  if (!report.has_value()) {
    std::fprintf(stderr, "airlock scan: %s\n", report.error().message().c_str());
    return kExitError;
  }
  if (!a.attest_key.empty()) {
    if (a.paths.size() != 1) {
      std::fprintf(stderr, "airlock scan: --attest takes exactly one model path\n");
      return kExitError;
    }
    if (int rc = WriteScanAttestation(a, *report); rc != 0) return rc;
  }
  std::string text;
  if (a.format == "json") {
    text = scan::RenderJson(*report);
  } else if (a.format == "sarif") {
    text = scan::RenderSarif(*report);
  } else {
    bool color =
        a.output.empty() && !a.no_color && ::isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR");
    text = scan::RenderText(*report, color, a.verbose);
  }
  if (a.output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else if (Status s = core::WriteFileAtomic(OutputPath(a.output), text); !s.ok()) {
    std::fprintf(stderr, "airlock scan: %s\n", s.message().c_str());
    return kExitError;
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
      "  airlock scan ./Qwen2.5-0.5B-Instruct --format sarif -o scan.sarif\n"
      "  airlock scan ./Qwen2.5-0.5B-Instruct --attest scanner.key\n");
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
  cmd->add_option(
      "--attest", args->attest_key,
      "Sign the verdict as an in-toto attestation over the model's digest with this "
      "private key (check it with `airlock verify MODEL --key PUB --attestation FILE`)");
  cmd->add_option("--attestation-out", args->attest_out,
                  "Where --attest writes (default MODEL.scan-attestation.json)");
  cmd->callback([args, exit_code] { *exit_code = RunScan(*args); });
}

}  // namespace airlock::cli
