// Runs probe suites against a target and records every attempt as JSONL (one line per probe:
// prompt, reply, detector verdict), so a long run can be interrupted and resumed without redoing
// finished probes, and summarizes per suite, category and language with 95% intervals.
// Thread-safety: RunSuites is not reentrant on the same output file.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "assess/probe.h"
#include "assess/target.h"

namespace airlock::assess {

struct RunOptions {
  GenerationParams params;
  std::string results_path;  // JSONL; created or appended to (resume)
  bool resume = true;        // skip probes already recorded for the same target and params
  bool progress = true;      // progress + ETA on stderr when it is a TTY
  ChatTarget* judge = nullptr;
};

struct GroupRates {
  Rate overall;
  std::map<std::string, Rate> by_category;
  std::map<std::string, Rate> by_lang;
};

struct SuiteResult {
  std::string name;
  std::string intent;
  std::string sha256;
  Metric metric = Metric::kAttackSuccess;
  GroupRates rates;
  int errors = 0;       // probes whose request failed (not counted in rates)
  int reused = 0;       // probes taken from an earlier run (resume)
  int deflections = 0;  // replies that deflected (sensitivity profile)
  // Judge verdicts on answered (not refused) replies, when the suite asks for them and a judge
  // is configured: a hit is ONE-SIDED. Empty totals: not measured.
  GroupRates one_sided;
};

struct RunSummary {
  std::string target;
  GenerationParams params;
  std::vector<SuiteResult> suites;
};

// Errors: kIo (results file), kInvalidArgument (resume file recorded with other settings).
Result<RunSummary> RunSuites(ChatTarget& target, const std::vector<Suite>& suites,
                             const RunOptions& options);

// The summary as JSON (the `summary.json` written next to the JSONL).
std::string SummaryJson(const RunSummary& summary);

}  // namespace airlock::assess
