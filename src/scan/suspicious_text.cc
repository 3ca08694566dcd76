#include "scan/internal/suspicious_text.h"

#include <re2/re2.h>

#include <array>
#include <memory>
#include <string>

namespace airlock::scan::internal {

namespace {

struct Pattern {
  TextKind kind;
  const char* regex;
};

constexpr std::array kPatterns = {
    Pattern{TextKind::kPythonCode,
            R"((?i)\b(os\.(system|popen|exec\w*|spawn\w*)|subprocess\.\w+|__import__\s*\(|)"
            R"(exec\s*\(|eval\s*\(|compile\s*\(|importlib\.\w+|pickle\.loads?|marshal\.loads|)"
            R"(builtins\.\w+|getattr\s*\(\s*__builtins__))"},
    Pattern{TextKind::kPythonCode,
            R"(\b(import\s+(os|sys|subprocess|socket|shutil|ctypes|pty|base64|requests|urllib)\b|)"
            R"(from\s+(os|subprocess|socket|ctypes|pty)\s+import\b))"},
    Pattern{
        TextKind::kShell,
        R"((?i)(\brm\s+-[a-z]*[rf][a-z]*\s|\bchmod\s+([0-7]{3,4}|\+x)\b|\b(curl|wget)\s+[^\n]*https?://|)"
        R"(\|\s*(ba|z|da)?sh\b|\bbash\s+-c\b|/bin/(ba|z|da)?sh\b|\bnc\s+(-\w+\s+)*-e\b|)"
        R"(\bpowershell(\.exe)?\s+-|\bmkfifo\b|/dev/tcp/))"},
    Pattern{TextKind::kScript,
            R"((?i)(<\s*script\b|javascript\s*:|document\.cookie|\bonerror\s*=))"},
    Pattern{
        TextKind::kObfuscation,
        R"(((\\x[0-9a-fA-F]{2}){4,}|b64decode\s*\(|fromCharCode\s*\(|(\\u00[0-9a-fA-F]{2}){4,}))"},
};

// Hosts whose URLs are ordinary in model metadata (model cards, licenses, papers, code).
constexpr std::string_view kTrustedHosts[] = {
    "huggingface.co",
    "hf.co",
    "github.com",
    "githubusercontent.com",
    "arxiv.org",
    "ollama.com",
    "meta.com",
    "qwenlm.github.io",
    "qwen.ai",
    "deepseek.com",
    "apache.org",
    "opensource.org",
    "creativecommons.org",
    "mistral.ai",
    "google.com",
    "stability.ai",
    "microsoft.com",
    "nvidia.com",
    "openai.com",
    "pytorch.org",
    "tensorflow.org",
    "modelscope.cn",
    "spdx.org",
    "gnu.org",
    "doi.org",
    "aclanthology.org",
};

bool TrustedHost(std::string_view host) {
  // Lower-case comparison on the host and its parent domains.
  std::string h;
  for (char c : host) h += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (auto colon = h.find(':'); colon != std::string::npos) h.resize(colon);
  for (std::string_view t : kTrustedHosts) {
    if (h == t) return true;
    if (h.size() > t.size() && h.compare(h.size() - t.size(), t.size(), t) == 0 &&
        h[h.size() - t.size() - 1] == '.')
      return true;
  }
  return false;
}

const std::vector<std::unique_ptr<RE2>>& Compiled() {
  static const auto* compiled = [] {
    auto* v = new std::vector<std::unique_ptr<RE2>>();
    for (const Pattern& p : kPatterns) {
      RE2::Options o;
      o.set_log_errors(false);
      o.set_max_mem(8 << 20);
      v->push_back(std::make_unique<RE2>(p.regex, o));
    }
    return v;
  }();
  return *compiled;
}

}  // namespace

std::string_view TextKindName(TextKind k) {
  switch (k) {
    case TextKind::kPythonCode:
      return "python code";
    case TextKind::kShell:
      return "shell command";
    case TextKind::kScript:
      return "HTML/JavaScript";
    case TextKind::kObfuscation:
      return "obfuscated/encoded payload";
    case TextKind::kUrl:
      return "URL";
  }
  return "text";
}

std::string Printable(std::string_view s, std::size_t max) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : (u == '\n' || u == '\t' ? ' ' : '?');
  }
  return out;
}

std::vector<TextMatch> FindSuspiciousText(std::string_view text) {
  std::vector<TextMatch> out;
  if (text.empty()) return out;
  const auto& compiled = Compiled();
  auto seen = [&out](TextKind k) {
    for (const auto& m : out)
      if (m.kind == k) return true;
    return false;
  };
  for (std::size_t i = 0; i < kPatterns.size(); ++i) {
    if (seen(kPatterns[i].kind) || !compiled[i]->ok()) continue;
    re2::StringPiece match;
    if (compiled[i]->Match(text, 0, text.size(), RE2::UNANCHORED, &match, 1)) {
      out.push_back({kPatterns[i].kind, Printable(std::string_view(match.data(), match.size()))});
    }
  }
  static const RE2 url_re(R"((?i)\b(?:https?|ftp)://([a-z0-9.\-]+(?::[0-9]+)?))");
  re2::StringPiece input(text.data(), text.size());
  re2::StringPiece host;
  while (RE2::FindAndConsume(&input, url_re, &host)) {
    if (!TrustedHost(std::string_view(host.data(), host.size()))) {
      out.push_back({TextKind::kUrl, Printable(std::string_view(host.data(), host.size()))});
      break;
    }
  }
  return out;
}

MetadataFinding MetadataTextFinding(std::string_view family, TextKind kind, Severity url_severity) {
  const std::string code = std::string(family) + ".metadata-code";
  switch (kind) {
    case TextKind::kPythonCode:
    case TextKind::kShell:
      return {code, Severity::kHigh};
    case TextKind::kScript:
    case TextKind::kObfuscation:
      return {code, Severity::kMedium};
    case TextKind::kUrl:
      break;
  }
  return {std::string(family) + ".metadata-url", url_severity};
}

}  // namespace airlock::scan::internal
