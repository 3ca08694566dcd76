#include "scan/report.h"

#include <fmt/format.h>

#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/hash.h"
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
  std::size_t files = 0;
  for (const auto& file : report.files) {
    // A folder's own line carries the worst verdict of its files: count files only.
    const bool folder = file.format == "model-folder";
    if (!folder) {
      counts[static_cast<int>(file.verdict)]++;
      ++files;
    }
    out += fmt::format("{}{:<12}{} {} ({})\n", color ? VerdictColor(file.verdict) : "",
                       VerdictName(file.verdict), reset, core::TerminalSafe(file.path),
                       folder                ? "model-folder: its files and cross-file checks"
                       : file.format.empty() ? "unknown"
                                             : file.format);
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
                     files, counts[0], counts[2], counts[1]);
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

namespace {

// Unreserved URI characters and '/' pass; everything else is percent-encoded (RFC 3986).
std::string PercentEncodePath(std::string_view path) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The rule family's section of docs/rules.md, as GitHub spells the heading's anchor.
std::string RulesAnchor(std::string_view rule_id) {
  std::string_view family = rule_id.substr(0, rule_id.find('.'));
  static const std::map<std::string_view, std::string_view> kAnchors = {
      {"gguf", "gguf-gguf"},
      {"safetensors", "safetensors-safetensors"},
      {"config", "model-repository-json-config-index-json"},
      {"index", "model-repository-json-config-index-json"},
      {"json", "model-repository-json-config-index-json"},
      {"tokenizer_config", "model-repository-json-config-index-json"},
      {"folder", "model-folders-folder"},
      {"template", "chat-templates-template"},
      {"keras", "keras-configs-keras"},
      {"code", "python-source-codepython-source-python"},
      {"python", "python-source-codepython-source-python"},
  };
  if (rule_id == "pickle.polyglot") return "polyglots-picklepolyglot";
  auto it = kAnchors.find(family);
  return std::string(it == kAnchors.end() ? "scan-rules" : it->second);
}

// "template.dangerous-global" -> "TemplateDangerousGlobal": SARIF wants a readable rule name
// that differs from the opaque id.
std::string RuleName(std::string_view id) {
  std::string out;
  bool upper = true;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c))) {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out;
}

const char* SecuritySeverity(Severity sev) {
  return sev >= Severity::kCritical ? "9.5"
         : sev >= Severity::kHigh   ? "8.0"
         : sev >= Severity::kMedium ? "5.0"
                                    : "2.0";
}

struct SarifUri {
  std::string uri;
  bool relative = false;  // relative to %SRCROOT% (the base folder)
};

// A file path as a SARIF artifact URI: relative to `base` when it lies inside it (GitHub code
// scanning needs repository-relative paths), else an absolute file:// URI.
SarifUri ArtifactUri(const std::string& path, const std::filesystem::path& base) {
  namespace fs = std::filesystem;
  fs::path p(path);
  fs::path absolute = (p.is_absolute() ? p : base / p).lexically_normal();
  fs::path rel = absolute.lexically_relative(base);
  std::string rel_text = rel.generic_string();
  if (!rel.empty() && rel_text != "." && rel_text.rfind("..", 0) != 0) {
    return {PercentEncodePath(rel_text), true};
  }
  std::string abs_text = absolute.generic_string();
  while (abs_text.size() > 1 && abs_text.back() == '/') abs_text.pop_back();
  return {"file://" + PercentEncodePath(abs_text), false};
}

}  // namespace

