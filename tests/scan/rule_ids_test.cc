// Every rule id that `airlock scan` can emit is documented in docs/rules.md, and every rule the
// tables there list is still emitted. The ids are collected from the sources at test time:
//   - string literals "<family>.<name>" in src/scan/*.cc and src/template/analyze.cc (the
//     template analyzer's findings), for the rule families below;
//   - "gguf." / "safetensors." + the issue codes of the format parsers (hyphenated literals in
//     src/formats/gguf*.cc and safetensors.cc, plus "truncated"), which the analyzers prefix;
//   - "python." + the suffixes python_analyzer.cc appends (`rule += "..."`);
//   - "<family>.metadata-code" and "-url" for each MetadataTextFinding("<family>", ...) call.
// A new finding with an undocumented id, or a documented rule that no code emits, fails here.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using airlock::testing::ReadFileText;

namespace fs = std::filesystem;

const fs::path kSource = AIRLOCK_SOURCE_DIR;

std::vector<fs::path> SourcesIn(const fs::path& dir, const std::string& prefix = "") {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".cc" && name.starts_with(prefix)) out.push_back(e.path());
  }
  return out;
}

void AddMatches(const std::string& text, const std::regex& re, const std::string& prefix,
                std::set<std::string>& out) {
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it)
    out.insert(prefix + (*it)[1].str());
}

// Literals in these families that name files, modules or hosts, not rules.
const std::set<std::string> kNotRules = {
    "config.json", "pickle.load", "pickle.loads", "pickle._load", "pickle._loads", "tensorflow.org",
};

std::set<std::string> EmittedRuleIds() {
  std::set<std::string> ids;
  const std::regex family_literal(
      "\"((?:archive|code|config|folder|gguf|index|json|keras|npy|pickle|python|safetensors|scan|"
      "template|tensorflow|torchscript|yaml|zip)\\.[a-z0-9]+(?:-[a-z0-9]+)*)\"");
  // torch.* literals are mostly module names; its rules are the hyphenated ones.
  const std::regex torch_rule("\"(torch\\.[a-z0-9]+(?:-[a-z0-9]+)+)\"");
  std::vector<fs::path> files = SourcesIn(kSource / "src" / "scan");
  files.push_back(kSource / "src" / "template" / "analyze.cc");
  for (const fs::path& f : files) {
    const std::string text = ReadFileText(f);
    std::set<std::string> found;
    AddMatches(text, family_literal, "", found);
    AddMatches(text, torch_rule, "", found);
    for (const std::string& id : found)
      if (!kNotRules.contains(id)) ids.insert(id);
  }
  const std::regex issue_code("\"([a-z][a-z0-9]*(?:-[a-z0-9]+)+)\"");
  for (const fs::path& f : SourcesIn(kSource / "src" / "formats", "gguf"))
    if (f.filename() != "gguf_writer.cc") AddMatches(ReadFileText(f), issue_code, "gguf.", ids);
  AddMatches(ReadFileText(kSource / "src" / "formats" / "safetensors.cc"), issue_code,
             "safetensors.", ids);
  ids.insert("gguf.truncated");
  ids.insert("safetensors.truncated");
  AddMatches(ReadFileText(kSource / "src" / "scan" / "python_analyzer.cc"),
             std::regex("rule \\+= \"([a-z0-9-]+)\""), "python.", ids);
  // MetadataTextFinding("<family>", ...) yields <family>.metadata-code and <family>.metadata-url.
  std::set<std::string> metadata_families;
  for (const fs::path& f : files)
    AddMatches(ReadFileText(f), std::regex("MetadataTextFinding\\(\"([a-z]+)\""), "",
               metadata_families);
  for (const std::string& family : metadata_families) {
    ids.insert(family + ".metadata-code");
    ids.insert(family + ".metadata-url");
  }
  return ids;
}

struct DocumentedRules {
  std::set<std::string> anywhere;   // every `family.name` in backticks
  std::set<std::string> in_tables;  // those in the first cell of a table row
};

DocumentedRules ReadRulesDoc() {
  DocumentedRules d;
  const std::regex id("`([a-z0-9_]+\\.[a-z0-9_-]+)`");
  std::istringstream doc(ReadFileText(kSource / "docs" / "rules.md"));
  for (std::string line; std::getline(doc, line);) {
    AddMatches(line, id, "", d.anywhere);
    if (line.starts_with("| `")) {
      const std::string first_cell = line.substr(1, line.find('|', 1) - 1);
      AddMatches(first_cell, id, "", d.in_tables);
    }
  }
  return d;
}

TEST(RuleIds, EveryEmittedRuleIsDocumented) {
  const std::set<std::string> emitted = EmittedRuleIds();
  // The collector must see the families it claims to (a moved source folder would make this
  // test pass vacuously otherwise).
  for (const char* id :
       {"pickle.dangerous-import", "zip.polyglot", "gguf.bad-magic", "safetensors.bad-json",
        "python.process", "template.dunder-access", "keras.lambda-layer", "scan.unknown-format"})
    EXPECT_TRUE(emitted.contains(id)) << id << " was not collected from the sources";
  const DocumentedRules doc = ReadRulesDoc();
  ASSERT_FALSE(doc.anywhere.empty()) << "docs/rules.md not found or empty";
  for (const std::string& id : emitted)
    EXPECT_TRUE(doc.anywhere.contains(id)) << id << " is emitted but not in docs/rules.md";
}

TEST(RuleIds, EveryDocumentedRuleIsEmitted) {
  const std::set<std::string> emitted = EmittedRuleIds();
  for (const std::string& id : ReadRulesDoc().in_tables)
    EXPECT_TRUE(emitted.contains(id)) << id << " is listed in docs/rules.md but no code emits it";
}

}  // namespace
