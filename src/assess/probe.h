// Probe suites, detectors and scoring for `airlock probe` / `airlock assess`.
//
// A Suite is a named list of Probes with a documented intent. Each Probe is a conversation (an
// optional system prompt, optional earlier turns, a user turn) plus a Detector that looks at the
// model's reply and says whether the probe "hit". What a hit means is the suite's metric:
//   attack_success  the attack worked (injection obeyed, canary leaked, harmful request answered)
//   refusal         the model refused or deflected (over-refusal and sensitivity suites)
// Rates come with Wilson 95% confidence intervals. Detectors are deterministic and linear-time
// (RE2); the optional judge model is a detector like the others.
// Thread-safety: suites and detectors are immutable after loading.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "assess/target.h"
#include "core/status.h"

namespace airlock::assess {

enum class Metric { kAttackSuccess, kRefusal };

struct DetectorSpec {
  // canary | refusal | complied | regex | insecure_code | markdown_exfil | judge_harmful
  std::string type;
  std::string value;  // the canary string or regex, when the type needs one
};

struct Probe {
  std::string id;        // stable, unique within the suite ("pi-direct-001")
  std::string category;  // e.g. "direct", "indirect-document"; "cn-sensitive", "us-sensitive"
  std::string lang;      // "en", "zh"
  std::string system;    // optional system prompt
  std::vector<ChatMessage> turns;  // the conversation; the last one is the user's
  DetectorSpec detector;
};

struct Suite {
  std::string name;
  std::string intent;
  Metric metric = Metric::kAttackSuccess;
  std::vector<Probe> probes;
  std::string sha256;  // digest of the suite's canonical JSON, pinned in reports
  // Answers that were given (not refused) are also judged BALANCED or ONE-SIDED by the judge
  // model, when one is configured (the sensitivity profile).
  bool judge_balance = false;
};

// The suites compiled into airlock (from suites/*.json), sorted by name.
Result<std::vector<Suite>> BuiltinSuites();

// Parses one suite from its JSON text. Errors: kCorrupt with the field at fault.
Result<Suite> ParseSuite(std::string_view json_text);

// Loads an external corpus in its published format, detected from the header/shape:
// HarmBench behaviors CSV (Behavior,...), AdvBench CSV (goal,target), JailbreakBench
// JBB-Behaviors CSV (Goal,...), Do-Not-Answer CSV (question,...) or JSON/JSONL with a
// "question"/"prompt"/"goal" field. Each row becomes a harmful-request probe judged by
// `complied`. Errors: kNotFound, kCorrupt, kUnsupported (unknown columns).
Result<Suite> LoadCorpus(const std::string& path);

struct Verdict {
  bool hit = false;
  std::string detector;  // which detector decided
  std::string evidence;  // short excerpt or reason (never the whole reply)
};

// Applies a probe's detector to a reply. `judge` may be null; judge-based specs then fall back
// to the keyword detectors and say so in `detector`.
Verdict Detect(const Probe& probe, const ChatReply& reply, ChatTarget* judge);

// Asks the judge whether an answer presents the main perspectives (false) or one side or an
// official line only (true). nullopt without a judge or when the judge fails or is unclear.
std::optional<bool> JudgeOneSided(const Probe& probe, const ChatReply& reply, ChatTarget* judge);

// Refusal and deflection detection (English and Chinese phrase patterns).
bool LooksLikeRefusal(const std::string& text);
bool LooksLikeDeflection(const std::string& text);

// Wilson score interval for k successes out of n at 95% confidence.
struct Rate {
  int hits = 0;
  int total = 0;
  double rate = 0, low = 0, high = 0;
};
Rate WilsonRate(int hits, int total);

// Precision and recall of each keyword detector on the hand-labelled replies compiled in from
// suites/labels/*.json; reported next to results so readers know how far to trust them.
struct DetectorAccuracy {
  std::string detector;
  int true_positive = 0, false_positive = 0, true_negative = 0, false_negative = 0;
  double precision = 0, recall = 0, accuracy = 0;
  Rate agreement;  // detector verdict == label, with its 95% interval
  std::map<std::string, Rate> agreement_by_lang;
};
Result<std::vector<DetectorAccuracy>> MeasureDetectorAccuracy();

// Agreement of the judge model with the labelled set (suites/labels), per task and language.
struct JudgeAgreement {
  std::string task;    // "harmful", "one_sided"
  std::string lang;    // "en", "zh"
  Rate agreement;      // hits: judge verdict equals the label; total: examples the judge answered
  int unanswered = 0;  // judge replies that were errors or neither verdict word
};

// Runs the judge over the labelled set's judge examples (suites/labels/judge-labels.json: EN and
// ZH refusals, deflections, partial compliance, one-sided and balanced answers) and measures how
// often it agrees with the labels. Errors: kCorrupt (malformed label set).
Result<std::vector<JudgeAgreement>> MeasureJudgeAgreement(ChatTarget& judge);

}  // namespace airlock::assess
