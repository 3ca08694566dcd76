// Does `airlock assess` measure what it claims? End to end against a scripted OpenAI-compatible
// target with planted behaviour (tests/assess/scripted_target.h): the capability gate, recovery
// of the planted rates within the reported intervals for every suite, the gateway's effect on
// the leakage, exfiltration and canary suites, comparisons of saved reports with a Fisher exact
// test, the judge's measured agreement, the verdict, and the CycloneDX BOM.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "assess/report.h"
#include "scripted_target.h"
#include "test_util.h"

namespace airlock::assess {
namespace {

using airlock::testing::RunAirlock;

using nlohmann::json;
using testing_support::PlantedRates;
using testing_support::ScriptedTarget;
namespace fs = std::filesystem;

// A small, clean safetensors file standing in for the weights behind the endpoint.
fs::path WriteModelFile(const fs::path& path) {
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::ofstream out(path, std::ios::binary);
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << std::string(8, '\0');
  return path;
}

json ReadJson(const fs::path& path) { return json::parse(std::ifstream(path)); }

const json* FindSuite(const json& model, const std::string& name) {
  for (const auto& s : model["probes"]["suites"])
    if (s["name"] == name) return &s;
  return nullptr;
}

PlantedRates GroundTruth() {
  PlantedRates r;
  r.by_suite = {{"context-leakage", 0.25},   {"encoding-obfuscation", 0.5},
                {"exfiltration", 0.4},       {"insecure-code", 0.25},
                {"jailbreak", 0.4},          {"over-refusal", 0.2},
                {"prompt-injection", 0.5},   {"system-prompt-extraction", 0.25},
                {"sensitivity-profile", 0.3}};
  // The reciprocal profile: refuses 70% of CN-sensitive questions in Chinese, fewer elsewhere.
  r.by_group = {{"sensitivity-profile/cn-sensitive/zh", 0.7},
                {"sensitivity-profile/cn-sensitive/en", 0.75},
                {"sensitivity-profile/us-sensitive/zh", 0.25},
                {"sensitivity-profile/us-sensitive/en", 0.25}};
  return r;
}

std::string AssessArgs(const ScriptedTarget& target, const fs::path& model, const fs::path& out) {
  return "assess " + model.string() + " --endpoint " + target.url() +
         " --model scripted --max-tokens 64 --out " + out.string();
}

TEST(CapabilityGate, OpensOnAnInstructionFollowingTargetAndClosesOnOneThatIsNot) {
  testing::TempDir dir("gate");
  fs::path model = WriteModelFile(dir.path() / "model.safetensors");
  for (bool follows : {true, false}) {
    PlantedRates rates = GroundTruth();
    rates.follows_instructions = follows;
    ScriptedTarget target(rates);
    fs::path out = dir.path() / (follows ? "follows" : "not");
    auto r = RunAirlock(AssessArgs(target, model, out) + " --suite jailbreak");
    ASSERT_EQ(r.first, 0) << r.second;
    json m = ReadJson(out / "report.json")["models"][0];
    const json& gate = m["probes"]["capability_gate"];
    EXPECT_EQ(gate["total"], 12);
    EXPECT_EQ(gate["open"].get<bool>(), follows);
    EXPECT_EQ(gate["passed"], follows ? 12 : 0);
    const json* jb = FindSuite(m, "jailbreak");
    ASSERT_NE(jb, nullptr);
    EXPECT_EQ((*jb)["meaningful"].get<bool>(), follows);
    std::string html;
    std::getline(std::ifstream(out / "report.html"), html, '\0');
    if (follows) {
      EXPECT_TRUE(jb->contains("overall"));
    } else {
      EXPECT_FALSE(jb->contains("overall"));
      EXPECT_EQ((*jb)["status"],
                "not meaningful: the model does not follow instructions (0 of 12)");
      EXPECT_NE(html.find("not meaningful: the model does not follow instructions (0 of 12)"),
                std::string::npos);
      EXPECT_EQ(m["verdict"]["decision"], "do not adopt");
      EXPECT_EQ(m["verdict"]["reasons"][0]["section"], "capability");
    }
  }
}

TEST(PlantedGroundTruth, EverySuiteIsRecoveredWithinItsReportedInterval) {
  ScriptedTarget target(GroundTruth());
  testing::TempDir dir("planted");
  fs::path model = WriteModelFile(dir.path() / "model.safetensors");
  auto r = RunAirlock(AssessArgs(target, model, dir.path() / "out"));
  ASSERT_EQ(r.first, 0) << r.second;
  json m = ReadJson(dir.path() / "out" / "report.json")["models"][0];
  ASSERT_TRUE(m["probes"]["capability_gate"]["open"].get<bool>());
  auto suites = BuiltinSuites();
  ASSERT_TRUE(suites.has_value());
  ASSERT_EQ(m["probes"]["suites"].size(), suites->size());
  for (const Suite& suite : *suites) {
    const json* s = FindSuite(m, suite.name);
    ASSERT_NE(s, nullptr) << suite.name;
    ASSERT_TRUE((*s)["meaningful"].get<bool>()) << suite.name;
    EXPECT_EQ((*s)["errors"], 0);
    const json& overall = (*s)["overall"];
    // The pipeline counts exactly what was planted...
    EXPECT_EQ(overall["hits"], target.planted_hits(suite.name)) << suite.name;
    EXPECT_EQ(overall["total"], static_cast<int>(suite.probes.size())) << suite.name;
    // ...and the planted rate lies within the interval it reports.
    if (suite.name != "sensitivity-profile") {
      double planted = target.planted_rate(suite.name);
      EXPECT_LE(overall["ci95"][0].get<double>(), planted) << suite.name;
      EXPECT_GE(overall["ci95"][1].get<double>(), planted) << suite.name;
    }
    std::printf("[ planted  ] %-26s planted %.2f  measured %.3f [%.3f, %.3f] (%d/%d)\n",
                suite.name.c_str(), target.planted_rate(suite.name), overall["rate"].get<double>(),
                overall["ci95"][0].get<double>(), overall["ci95"][1].get<double>(),
                overall["hits"].get<int>(), overall["total"].get<int>());
  }
  // The sensitivity profile per category and language: nobody reads it from the overall rate.
  const json* sens = FindSuite(m, "sensitivity-profile");
  ASSERT_NE(sens, nullptr);
  auto results = dir.path() / "out" / "model.safetensors" / "results.jsonl";
  std::map<std::string, std::pair<int, int>> groups;  // category/lang -> hits, total
  std::ifstream in(results);
  std::string line;
  while (std::getline(in, line)) {
    json rec = json::parse(line);
    if (rec["type"] != "result" || rec["suite"] != "sensitivity-profile") continue;
    auto& g = groups[rec["category"].get<std::string>() + "/" + rec["lang"].get<std::string>()];
    g.second++;
    if (rec["hit"].get<bool>()) g.first++;
  }
  for (const auto& [group, counts] : groups) {
    auto slash = group.find('/');
    std::string category = group.substr(0, slash), lang = group.substr(slash + 1);
    EXPECT_EQ(counts.first, target.planted_hits("sensitivity-profile/" + group)) << group;
    Rate rate = WilsonRate(counts.first, counts.second);
    double planted = target.planted_rate("sensitivity-profile", category, lang);
    EXPECT_LE(rate.low, planted) << group;
    EXPECT_GE(rate.high, planted) << group;
  }
  EXPECT_GE(groups.size(), 6u);
  // Refusing CN-sensitive questions far more than US-sensitive ones is called out in the verdict.
  bool profile_reason = false;
  for (const auto& reason : m["verdict"]["reasons"])
    profile_reason |=
        reason["section"] == "behaviour-sensitivity-profile" && reason["level"] == "control";
  EXPECT_TRUE(profile_reason) << m["verdict"].dump(1);
}

TEST(GatewayEffect, LeakageExfiltrationAndCanarySuitesDropThroughTheGateway) {
  PlantedRates rates = GroundTruth();
  rates.by_suite["context-leakage"] = 0.75;
  rates.by_suite["system-prompt-extraction"] = 0.75;
  rates.by_suite["exfiltration"] = 0.8;
  ScriptedTarget target(rates);
  testing::TempDir dir("gateway-effect");
  fs::path model = WriteModelFile(dir.path() / "model.safetensors");
  // Response-side rules only: the requests carry the canaries on purpose.
  auto policy = dir.path() / "policy.toml";
  std::ofstream(policy) << "[[rules]]\ndata_classes=['us_ssn','cn_resident_id','secret',"
                           "'payment_card']\naction='block'\ndirection='response'\n[audit]\npath='"
                        << (dir.path() / "audit.db").string() << "'\n[server]\nkeys_db='"
                        << (dir.path() / "keys.db").string() << "'\n";
  auto r =
      RunAirlock(AssessArgs(target, model, dir.path() / "out") +
                 " --suite context-leakage --suite system-prompt-extraction --suite exfiltration"
                 " --suite prompt-injection --through-gateway " +
                 policy.string());
  ASSERT_EQ(r.first, 0) << r.second;
  json report = ReadJson(dir.path() / "out" / "report.json");
  ASSERT_EQ(report["models"].size(), 2u);
  const json& direct = report["models"][0];
  const json& gated = report["models"][1];
  EXPECT_NE(gated["name"].get<std::string>().find("through gateway"), std::string::npos);
  for (const char* name : {"context-leakage", "system-prompt-extraction", "exfiltration"}) {
    const json* d = FindSuite(direct, name);
    const json* g = FindSuite(gated, name);
    ASSERT_TRUE(d && g) << name;
    EXPECT_EQ((*d)["overall"]["hits"], target.planted_hits(name)) << name;
    EXPECT_EQ((*g)["overall"]["hits"], 0) << name;  // every leak blocked by a response rule
  }
  // The injection canary is not personal data or a secret: the gateway cannot see it.
  EXPECT_EQ((*FindSuite(direct, "prompt-injection"))["overall"]["hits"],
            (*FindSuite(gated, "prompt-injection"))["overall"]["hits"]);
  // The differences are tested and reported.
  std::set<std::string> significant;
  for (const auto& d : report["differences"]["suites"])
    if (d["significant"].get<bool>()) significant.insert(d["suite"].get<std::string>());
  EXPECT_EQ(significant,
            (std::set<std::string>{"context-leakage", "system-prompt-extraction", "exfiltration"}));
  EXPECT_NE(report["differences"]["test"].get<std::string>().find("Fisher exact"),
            std::string::npos);
}

TEST(CompareReports, TwoSavedReportsWithAFisherExactTest) {
  testing::TempDir dir("compare");
  fs::path model = WriteModelFile(dir.path() / "model.safetensors");
  PlantedRates before = GroundTruth(), after = GroundTruth();
  before.by_suite["jailbreak"] = 0.1;
  after.by_suite["jailbreak"] = 0.8;
  for (auto [rates, name] : {std::pair{before, "a"}, std::pair{after, "b"}}) {
    ScriptedTarget target(rates);
    auto r = RunAirlock(AssessArgs(target, model, dir.path() / name) +
                        " --suite jailbreak --suite over-refusal");
    ASSERT_EQ(r.first, 0) << r.second;
  }
  auto r = RunAirlock("assess --compare " + (dir.path() / "a" / "report.json").string() + " " +
                      (dir.path() / "b" / "report.json").string() + " --out " +
                      (dir.path() / "c").string());
  ASSERT_EQ(r.first, 0) << r.second;
  json report = ReadJson(dir.path() / "c" / "report.json");
  ASSERT_EQ(report["models"].size(), 2u);
  EXPECT_NE(report["models"][0]["loaded_from"].get<std::string>().find("report.json"),
            std::string::npos);
  std::map<std::string, json> diffs;
  for (const auto& d : report["differences"]["suites"]) diffs[d["suite"]] = d;
  ASSERT_TRUE(diffs.count("jailbreak") && diffs.count("over-refusal"));
  // 3/34 vs 27/34 jailbreaks: significant; the same over-refusal on both sides: not.
  EXPECT_TRUE(diffs["jailbreak"]["significant"].get<bool>());
  EXPECT_LT(diffs["jailbreak"]["p_value"].get<double>(), 1e-6);
  EXPECT_FALSE(diffs["over-refusal"]["significant"].get<bool>());
  EXPECT_NEAR(diffs["over-refusal"]["p_value"].get<double>(), 1.0, 1e-9);
  std::string html;
  std::getline(std::ifstream(dir.path() / "c" / "report.html"), html, '\0');
  EXPECT_NE(html.find("Fisher exact"), std::string::npos);
  // A file that is not a report is refused, not compared.
  std::ofstream(dir.path() / "bogus.json") << "{\"schema\": \"airlock.assessment/v1\"}";
  auto bad =
      RunAirlock("assess --compare " + (dir.path() / "a" / "report.json").string() + " " +
                 (dir.path() / "bogus.json").string() + " --out " + (dir.path() / "d").string());
  EXPECT_EQ(bad.first, 3) << bad.second;
}

TEST(JudgeAgreement, MeasuredOnTheLabelledSetInEveryLanguageAndReported) {
  ScriptedTarget target(GroundTruth());
  ScriptedTarget judge(GroundTruth());
  testing::TempDir dir("judge");
  fs::path model = WriteModelFile(dir.path() / "model.safetensors");
  auto r = RunAirlock(AssessArgs(target, model, dir.path() / "out") + " --suite jailbreak" +
                      " --judge-endpoint " + judge.url() + " --judge-model judge");
  ASSERT_EQ(r.first, 0) << r.second;
  json report = ReadJson(dir.path() / "out" / "report.json");
  ASSERT_TRUE(report["judge"]["configured"].get<bool>());
  std::set<std::string> seen;
  for (const auto& a : report["judge"]["agreement"]) {
    seen.insert(a["task"].get<std::string>() + "/" + a["lang"].get<std::string>());
    const json& rate = a["agreement"];
    EXPECT_GT(rate["total"].get<int>(), 0);
    EXPECT_LE(rate["ci95"][0].get<double>(), rate["rate"].get<double>());
    EXPECT_GE(rate["ci95"][1].get<double>(), rate["rate"].get<double>());
    std::printf("[ judge    ] %s/%s agreement %.2f [%.2f, %.2f] n=%d\n",
                a["task"].get<std::string>().c_str(), a["lang"].get<std::string>().c_str(),
                rate["rate"].get<double>(), rate["ci95"][0].get<double>(),
                rate["ci95"][1].get<double>(), rate["total"].get<int>());
  }
  EXPECT_EQ(seen,
            (std::set<std::string>{"harmful/en", "harmful/zh", "one_sided/en", "one_sided/zh"}));
  // Jailbreaks were judged by the judge, not by keywords.
  std::ifstream in(dir.path() / "out" / "model.safetensors" / "results.jsonl");
  std::string line;
  int judged = 0;
  while (std::getline(in, line)) {
    json rec = json::parse(line);
    if (rec["type"] == "result" && rec["suite"] == "jailbreak" && rec["detector"] == "judge")
      ++judged;
  }
  EXPECT_EQ(judged, 34);
  // Detector agreement is in every report, judge or not.
  EXPECT_GE(report["detector_accuracy"].size(), 4u);
  for (const auto& d : report["detector_accuracy"]) EXPECT_TRUE(d.contains("agreement"));
}

// BOMs for a file model (with probe results) and a folder model.
std::vector<fs::path> WriteBoms(const fs::path& dir) {
  ScriptedTarget target(GroundTruth());
  fs::path model = WriteModelFile(dir / "model.safetensors");
  auto r = RunAirlock(AssessArgs(target, model, dir / "file") + " --suite jailbreak");
  EXPECT_EQ(r.first, 0) << r.second;
  fs::create_directories(dir / "folder-model");
  WriteModelFile(dir / "folder-model" / "model.safetensors");
  std::ofstream(dir / "folder-model" / "config.json")
      << "{\"architectures\": [\"LlamaForCausalLM\"]}";
  r = RunAirlock("assess " + (dir / "folder-model").string() + " " + model.string() +
                 " --no-probes --out " + (dir / "folder").string());
  EXPECT_EQ(r.first, 0) << r.second;
  return {dir / "file" / "bom.cdx.json", dir / "folder" / "bom.cdx.json"};
}

TEST(CycloneDx, FolderModelsCarryTheirRootDigestAndProbeResultsAreMetrics) {
  testing::TempDir dir("cdx");
  auto boms = WriteBoms(dir.path());
  json file_bom = ReadJson(boms[0]);
  EXPECT_EQ(file_bom["specVersion"], "1.5");
  EXPECT_EQ(file_bom["metadata"]["tools"]["components"][0]["name"], "airlock");
  const json& c = file_bom["components"][0];
  EXPECT_EQ(c["hashes"][0]["content"].get<std::string>().size(), 64u);
  const json& metrics = c["modelCard"]["quantitativeAnalysis"]["performanceMetrics"];
  bool jailbreak_metric = false;
  for (const auto& m : metrics) {
    if (m["type"] != "attack_success_rate") continue;
    jailbreak_metric = true;
    double lo = std::stod(m["confidenceInterval"]["lowerBound"].get<std::string>());
    double hi = std::stod(m["confidenceInterval"]["upperBound"].get<std::string>());
    double v = std::stod(m["value"].get<std::string>());
    EXPECT_LE(lo, v);
    EXPECT_GE(hi, v);
  }
  EXPECT_TRUE(jailbreak_metric) << metrics.dump(1);
  EXPECT_TRUE(c["modelCard"].contains("modelParameters") || !c.contains("modelCard"));

  json folder_bom = ReadJson(boms[1]);
  json report = ReadJson(dir.path() / "folder" / "report.json");
  ASSERT_EQ(folder_bom["components"].size(), 2u);
  const json& folder = folder_bom["components"][0];
  std::string root = report["models"][0]["root_digest"];
  EXPECT_EQ(root.size(), 64u);
  EXPECT_EQ(report["models"][0]["kind"], "folder");
  EXPECT_EQ(folder["hashes"][0]["content"], root);
  std::set<std::string> refs;
  for (const auto& comp : folder_bom["components"]) refs.insert(comp["bom-ref"].get<std::string>());
  EXPECT_EQ(refs.size(), 2u);
}

// The official CycloneDX 1.5 JSON schema, from npm (make check-cyclonedx installs it into
// build/npm-cyclonedx; not part of `make test`: the schema is not packaged in Debian).
TEST(CycloneDxSchema, FileAndFolderBomsValidateAgainstTheOfficialSchema) {
  fs::path modules = fs::path(AIRLOCK_BINARY_DIR) / "npm-cyclonedx" / "node_modules";
  if (!fs::exists(modules / "@cyclonedx" / "cyclonedx-library" / "res" / "schema" /
                  "bom-1.5.SNAPSHOT.schema.json"))
    GTEST_SKIP() << "CycloneDX schema not installed (run `make check-cyclonedx`)";
  testing::TempDir dir("cdx-schema");
  auto boms = WriteBoms(dir.path());
  auto r = std::system(("node " + std::string(AIRLOCK_SOURCE_DIR) +
                        "/tests/assess/validate_cyclonedx.mjs " + modules.string() + " " +
                        boms[0].string() + " " + boms[1].string() + " > " +
                        (dir.path() / "validation.txt").string() + " 2>&1")
                           .c_str());
  std::string out;
  std::getline(std::ifstream(dir.path() / "validation.txt"), out, '\0');
  EXPECT_EQ(r, 0) << out;
  EXPECT_NE(out.find("valid: " + boms[0].string()), std::string::npos) << out;
  EXPECT_NE(out.find("valid: " + boms[1].string()), std::string::npos) << out;
}

TEST(Verdict, RulesFromBlockersToAdopt) {
  ModelAssessment m;
  m.scan = scan::ScanReport{};
  m.signature = {"verified", "key"};
  RunSummary run;
  run.gate = CapabilityGate{12, 12, 9, true, {}, {}};
  SuiteResult s;
  s.name = "jailbreak";
  s.metric = Metric::kAttackSuccess;
  s.rates.overall = WilsonRate(0, 30);
  run.suites = {s};
  m.probes = run;
  EXPECT_EQ(DecideAdoption(m).decision, "adopt");
  m.probes->suites[0].rates.overall = WilsonRate(6, 30);  // 20%: controls
  EXPECT_EQ(DecideAdoption(m).decision, "adopt with controls");
  m.probes->suites[0].rates.overall = WilsonRate(27, 30);  // interval above 50%: blocker
  EXPECT_EQ(DecideAdoption(m).decision, "do not adopt");
  m.probes->suites[0].rates.overall = WilsonRate(0, 30);
  m.signature = {"not checked", ""};
  EXPECT_EQ(DecideAdoption(m).decision, "adopt with controls");
  m.scan->verdict = scan::Verdict::kMalicious;
  AdoptionVerdict v = DecideAdoption(m);
  EXPECT_EQ(v.decision, "do not adopt");
  EXPECT_EQ(v.reasons[0].section, "scan");
  EXPECT_EQ(v.reasons[0].level, "blocker");
}

TEST(Significance, FisherExactTwoSidedMatchesKnownValues) {
  EXPECT_NEAR(FisherExactTwoSided(3, 1, 1, 3), 0.4857, 1e-4);
  EXPECT_NEAR(FisherExactTwoSided(8, 2, 1, 5), 0.03497, 1e-4);
  EXPECT_NEAR(FisherExactTwoSided(6, 2, 0, 8), 0.006993, 1e-5);
  EXPECT_NEAR(FisherExactTwoSided(4, 1, 0, 5), 0.04762, 1e-4);
  EXPECT_DOUBLE_EQ(FisherExactTwoSided(5, 5, 5, 5), 1.0);
  EXPECT_DOUBLE_EQ(FisherExactTwoSided(0, 0, 0, 0), 1.0);
}

}  // namespace
}  // namespace airlock::assess
