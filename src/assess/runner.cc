#include "assess/runner.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/file.h"
#include "core/progress.h"
#include "core/version.h"

namespace airlock::assess {
namespace {

using nlohmann::json;

json ParamsJson(const GenerationParams& p) {
  return {{"temperature", p.temperature}, {"max_tokens", p.max_tokens}, {"seed", p.seed}};
}

struct Recorded {
  bool hit;
  bool deflected;
  std::string category;
  std::string lang;
  std::optional<bool> one_sided;
};

std::string Key(const std::string& suite, const std::string& id) { return suite + "\x1f" + id; }

void Count(GroupRates& g, const std::string& category, const std::string& lang, bool hit) {
  auto bump = [hit](Rate& r) {
    r.total++;
    if (hit) r.hits++;
  };
  bump(g.overall);
  bump(g.by_category[category]);
  bump(g.by_lang[lang]);
}

void Finalize(GroupRates& g) {
  g.overall = WilsonRate(g.overall.hits, g.overall.total);
  for (auto& [k, r] : g.by_category) r = WilsonRate(r.hits, r.total);
  for (auto& [k, r] : g.by_lang) r = WilsonRate(r.hits, r.total);
}

std::string ErrorKind(StatusCode code) {
  switch (code) {
    case StatusCode::kLimitExceeded:
      return "oversized";
    case StatusCode::kDeadlineExceeded:
      return "timeout";
    case StatusCode::kCorrupt:
      return "malformed";
    case StatusCode::kUnavailable:
      return "unreachable";
    case StatusCode::kInvalidArgument:
      return "refused";
    default:
      return "other";
  }
}

// At most `max` bytes of `s`, not cutting a UTF-8 sequence in half.
std::string Clip(const std::string& s, std::size_t max, bool* clipped) {
  if (s.size() <= max) return s;
  *clipped = true;
  while (max > 0 && (static_cast<unsigned char>(s[max]) & 0xC0) == 0x80) --max;
  return s.substr(0, max);
}

std::string PromptExcerpt(const std::string& prompt) {
  bool clipped = false;
  return Clip(prompt, kMaxRecordedReplyBytes, &clipped);
}

json RateJson(const Rate& r) {
  return {{"hits", r.hits}, {"total", r.total}, {"rate", r.rate}, {"ci95", {r.low, r.high}}};
}

}  // namespace

Result<RunSummary> RunSuites(ChatTarget& target, const std::vector<Suite>& suites,
                             const RunOptions& options) {
  RunSummary summary;
  summary.target = target.Describe();
  summary.params = options.params;
  json header = {{"type", "run"},
                 {"target", summary.target},
                 {"params", ParamsJson(options.params)},
                 {"airlock_version", kVersion}};

  // Resume: read what an earlier run with the same target and parameters recorded.
  std::map<std::string, Recorded> done;
  bool header_present = false;
  if (options.resume) {
    // Mapped, not read line by line into strings: a file with an endless line costs no memory.
    // A missing file is a fresh start.
    auto recorded = core::MappedFile::Open(options.results_path);
    const std::string_view text =
        recorded.has_value() ? core::AsStringView(recorded->bytes()) : std::string_view();
    for (std::size_t start = 0; start < text.size();) {
      std::size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      const std::string_view line = text.substr(start, end - start);
      start = end + 1;
      json rec = json::parse(line, nullptr, false);
      if (rec.is_discarded() || !rec.is_object()) continue;  // a torn last line after a kill
      if (rec.value("type", "") == "run") {
        if (rec["target"] != header["target"] || rec["params"] != header["params"]) {
          return InvalidArgument("probe: " + options.results_path +
                                 " was recorded with another target or generation parameters; "
                                 "use a new --out or --no-resume");
        }
        header_present = true;
      } else if (rec.value("type", "") == "result" && !rec.value("error", false)) {
        Recorded r{rec.value("hit", false), rec.value("deflected", false),
                   rec.value("category", ""), rec.value("lang", ""), std::nullopt};
        if (rec.contains("one_sided") && rec["one_sided"].is_boolean())
          r.one_sided = rec["one_sided"];
        done[Key(rec.value("suite", ""), rec.value("probe", ""))] = r;
      }
    }
  }
  std::ofstream out(options.results_path, options.resume ? std::ios::app : std::ios::trunc);
  if (!out) return IoError("probe: cannot write " + options.results_path);
  std::error_code size_error;
  std::uint64_t written =
      options.resume ? std::filesystem::file_size(options.results_path, size_error) : 0;
  if (size_error) written = 0;
  auto append = [&](const std::string& line) -> Status {
    if (written + line.size() + 1 > options.max_results_bytes)
      return LimitExceeded("probe: " + options.results_path + " reached its cap of " +
                           std::to_string(options.max_results_bytes) + " bytes; use a new --out");
    out << line << "\n" << std::flush;
    written += line.size() + 1;
    return out ? Status::Ok() : IoError("probe: cannot write " + options.results_path);
  };
  if (!header_present) AIRLOCK_TRY(append(header.dump()));

  std::size_t total = 0;
  for (const auto& s : suites) total += s.probes.size();
  core::Progress progress("probing", total, options.progress);
  std::size_t finished = 0;
  for (const Suite& suite : suites) {
    SuiteResult result;
    result.name = suite.name;
    result.intent = suite.intent;
    result.sha256 = suite.sha256;
    result.metric = suite.metric;
    for (const Probe& probe : suite.probes) {
      progress.Update(finished++);
      if (auto it = done.find(Key(suite.name, probe.id)); it != done.end()) {
        Count(result.rates, it->second.category, it->second.lang, it->second.hit);
        if (it->second.one_sided)
          Count(result.one_sided, it->second.category, it->second.lang, *it->second.one_sided);
        result.reused++;
        if (it->second.deflected) result.deflections++;
        continue;
      }
      std::vector<ChatMessage> messages;
      if (!probe.system.empty()) {
        messages.emplace_back();
        messages.back().role = "system";
        messages.back().content = probe.system;
      }
      messages.insert(messages.end(), probe.turns.begin(), probe.turns.end());
      auto start = std::chrono::steady_clock::now();
      auto reply = target.Chat(messages, options.params);
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      json rec = {{"type", "result"},   {"suite", suite.name},
                  {"probe", probe.id},  {"category", probe.category},
                  {"lang", probe.lang}, {"prompt", PromptExcerpt(probe.turns.back().content)},
                  {"elapsed_ms", ms}};
      if (!reply.has_value()) {
        rec["error"] = true;
        rec["error_kind"] = ErrorKind(reply.error().code());
        bool clipped = false;
        rec["error_message"] = Clip(reply.error().message(), 1024, &clipped);
        result.errors++;
        result.errors_by_kind[rec["error_kind"].get<std::string>()]++;
      } else {
        Verdict v = Detect(probe, *reply, options.judge);
        bool deflected = LooksLikeDeflection(reply->content);
        bool clipped = false;
        rec["response"] = Clip(reply->content, kMaxRecordedReplyBytes, &clipped);
        rec["reasoning"] = Clip(reply->reasoning, kMaxRecordedReplyBytes, &clipped);
        if (clipped) rec["recorded_reply_clipped"] = true;
        rec["hit"] = v.hit;
        rec["detector"] = v.detector;
        rec["evidence"] = v.evidence;
        rec["refused"] = LooksLikeRefusal(reply->content);
        rec["blocked"] = reply->blocked;
        rec["deflected"] = deflected;
        rec["completion_tokens"] = reply->completion_tokens;
        Count(result.rates, probe.category, probe.lang, v.hit);
        if (deflected) result.deflections++;
        if (suite.judge_balance && !v.hit) {
          if (auto one_sided = JudgeOneSided(probe, *reply, options.judge)) {
            rec["one_sided"] = *one_sided;
            Count(result.one_sided, probe.category, probe.lang, *one_sided);
          }
        }
      }
      // One line per probe, flushed at once: a kill loses at most the probe in flight.
      AIRLOCK_TRY(append(rec.dump(-1, ' ', false, json::error_handler_t::replace)));
    }
    Finalize(result.rates);
    Finalize(result.one_sided);
    summary.suites.push_back(std::move(result));
  }
  progress.Finish();
  return summary;
}

bool SuiteMeaningful(const RunSummary& summary, const SuiteResult& suite, std::string* reason) {
  if (summary.gate && !summary.gate->open) {
    *reason = "not meaningful: the model does not follow instructions (" +
              std::to_string(summary.gate->passed) + " of " + std::to_string(summary.gate->total) +
              ")";
    return false;
  }
  const int asked = suite.rates.overall.total + suite.errors;
  if (suite.errors > 0 && suite.errors * 10 > asked) {
    std::string kinds;
    for (const auto& [kind, n] : suite.errors_by_kind)
      kinds += (kinds.empty() ? "" : ", ") + kind + " " + std::to_string(n);
    *reason = "not meaningful: " + std::to_string(suite.errors) + " of " + std::to_string(asked) +
              " replies were errors (" + kinds + ")";
    return false;
  }
  reason->clear();
  return true;
}

std::string SummaryJson(const RunSummary& summary) {
  json suites = json::array();
  for (const auto& s : summary.suites) {
    json entry = {{"name", s.name},
                  {"intent", s.intent},
                  {"sha256", s.sha256},
                  {"metric", s.metric == Metric::kRefusal ? "refusal_rate" : "attack_success_rate"},
                  {"errors", s.errors},
                  {"errors_by_kind", s.errors_by_kind},
                  {"reused_from_earlier_run", s.reused}};
    std::string reason;
    entry["meaningful"] = SuiteMeaningful(summary, s, &reason);
    if (!reason.empty()) {
      // Instead of rates: a reader (or a script) must not quote numbers that describe nothing.
      // Every reply and verdict stays in results.jsonl.
      entry["status"] = reason;
      suites.push_back(std::move(entry));
      continue;
    }
    json cats = json::object(), langs = json::object();
    for (const auto& [k, r] : s.rates.by_category) cats[k.empty() ? "-" : k] = RateJson(r);
    for (const auto& [k, r] : s.rates.by_lang) langs[k.empty() ? "-" : k] = RateJson(r);
    entry["overall"] = RateJson(s.rates.overall);
    entry["by_category"] = cats;
    entry["by_lang"] = langs;
    entry["deflections"] = s.deflections;
    if (s.one_sided.overall.total > 0) {
      json os_cats = json::object();
      for (const auto& [k, r] : s.one_sided.by_category) os_cats[k.empty() ? "-" : k] = RateJson(r);
      entry["one_sided"] = {{"overall", RateJson(s.one_sided.overall)}, {"by_category", os_cats}};
    }
    suites.push_back(std::move(entry));
  }
  json doc = {{"schema", "airlock.probe/v1"},
              {"airlock_version", kVersion},
              {"target", summary.target},
              {"params", ParamsJson(summary.params)},
              {"suites", suites}};
  if (summary.gate) {
    const CapabilityGate& g = *summary.gate;
    doc["capability_gate"] = {{"passed", g.passed},       {"total", g.total},
                              {"threshold", g.threshold}, {"open", g.open},
                              {"en", RateJson(g.by_en)},  {"zh", RateJson(g.by_zh)}};
  }
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace airlock::assess
