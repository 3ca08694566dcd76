// Runs probe suites against a target and records every attempt as JSONL (one line per probe:
// prompt, reply, detector verdict), so a long run can be interrupted and resumed without redoing
// finished probes, and summarizes per suite, category and language with 95% intervals.
// Thread-safety: RunSuites is not reentrant on the same output file.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
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
  // The results file never grows past this (an endpoint that errors on every probe, rerun again
  // and again, or a huge corpus, cannot fill the disk); each recorded reply is also cut to
  // kMaxRecordedReplyBytes. Reaching the cap stops the run with kLimitExceeded.
  std::uint64_t max_results_bytes = 256ull << 20;
};

inline constexpr std::size_t kMaxRecordedReplyBytes = 16 << 10;

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
  int errors = 0;  // probes whose request failed (not counted in rates)
  // Errors by kind: "oversized" (reply over its byte cap), "timeout" (deadline), "malformed"
  // (not a chat completion, content null/array/object, nested too deep), "unreachable",
  // "refused" (HTTP error status), "other". A hostile endpoint cannot lower its attack-success
  // rate with bad replies: they are counted here, never scored as a refusal or a failed attack.
  std::map<std::string, int> errors_by_kind;
  int reused = 0;       // probes taken from an earlier run (resume)
  int deflections = 0;  // replies that deflected (sensitivity profile)
  // Judge verdicts on answered (not refused) replies, when the suite asks for them and a judge
  // is configured: a hit is ONE-SIDED. Empty totals: not measured.
  GroupRates one_sided;
};

// Result of the capability gate (assess/capability.h).
struct CapabilityGate {
  int passed = 0;
  int total = 0;
  int threshold = 0;  // items needed to open
  bool open = false;
  Rate by_en, by_zh;  // passed / asked per language
};

struct RunSummary {
  std::string target;
  GenerationParams params;
  std::vector<SuiteResult> suites;
  // Set by `airlock assess`: when closed, behaviour rates are "not meaningful" (SummaryJson and
  // the report say so instead of showing them).
  std::optional<CapabilityGate> gate;
};

// Whether a suite's rates mean something: the gate (when run) is open and at most 10% of the
// suite's probes ended in an error. `reason` says why not.
bool SuiteMeaningful(const RunSummary& summary, const SuiteResult& suite, std::string* reason);

// Errors: kIo (results file), kInvalidArgument (resume file recorded with other settings),
// kLimitExceeded (the results file reached max_results_bytes).
Result<RunSummary> RunSuites(ChatTarget& target, const std::vector<Suite>& suites,
                             const RunOptions& options);

// The summary as JSON (the `summary.json` written next to the JSONL).
std::string SummaryJson(const RunSummary& summary);

}  // namespace airlock::assess
