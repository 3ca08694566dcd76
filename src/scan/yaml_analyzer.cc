// YAML configs shipped with models. Two risks: PyYAML's unsafe loaders construct arbitrary Python
// objects from `!!python/...` tags, and chat templates (or other Jinja strings) stored as values
// run in the template engine. We do not build a YAML document: every `key: value` line is found,
// its scalar value (plain, quoted or block, folded as YAML does) is decoded, and values that are
// templates go to the template analyzer.
#include <string>
#include <vector>

#include "core/file.h"
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {
namespace {

struct Line {
  std::string_view text;
  std::size_t offset;
  std::size_t indent;
};

std::vector<Line> SplitLines(std::string_view text) {
  std::vector<Line> lines;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view l = text.substr(pos, end - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    std::size_t indent = l.find_first_not_of(' ');
    lines.push_back({l, pos, indent == std::string_view::npos ? l.size() : indent});
    if (end == text.size()) break;
    pos = end + 1;
  }
  return lines;
}

std::string_view Trim(std::string_view s) {
  std::size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  std::size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Folds flow-scalar lines: single line breaks become spaces, empty lines become newlines.
std::string Fold(const std::vector<std::string_view>& parts) {
  std::string out;
  bool pending_space = false;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    std::string_view p = i == 0 ? parts[i] : Trim(parts[i]);
    if (p.empty() && i > 0) {
      out += '\n';
      pending_space = false;
      continue;
    }
    if (pending_space) out += ' ';
    out += p;
    pending_space = true;
  }
  return out;
}

std::string DecodeDoubleQuoted(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char c = s[++i];
    switch (c) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case '0':
        out += '\0';
        break;
      case '"':
        out += '"';
        break;
      case '\\':
        out += '\\';
        break;
      case '/':
        out += '/';
        break;
      case ' ':
        out += ' ';
        break;
      default:
        out += '\\';
        out += c;  // \x, \u: kept as written; the analyzer sees the escape
    }
  }
  return out;
}

std::string DecodeSingleQuoted(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    out += s[i];
    if (s[i] == '\'' && i + 1 < s.size() && s[i + 1] == '\'') ++i;
  }
  return out;
}

// The scalar starting at `first` (text after "key:") with continuation lines `more`.
std::string DecodeScalar(std::string_view first, const std::vector<std::string_view>& more) {
  first = Trim(first);
  if (!first.empty() && (first[0] == '|' || first[0] == '>')) {
    std::size_t common = std::string_view::npos;
    for (auto l : more)
      if (!Trim(l).empty()) common = std::min(common, l.find_first_not_of(' '));
    std::string out;
    for (std::size_t i = 0; i < more.size(); ++i) {
      std::string_view l = more[i];
      l = l.size() >= common && common != std::string_view::npos ? l.substr(common) : Trim(l);
      if (i > 0) out += first[0] == '|' ? '\n' : ' ';
      out += l;
    }
    return out;
  }
  std::vector<std::string_view> parts;
  if (!first.empty()) parts.push_back(first);
  for (auto l : more) parts.push_back(parts.empty() ? Trim(l) : l);
  std::string folded = Fold(parts);
  if (folded.size() >= 2 && folded.front() == '"' && folded.back() == '"')
    return DecodeDoubleQuoted(std::string_view(folded).substr(1, folded.size() - 2));
  if (folded.size() >= 2 && folded.front() == '\'' && folded.back() == '\'')
    return DecodeSingleQuoted(std::string_view(folded).substr(1, folded.size() - 2));
  return folded;
}

bool IsKeyChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
}

}  // namespace

void AnalyzeYaml(Scanner& s, const Target& t) {
  if (t.data.size() > s.limits().max_json_bytes) {
    s.Incomplete(t, "yaml.too-large",
                 "YAML file larger than the config size limit was not analyzed", 0, Severity::kLow);
    return;
  }
  std::string_view text = core::AsStringView(t.data);
  for (std::size_t pos = text.find("!!python/"); pos != std::string_view::npos;
       pos = text.find("!!python/", pos + 1)) {
    std::string_view tag = text.substr(pos, 80);
    tag = tag.substr(0, tag.find_first_of(" \n'\"[{"));
    s.Add(t, "yaml.python-tag", Severity::kCritical,
          "YAML tag '" + std::string(tag) +
              "' makes PyYAML's unsafe loaders construct Python objects (code execution)",
          pos);
  }
  auto lines = SplitLines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view l = lines[i].text.substr(lines[i].indent);
    if (l.empty() || l[0] == '#') continue;
    if (l.size() > 2 && l[0] == '-' && l[1] == ' ') l.remove_prefix(2);
    std::size_t k = 0;
    while (k < l.size() && IsKeyChar(l[k])) ++k;
    if (k == 0 || k >= l.size() || l[k] != ':' || (k + 1 < l.size() && l[k + 1] != ' ')) continue;
    std::string key(l.substr(0, k));
    std::string_view rest = l.substr(k + 1);
    auto continues = [&](std::size_t j) {
      return lines[j].indent > lines[i].indent || Trim(lines[j].text).empty();
    };
    // A nested mapping or sequence: its own lines are visited by the loop, so look only at the
    // first deeper line here (gathering them all for every key costs lines x nesting depth).
    if (Trim(rest).empty()) {
      std::size_t first = i + 1;
      while (first < lines.size() && Trim(lines[first].text).empty()) ++first;
      if (first < lines.size() && lines[first].indent > lines[i].indent) {
        std::string_view next = Trim(lines[first].text);
        std::size_t nk = 0;
        while (nk < next.size() && IsKeyChar(next[nk])) ++nk;
        bool mapping = nk > 0 && nk < next.size() && next[nk] == ':';
        if (mapping || (next.size() >= 2 && next[0] == '-' && next[1] == ' ')) continue;
      }
    }
    // A scalar: its continuation lines belong to it and are not visited again.
    std::vector<std::string_view> more;
    std::size_t j = i + 1;
    while (j < lines.size() && continues(j)) more.push_back(lines[j++].text);
    while (!more.empty() && Trim(more.back()).empty()) more.pop_back();
    const std::size_t key_line = i;
    i = j - 1;
    std::string value = DecodeScalar(rest, more);
    bool templated = value.find("{{") != std::string::npos || value.find("{%") != std::string::npos;
    if (templated || key.find("template") != std::string::npos) {
      if (!value.empty()) AnalyzeTemplateSource(s, t, value, lines[key_line].offset);
    }
  }
}

}  // namespace airlock::scan::internal