std::string RenderSarif(const ScanReport& report, const std::string& base_dir) {
  using nlohmann::json;
  namespace fs = std::filesystem;
  fs::path base = base_dir.empty() ? fs::current_path() : fs::path(base_dir);
  base = base.lexically_normal();
  // Rules: the worst severity seen, and the first message as an example of what it reports.
  struct RuleInfo {
    Severity severity = Severity::kInfo;
    std::string example;
  };
  std::map<std::string, RuleInfo> rules;
  for (const auto& file : report.files)
    for (const auto& f : file.findings) {
      auto [it, inserted] = rules.emplace(f.rule_id, RuleInfo{f.severity, f.message});
      if (!inserted && f.severity > it->second.severity) it->second.severity = f.severity;
    }
  auto level = [](Severity s) {
    if (s >= Severity::kHigh) return "error";
    if (s == Severity::kMedium) return "warning";
    return "note";
  };
  json rule_array = json::array();
  std::map<std::string, int> rule_index;
  for (const auto& [id, info] : rules) {
    rule_index[id] = static_cast<int>(rule_array.size());
    std::string help_uri = std::string(AIRLOCK_RULES_DOC_URL) + "#" + RulesAnchor(id);
    std::string full = "Airlock scan rule " + id + " (" + std::string(SeverityName(info.severity)) +
                       "). Example: " + info.example;
    std::string help =
        "What the rule means, and what makes a file malicious or inconclusive: " + help_uri +
        ". Vet the file before loading it; a high or critical finding means it "
        "must not be loaded.";
    rule_array.push_back(
        {{"id", id},
         {"name", RuleName(id)},
         {"shortDescription", {{"text", id}}},
         {"fullDescription", {{"text", full}}},
         {"help", {{"text", help}, {"markdown", "See [" + id + "](" + help_uri + ")."}}},
         {"helpUri", help_uri},
         {"defaultConfiguration", {{"level", level(info.severity)}}},
         {"properties",
          {{"security-severity", SecuritySeverity(info.severity)}, {"tags", {"security"}}}}});
  }
  json results = json::array();
  for (const auto& file : report.files)
    for (const auto& f : file.findings) {
      std::string text = f.message;
      if (!text.empty() && text.back() != '.') text += '.';
      if (!f.member.empty()) text += " (member " + f.member + ")";
      SarifUri uri = ArtifactUri(f.path, base);
      json artifact = {{"uri", uri.uri}};
      if (uri.relative) artifact["uriBaseId"] = "%SRCROOT%";
      // GitHub shows results by line: text formats have their own; a binary file or an archive
      // member is reported at line 1 of the file, with the byte offset when it is the file's.
      json region = {{"startLine", f.line ? *f.line : 1}};
      if (f.offset && f.member.empty() && !f.line) region["byteOffset"] = *f.offset;
      json physical = {{"artifactLocation", artifact}, {"region", region}};
      // Stable across runs and machines: rule, repository-relative location, member, message.
      std::string identity = f.rule_id + "\n" + uri.uri + "\n" + f.member + "\n" + f.message;
      json result = {{"ruleId", f.rule_id},
                     {"ruleIndex", rule_index[f.rule_id]},
                     {"level", level(f.severity)},
                     {"message", {{"text", text}}},
                     {"locations", {{{"physicalLocation", physical}}}},
                     {"partialFingerprints",
                      {{"airlockFindingHash/v1", core::ToHex(core::Sha256Of(identity))}}}};
      if (!f.member.empty()) result["properties"] = {{"member", f.member}};
      results.push_back(std::move(result));
    }
  std::string base_uri = "file://" + PercentEncodePath(base.generic_string());
  if (base_uri.back() != '/') base_uri += '/';
  json doc = {{"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
              {"version", "2.1.0"},
              {"runs",
               {{{"tool",
                  {{"driver",
                    {{"name", "airlock"},
                     {"version", kVersion},
                     {"semanticVersion", kVersion},
                     {"informationUri", AIRLOCK_RULES_DOC_URL},
                     {"rules", rule_array}}}}},
                 {"invocations", {{{"executionSuccessful", true}}}},
                 {"originalUriBaseIds", {{"%SRCROOT%", {{"uri", base_uri}}}}},
                 {"results", results}}}}};
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace airlock::scan
