#include "scan/report.h"

#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/text.h"
#include "core/version.h"

namespace airlock::scan {

int ExitCodeFor(const ScanReport& report, Severity fail_on) {
  bool over = false;
  bool incomplete = false;
  for (const auto& file : report.files) {
    for (const auto& f : file.findings) {
      if (f.severity >= fail_on && !f.incomplete) over = true;
    }
    if (file.verdict == Verdict::kInconclusive) incomplete = true;
    if (file.verdict == Verdict::kMalicious && fail_on <= Severity::kHigh) over = true;
  }
  if (over) return kExitFindings;
  if (incomplete) return kExitInconclusive;
  return kExitClean;
}

namespace {

const char* VerdictColor(Verdict v) {
  switch (v) {
    case Verdict::kClean:
      return "\033[32m";
    case Verdict::kInconclusive:
      return "\033[33m";
    case Verdict::kMalicious:
      return "\033[31;1m";
  }
  return "";
}

const char* SeverityColor(Severity s) {
  switch (s) {
    case Severity::kCritical:
    case Severity::kHigh:
      return "\033[31m";
    case Severity::kMedium:
      return "\033[33m";
    default:
      return "\033[2m";
  }
}

std::string Location(const Finding& f) {
  std::string loc;
  if (!f.member.empty()) loc += f.member;
  if (f.offset) loc += (loc.empty() ? "" : " ") + fmt::format("@{}", *f.offset);
  return loc;
}

}  // namespace

std::string RenderText(const ScanReport& report, bool color, bool verbose) {
  std::string out;
  const char* reset = color ? "\033[0m" : "";
  std::size_t counts[3] = {0, 0, 0};
  for (const auto& file : report.files) {
    counts[static_cast<int>(file.verdict)]++;
    out += fmt::format("{}{:<12}{} {} ({})\n", color ? VerdictColor(file.verdict) : "",
                       VerdictName(file.verdict), reset, core::TerminalSafe(file.path),
                       file.format.empty() ? "unknown" : file.format);
    for (const auto& f : file.findings) {
      if (!verbose && f.severity == Severity::kInfo && !f.incomplete) continue;
      std::string loc = Location(f);
      out += fmt::format("    {}{:<8}{} {} {}{}\n", color ? SeverityColor(f.severity) : "",
                         SeverityName(f.severity), reset, f.rule_id, core::TerminalSafe(f.message),
                         loc.empty() ? "" : " [" + core::TerminalSafe(loc) + "]");
    }
    if (!file.sha256.empty()) out += fmt::format("    sha256 {}\n", file.sha256);
  }
  out += fmt::format("\n{}{}{}: {} file(s): {} clean, {} malicious, {} inconclusive\n",
                     color ? VerdictColor(report.verdict) : "", VerdictName(report.verdict), reset,
                     report.files.size(), counts[0], counts[2], counts[1]);
  return out;
}

std::string RenderJson(const ScanReport& report) {
  using nlohmann::json;
  json files = json::array();
  for (const auto& file : report.files) {
    json findings = json::array();
    for (const auto& f : file.findings) {
      json jf = {{"rule_id", f.rule_id}, {"severity", SeverityName(f.severity)},
                 {"message", f.message}, {"path", f.path},
                 {"member", f.member},   {"incomplete", f.incomplete}};
      jf["offset"] = f.offset ? json(*f.offset) : json(nullptr);
      findings.push_back(std::move(jf));
    }
    json jfile = {{"path", file.path},
                  {"format", file.format},
                  {"size", file.size},
                  {"verdict", VerdictName(file.verdict)},
                  {"findings", std::move(findings)}};
    if (!file.sha256.empty()) jfile["sha256"] = file.sha256;
    files.push_back(std::move(jfile));
  }
  json doc = {{"schema", "airlock.scan/v1"},
              {"tool", {{"name", "airlock"}, {"version", kVersion}}},
              {"verdict", VerdictName(report.verdict)},
              {"files", std::move(files)}};
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string RenderSarif(const ScanReport& report) {
  using nlohmann::json;
  std::map<std::string, Severity> rules;
  for (const auto& file : report.files)
    for (const auto& f : file.findings) {
      auto [it, inserted] = rules.emplace(f.rule_id, f.severity);
      if (!inserted && f.severity > it->second) it->second = f.severity;
    }
  auto level = [](Severity s) {
    if (s >= Severity::kHigh) return "error";
    if (s == Severity::kMedium) return "warning";
    return "note";
  };
  json rule_array = json::array();
  std::map<std::string, int> rule_index;
  for (const auto& [id, sev] : rules) {
    rule_index[id] = static_cast<int>(rule_array.size());
    rule_array.push_back({{"id", id},
                          {"shortDescription", {{"text", id}}},
                          {"helpUri", "https://example.invalid/airlock/docs/rules.md#" + id},
                          {"defaultConfiguration", {{"level", level(sev)}}},
                          {"properties",
                           {{"security-severity", sev >= Severity::kCritical ? "9.5"
                                                  : sev >= Severity::kHigh   ? "8.0"
                                                  : sev >= Severity::kMedium ? "5.0"
                                                                             : "2.0"},
                            {"tags", {"security"}}}}});
  }
  json results = json::array();
  for (const auto& file : report.files)
    for (const auto& f : file.findings) {
      std::string text = f.message;
      if (!f.member.empty()) text += " (member " + f.member + ")";
      json physical = {{"artifactLocation", {{"uri", f.path}}}};
      if (f.offset && f.member.empty()) physical["region"] = {{"byteOffset", *f.offset}};
      results.push_back({{"ruleId", f.rule_id},
                         {"ruleIndex", rule_index[f.rule_id]},
                         {"level", level(f.severity)},
                         {"message", {{"text", text}}},
                         {"locations", {{{"physicalLocation", physical}}}}});
    }
  json doc = {{"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
              {"version", "2.1.0"},
              {"runs",
               {{{"tool",
                  {{"driver",
                    {{"name", "airlock"},
                     {"version", kVersion},
                     {"informationUri", "https://example.invalid/airlock"},
                     {"rules", rule_array}}}}},
                 {"results", results}}}}};
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace airlock::scan
