// Conformance over the container-type third-party fixtures (zip, PyTorch zip, 7z, npy, npz) of
// ../shared/fixtures/{picklescan,modelscan,modelaudit}: each file must get the verdict its
// expected.json gives (mapped to clean/malicious/inconclusive; deviations by policy are listed).
//
// Several verdicts depend on other analyzers: the pickles inside archives (pickle analyzer) and
// skops' schema.json (json analyzer). While those analyzers are placeholders (they report
// scan.unsupported), the dependent rows are checked at container level only: an expected
// malicious file must not be clean, and an expected clean file may carry no finding other than
// the placeholder's. Once the analyzers land, every row is checked exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "container_builders.h"
#include "core/file.h"
#include "status_matchers.h"
#include "test_util.h"

using ::airlock::testing::IsOk;

namespace airlock {
namespace {

using scan::Verdict;

enum class Needs { kNothing, kPickle, kJson };

struct Row {
  const char* set;
  const char* path;
  Needs needs;
  // Set when our verdict deliberately differs from the upstream expectation.
  std::optional<Verdict> policy_override = std::nullopt;
  const char* why = "";
};

const Row kRows[] = {
    {"picklescan", "data/malicious1.zip", Needs::kPickle},
    {"picklescan", "data/malicious1_central_directory.zip", Needs::kNothing},  // name mismatch
    {"picklescan", "data/malicious1_0x1.zip", Needs::kNothing},                // flag bits
    {"picklescan", "data/malicious1_0x20.zip", Needs::kNothing},
    {"picklescan", "data/malicious1_0x40.zip", Needs::kNothing},
    {"picklescan", "data/malicious1_wrong_ext.zip", Needs::kPickle},
    {"picklescan", "data2/malicious1_crc.zip", Needs::kPickle},
    {"picklescan", "data/malicious1.7z", Needs::kPickle},
    {"picklescan", "data/new_pytorch_model.bin", Needs::kPickle},
    {"picklescan", "data/benign_password_protected.zip", Needs::kNothing, Verdict::kInconclusive,
     "picklescan skips encrypted members and reports 0 issues; we cannot vet them: fail closed"},
    {"picklescan", "data2/int_array.npy", Needs::kNothing},
    {"picklescan", "data2/object_array.npy", Needs::kPickle},
    {"picklescan", "data2/dns_exfiltration.npy", Needs::kPickle},
    {"picklescan", "data2/int_arrays.npz", Needs::kNothing},
    {"picklescan", "data2/int_arrays_compressed.npz", Needs::kNothing},
    {"picklescan", "data2/object_arrays.npz", Needs::kPickle},
    {"picklescan", "data2/object_arrays_compressed.npz", Needs::kPickle},
    {"modelscan", "data/unsafe_zip_pytorch.pt", Needs::kPickle},
    {"modelscan", "data/password_protected.zip", Needs::kNothing, Verdict::kInconclusive,
     "modelscan skips encrypted zips; we cannot vet them: fail closed"},
    {"modelaudit", "samples/archives/path_traversal.zip", Needs::kNothing},  // zip-slip alone
    {"modelaudit", "samples/archives/safe_model.zip", Needs::kNothing},
    {"modelaudit", "samples/pytorch/malicious_eval.pt", Needs::kPickle},
    {"modelaudit", "samples/pytorch/safe_model.pt", Needs::kPickle},
    {"modelaudit", "samples/pipeline.skops", Needs::kJson},
    {"modelaudit", "scenarios/license_scenarios/unlicensed_dataset/embeddings.npy",
     Needs::kNothing},
};

// Upstream verdict strings -> ours. "SKIPPED" (modelscan) has no verdict of its own.
std::optional<Verdict> MapUpstream(const std::string& v) {
  if (v.rfind("MALICIOUS", 0) == 0) return Verdict::kMalicious;
  if (v.rfind("CLEAN", 0) == 0) return Verdict::kClean;
  return std::nullopt;
}

bool IsPlaceholder(const scan::Finding& f) { return f.rule_id == "scan.unsupported"; }

bool AnalyzerMissing(const std::string& bytes, const std::string& name) {
  auto r = testing::Scan(bytes, name);
  for (const auto& f : r.findings)
    if (IsPlaceholder(f)) return true;
  return false;
}

TEST(ContainerFixturesTest, VerdictsMatchExpectations) {
  AIRLOCK_FIXTURES_OR_SKIP(root, "");
  const bool pickle_missing = AnalyzerMissing(std::string("\x80\x02K\x01.", 5), "x.pkl");
  const bool json_missing = AnalyzerMissing("{}", "config.json");
  int exact = 0, container_level = 0;
  for (const Row& row : kRows) {
    SCOPED_TRACE(std::string(row.set) + "/" + row.path);
    std::filesystem::path file = root / row.set / row.path;
    if (!std::filesystem::exists(file)) {
      ADD_FAILURE() << "fixture missing: " << file;
      continue;
    }
    std::ifstream in(root / row.set / "expected.json");
    auto expected_json = nlohmann::json::parse(in, nullptr, false);
    ASSERT_FALSE(expected_json.is_discarded());
    ASSERT_TRUE(expected_json["files"].contains(row.path));
    std::string upstream = expected_json["files"][row.path]["verdict"].get<std::string>();
    std::optional<Verdict> want = row.policy_override ? row.policy_override : MapUpstream(upstream);
    ASSERT_THAT(want, IsOk()) << "no mapping for upstream verdict '" << upstream << "'";

    auto result = scan::ScanPaths({file.string()}, {});
    ASSERT_THAT(result, IsOk());
    const scan::FileReport& r = result->files.at(0);
    bool degraded = (row.needs == Needs::kPickle && pickle_missing) ||
                    (row.needs == Needs::kJson && json_missing);
    if (!degraded) {
      EXPECT_EQ(r.verdict, *want) << "upstream: " << upstream << " " << row.why << "\n"
                                  << testing::Describe(r);
      ++exact;
      continue;
    }
    ++container_level;
    if (*want == Verdict::kMalicious) {
      EXPECT_NE(r.verdict, Verdict::kClean) << testing::Describe(r);
    } else {
      for (const auto& f : r.findings) {
        bool harmless = !f.incomplete && f.severity < scan::Severity::kMedium;
        EXPECT_TRUE(harmless || IsPlaceholder(f))
            << "container-level finding on a file expected clean: " << f.rule_id << " "
            << f.message;
      }
    }
  }
  std::printf(
      "container fixtures: %d checked exactly, %d at container level only "
      "(pickle analyzer %s, json analyzer %s)\n",
      exact, container_level, pickle_missing ? "missing" : "present",
      json_missing ? "missing" : "present");
}

}  // namespace
}  // namespace airlock
