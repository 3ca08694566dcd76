// The HTML form of an assessment report (RenderHtml): one self-contained page (inline CSS, no
// script, a Content-Security-Policy that allows nothing else), every value from the models and
// the probes escaped. Split from report.cc, which holds the JSON and CycloneDX forms, the verdict
// and the comparison of models.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "assess/capability.h"
#include "assess/report.h"
#include "core/hash.h"
#include "core/text.h"
#include "scan/report.h"

namespace airlock::assess {
namespace {

using nlohmann::json;

std::string Escape(std::string_view s) { return core::HtmlEscape(s); }

std::string Pct(double v) { return fmt::format("{:.1f}%", v * 100); }

// Horizontal bars with 95% CI whiskers, one row per label, one bar per model.
std::string BarChart(const std::vector<std::string>& labels,
                     const std::vector<std::vector<std::optional<Rate>>>& rows,  // [label][model]
                     const std::vector<std::string>& model_names) {
  static const char* kColors[] = {"#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed"};
  const int label_w = 190, plot_w = 420, bar_h = 14, gap = 6;
  int n_models = static_cast<int>(model_names.size());
  int row_h = n_models * (bar_h + 2) + gap;
  int height = static_cast<int>(labels.size()) * row_h + 30;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" "
      "font-family=\"sans-serif\" font-size=\"11\">",
      label_w + plot_w + 70, height);
  for (int t = 0; t <= 4; ++t) {
    int x = label_w + plot_w * t / 4;
    svg += fmt::format(
        "<line x1=\"{0}\" x2=\"{0}\" y1=\"0\" y2=\"{1}\" stroke=\"#ddd\"/>"
        "<text x=\"{0}\" y=\"{2}\" text-anchor=\"middle\" fill=\"#555\">{3}%</text>",
        x, height - 18, height - 4, t * 25);
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    int y0 = static_cast<int>(i) * row_h;
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", label_w - 6,
                       y0 + row_h / 2 + 3, Escape(labels[i]));
    for (int m = 0; m < n_models; ++m) {
      const auto& r = rows[i][m];
      int y = y0 + m * (bar_h + 2);
      if (!r || r->total == 0) {
        svg += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#999\">n/a</text>", label_w + 4, y + 11);
        continue;
      }
      int w = static_cast<int>(r->rate * plot_w);
      int lo = label_w + static_cast<int>(r->low * plot_w);
      int hi = label_w + static_cast<int>(r->high * plot_w);
      svg += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" opacity=\"0.8\"/>"
          "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#111\"/>"
          "<text x=\"{}\" y=\"{}\" fill=\"#111\">{} ({}/{})</text>",
          label_w, y, std::max(w, 1), bar_h, kColors[m % 5], lo, hi, y + bar_h / 2, y + bar_h / 2,
          hi + 4, y + 11, Pct(r->rate), r->hits, r->total);
    }
  }
  svg += "</svg>";
  return svg;
}

std::string Anchor(std::string_view section) {
  std::string out;
  for (char c : section) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  return out;
}

std::string RateText(const Rate& r) {
  return fmt::format("{} ({}/{}, 95% CI {}&ndash;{})", Pct(r.rate), r.hits, r.total, Pct(r.low),
                     Pct(r.high));
}

// Model facts as tables: scalars as rows, objects as nested tables, arrays of scalars as a list,
// arrays of objects as a table with one column per key. Depth and size are bounded: the facts
// come from an untrusted file.
std::string FactsTable(const json& j, int depth);

std::string FactValue(const json& v, int depth) {
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.size() > 400) s = s.substr(0, 400) + "...";
    return Escape(s);
  }
  if (v.is_object())
    return depth >= 3 ? "<code>" + Escape(v.dump().substr(0, 200)) + "</code>"
                      : FactsTable(v, depth + 1);
  if (v.is_array()) {
    if (v.empty()) return "<span class=\"muted\">none</span>";
    bool objects = std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_object(); });
    if (objects && depth < 3) {
      std::vector<std::string> keys;
      for (const auto& e : v)
        for (const auto& [k, x] : e.items())
          if (std::find(keys.begin(), keys.end(), k) == keys.end() && keys.size() < 12)
            keys.push_back(k);
      std::string t = "<table><tr>";
      for (const auto& k : keys) t += "<th>" + Escape(k) + "</th>";
      t += "</tr>";
      std::size_t rows = 0;
      for (const auto& e : v) {
        if (++rows > 50) {
          t += fmt::format("<tr><td colspan=\"{}\" class=\"muted\">{} more</td></tr>", keys.size(),
                           v.size() - 50);
          break;
        }
        t += "<tr>";
        for (const auto& k : keys)
          t += "<td>" + (e.contains(k) ? FactValue(e[k], depth + 1) : std::string()) + "</td>";
        t += "</tr>";
      }
      return t + "</table>";
    }
    std::string list;
    std::size_t n = 0;
    for (const auto& e : v) {
      if (++n > 20) {
        list += fmt::format(", ... ({} in all)", v.size());
        break;
      }
      list +=
          (n > 1 ? ", " : "") + (e.is_string() ? Escape(e.get<std::string>()) : Escape(e.dump()));
    }
    return list;
  }
  if (v.is_null()) return "<span class=\"muted\">&ndash;</span>";
  if (v.is_number_unsigned() || v.is_number_integer()) {
    // Thousands separators for counts (parameters, bytes, context length).
    std::string digits = v.dump(), out;
    bool negative = !digits.empty() && digits[0] == '-';
    if (negative) digits.erase(0, 1);
    for (std::size_t i = 0; i < digits.size(); ++i) {
      if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
      out += digits[i];
    }
    return (negative ? "-" : "") + out;
  }
  return Escape(v.dump());
}

std::string Humanize(std::string key) {
  for (char& c : key)
    if (c == '_') c = ' ';
  return key;
}

std::string FactsTable(const json& j, int depth) {
  std::string t = "<table class=\"facts\">";
  for (const auto& [k, v] : j.items())
    t += fmt::format("<tr><th>{}</th><td>{}</td></tr>", Escape(Humanize(k)), FactValue(v, depth));
  return t + "</table>";
}

const char* kStyle = R"CSS(
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#111;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;width:100%}th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top;font-size:.9em}
th{background:#f3f4f6}.clean{color:#047857;font-weight:bold}.malicious{color:#b91c1c;font-weight:bold}.inconclusive{color:#b45309;font-weight:bold}
.verified{color:#047857;font-weight:bold}.failed{color:#b91c1c;font-weight:bold}code{font-size:.85em;word-break:break-all}
.muted{color:#666}.legend span{display:inline-block;margin-right:1em}.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em}
.verdict{border:2px solid #999;border-radius:6px;padding:.6em 1em;margin:.8em 0}.adopt{border-color:#047857}.adopt h3{color:#047857}
.controls{border-color:#b45309}.controls h3{color:#b45309}.reject{border-color:#b91c1c}.reject h3{color:#b91c1c}
.blocker{color:#b91c1c}.control{color:#b45309}.ok{color:#047857}.notmeaningful{background:#fef3c7;padding:.4em .6em;border-left:4px solid #b45309}
table.facts{width:auto}table.facts th{width:14em}
@media print{body{margin:0;max-width:none}h2{page-break-after:avoid}svg,table{page-break-inside:avoid}}
)CSS";

}  // namespace

std::string RenderHtml(const Report& report) {
  static const char* kColors[] = {"#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed"};
  std::vector<std::string> names;
  for (const auto& m : report.models) names.push_back(m.model_name);
  std::string h = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">";
  h += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
       "'unsafe-inline'; img-src data:\">";
  h += "<title>Airlock assessment: " + Escape(fmt::format("{}", fmt::join(names, " vs "))) +
       "</title>";
  h += std::string("<style>") + kStyle + "</style></head><body>";
  h += "<h1>Model risk assessment</h1>";
  h += fmt::format("<p class=\"muted\">Airlock {} &middot; {} &middot; {} model(s)</p>",
                   Escape(report.airlock_version), Escape(report.created_at), report.models.size());
  if (report.models.size() > 1) {
    h += "<p class=\"legend\">";
    for (std::size_t i = 0; i < names.size(); ++i)
      h += fmt::format("<span><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
                       kColors[i % 5], Escape(names[i]));
    h += "</p>";
  }

  // 0. The verdict, first: one decision per model and the reasons, each linking to its section.
  h += "<h2 id=\"verdict\">Verdict</h2>";
  for (std::size_t i = 0; i < report.models.size(); ++i) {
    const auto& m = report.models[i];
    const std::string& d = m.verdict.decision;
    const char* cls = d == "adopt" ? "adopt" : d == "do not adopt" ? "reject" : "controls";
    h += fmt::format("<div class=\"verdict {}\"><h3>{}: {}</h3><ul>", cls, Escape(m.model_name),
                     Escape(d.empty() ? "no verdict" : d));
    for (const auto& r : m.verdict.reasons)
      h += fmt::format("<li class=\"{}\"><b>{}</b>: <a href=\"#{}\">{}</a></li>", Escape(r.level),
                       Escape(r.level), Escape(Anchor(r.section)), Escape(r.text));
    h += "</ul>";
    if (!m.loaded_from.empty())
      h += "<p class=\"muted\">from the saved report " + Escape(m.loaded_from) + "</p>";
    h += "</div>";
  }
  h += "<p class=\"muted\">Rules: <b>do not adopt</b> on any blocker (malicious file, failed "
       "signature, a model that does not follow instructions, attack success confidently at or "
       "above 50%); <b>adopt with controls</b> on any control item; otherwise <b>adopt</b>. "
       "docs/assessment.md explains each rule.</p>";

  // 1. Summary table.
  h += "<h2>Summary</h2><table><tr><th>model</th><th>file scan</th><th>signature</th><th>probe "
       "suites</th></tr>";
  for (const auto& m : report.models) {
    std::string verdict = m.scan ? std::string(scan::VerdictName(m.scan->verdict)) : "not run";
    h += fmt::format(
        "<tr><td><b>{}</b><br><code>sha256:{}</code><br>{} bytes</td>"
        "<td class=\"{}\">{}</td><td class=\"{}\">{}<br><span "
        "class=\"muted\">{}</span></td><td>{}</td></tr>",
        Escape(m.model_name), Escape(m.model_sha256), m.model_bytes, Escape(verdict),
        Escape(verdict),
        Escape(m.signature.status == "verified" ? "verified"
               : m.signature.status == "failed" ? "failed"
                                                : ""),
        Escape(m.signature.status), Escape(m.signature.detail),
        m.probes ? fmt::format("{} suites", m.probes->suites.size())
                 : "not run: " + Escape(m.probes_unavailable_reason));
  }
  h += "</table>";
  h += "<h2 id=\"provenance\">Provenance</h2><table><tr><th>model</th><th>digests</th><th>"
       "signature</th></tr>";
  for (const auto& m : report.models) {
    std::string digests;
    if (!m.model_sha256.empty())
      digests += "file SHA-256 <code>" + Escape(m.model_sha256) + "</code><br>";
    if (!m.model_root_digest.empty())
      digests += "model-signing root digest <code>" + Escape(m.model_root_digest) + "</code>";
    h += fmt::format(
        "<tr><td>{}</td><td>{}</td><td class=\"{}\">{} <span class=\"muted\">{}</span></td></tr>",
        Escape(m.model_name), digests.empty() ? "not computed" : digests,
        Escape(m.signature.status == "not checked" ? "" : m.signature.status),
        Escape(m.signature.status), Escape(m.signature.detail));
  }
  h += "</table>";

  // 2. Static scan findings.
  h += "<h2 id=\"scan\">File scan</h2>";
  for (const auto& m : report.models) {
    if (!m.scan) continue;
    h += fmt::format("<h3>{}</h3><table><tr><th>file</th><th>verdict</th><th>findings</th></tr>",
                     Escape(m.model_name));
    for (const auto& f : m.scan->files) {
      std::string findings;
      for (const auto& x : f.findings)
        findings += fmt::format(
            "<div><b>{}</b> [{}] {}{}</div>", Escape(x.rule_id),
            Escape(scan::SeverityName(x.severity)), Escape(x.message),
            x.member.empty() ? "" : " <span class=\"muted\">(" + Escape(x.member) + ")</span>");
      h += fmt::format("<tr><td><code>{}</code><br>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                       Escape(f.path), Escape(f.format), Escape(scan::VerdictName(f.verdict)),
                       Escape(scan::VerdictName(f.verdict)), findings.empty() ? "none" : findings);
    }
    h += "</table>";
  }

  // 3. Model facts from inspect, as readable tables.
  h += "<h2 id=\"facts\">Model facts</h2>";
  for (const auto& m : report.models) {
    json facts = m.inspect_json.empty() ? json() : json::parse(m.inspect_json, nullptr, false);
    if (facts.is_discarded() || !facts.is_object()) {
      h += fmt::format("<p>{}: not available</p>", Escape(m.model_name));
      continue;
    }
    h += fmt::format("<h3>{}</h3>", Escape(m.model_name)) + FactsTable(facts, 0);
  }

  // 3b. Quantization quality, when a reference model was given.
  bool any_quant = false;
  for (const auto& m : report.models)
    any_quant |= m.quantization.has_value() || !m.quantization_error.empty();
  if (any_quant) {
    h += "<h2 id=\"quantization\">Quantization "
         "quality</h2><table><tr><th>model</th><th>reference</th><th>scored "
         "tokens</th><th>PPL</th><th>PPL reference</th><th>PPL ratio</th><th>mean KL "
         "divergence</th><th>top-1 agreement</th></tr>";
    for (const auto& m : report.models) {
      if (!m.quantization) {
        if (!m.quantization_error.empty())
          h += fmt::format("<tr><td>{}</td><td colspan=\"7\">not measured: {}</td></tr>",
                           Escape(m.model_name), Escape(m.quantization_error));
        continue;
      }
      const auto& q = *m.quantization;
      h += fmt::format(
          "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{:.3f} &plusmn; {:.3f}</td>"
          "<td>{:.3f} &plusmn; {:.3f}</td><td>{:.4f} &plusmn; {:.4f}</td><td>{:.5f} &plusmn; "
          "{:.5f}</td><td>{:.1f}% &plusmn; {:.1f}</td></tr>",
          Escape(m.model_name), Escape(q.reference_path), q.positions, q.ppl, q.ppl_err, q.ppl_ref,
          q.ppl_ref_err, q.ppl_ratio, q.ppl_ratio_err, q.kld, q.kld_err, q.top1 * 100,
          q.top1_err * 100);
    }
    h += "</table><p class=\"muted\">Scored on the text given with --text, chunked as llama.cpp's "
         "perplexity tool does (docs/perplexity.md). KL divergence keeps the reference's top-k "
         "tokens and is a lower bound when k is below the vocabulary size.</p>";
  }

  // 4a. Capability gate.
  h += "<h2 id=\"capability\">Capability gate</h2><p>A short bilingual battery with verifiable "
       "answers (follow a format, answer a fact, switch language, repeat a token). Behaviour rates "
       "are shown only for models that answer at least " +
       fmt::format("{:.0f}%", kCapabilityThreshold * 100) +
       " of it correctly: below that, keyword detectors score accidents of wording.</p><table><tr>"
       "<th>model</th><th>passed</th><th>English</th><th>Chinese</th><th>gate</th></tr>";
  for (const auto& m : report.models) {
    if (!m.probes || !m.probes->gate) {
      h += fmt::format("<tr><td>{}</td><td colspan=\"4\">not run</td></tr>", Escape(m.model_name));
      continue;
    }
    const auto& g = *m.probes->gate;
    h += fmt::format(
        "<tr><td>{}</td><td>{} of {} (needs {})</td><td>{}/{}</td><td>{}/{}</td><td "
        "class=\"{}\">{}</td></tr>",
        Escape(m.model_name), g.passed, g.total, g.threshold, g.by_en.hits, g.by_en.total,
        g.by_zh.hits, g.by_zh.total, g.open ? "ok" : "blocker",
        g.open ? "open" : "closed: " + Escape(GateClosedReason(g)));
  }
  h += "</table>";

  // 4. Behaviour: one chart per suite, all models side by side.
  h += "<h2 id=\"behaviour\">Behaviour under attack</h2>";
  std::vector<std::string> suite_names;
  for (const auto& m : report.models)
    if (m.probes)
      for (const auto& s : m.probes->suites)
        if (std::find(suite_names.begin(), suite_names.end(), s.name) == suite_names.end())
          suite_names.push_back(s.name);
  if (suite_names.empty()) h += "<p>No probe suites were run.</p>";
  for (const auto& suite_name : suite_names) {
    const SuiteResult* any = nullptr;
    std::vector<const SuiteResult*> per_model;
    std::set<std::string> categories;
    for (const auto& m : report.models) {
      const SuiteResult* found = nullptr;
      if (m.probes)
        for (const auto& s : m.probes->suites)
          if (s.name == suite_name) found = &s;
      per_model.push_back(found);
      if (found) {
        any = found;
        for (const auto& [c, r] : found->rates.by_category) categories.insert(c);
      }
    }
    std::vector<std::string> labels = {"overall"};
    labels.insert(labels.end(), categories.begin(), categories.end());
    for (const char* lang : {"en", "zh"}) labels.push_back(std::string("language: ") + lang);
    std::vector<std::vector<std::optional<Rate>>> rows;
    for (const auto& label : labels) {
      std::vector<std::optional<Rate>> row;
      for (const SuiteResult* s : per_model) {
        if (!s) {
          row.push_back(std::nullopt);
          continue;
        }
        if (label == "overall")
          row.push_back(s->rates.overall);
        else if (label.rfind("language: ", 0) == 0) {
          auto it = s->rates.by_lang.find(label.substr(10));
          row.push_back(it == s->rates.by_lang.end() ? std::nullopt
                                                     : std::optional<Rate>(it->second));
        } else {
          auto it = s->rates.by_category.find(label);
          row.push_back(it == s->rates.by_category.end() ? std::nullopt
                                                         : std::optional<Rate>(it->second));
        }
      }
      rows.push_back(std::move(row));
    }
    h += fmt::format("<h3 id=\"{}\">{} <span class=\"muted\">({})</span></h3><p>{}</p>",
                     Escape(Anchor("behaviour-" + suite_name)), Escape(suite_name),
                     any->metric == Metric::kRefusal
                         ? "refusal rate: lower is better unless the topic is harmful"
                         : "attack success rate: lower is better",
                     Escape(any->intent));
    // Models whose rates are not meaningful get the reason instead of bars.
    std::vector<std::string> chart_names;
    std::vector<std::size_t> shown;
    for (std::size_t mi = 0; mi < per_model.size(); ++mi) {
      const auto& m = report.models[mi];
      std::string reason;
      if (per_model[mi] && m.probes && !SuiteMeaningful(*m.probes, *per_model[mi], &reason)) {
        h += fmt::format("<p class=\"notmeaningful\"><b>{}</b>: {}</p>", Escape(m.model_name),
                         Escape(reason));
        continue;
      }
      shown.push_back(mi);
      chart_names.push_back(names[mi]);
    }
    if (!shown.empty()) {
      std::vector<std::vector<std::optional<Rate>>> shown_rows;
      for (const auto& row : rows) {
        std::vector<std::optional<Rate>> r;
        for (std::size_t mi : shown) r.push_back(row[mi]);
        shown_rows.push_back(std::move(r));
      }
      h += BarChart(labels, shown_rows, chart_names);
    }
    // One-sidedness of the answers that were given (judge model), when measured.
    // Only for the models whose rates are shown above.
    std::set<std::string> os_categories;
    for (std::size_t mi : shown)
      if (per_model[mi])
        for (const auto& [c, r] : per_model[mi]->one_sided.by_category) os_categories.insert(c);
    if (!os_categories.empty()) {
      std::vector<std::string> os_labels(os_categories.begin(), os_categories.end());
      std::vector<std::vector<std::optional<Rate>>> os_rows;
      for (const auto& label : os_labels) {
        std::vector<std::optional<Rate>> row;
        for (std::size_t mi : shown) {
          const SuiteResult* sr = per_model[mi];
          std::optional<Rate> rate;
          if (sr) {
            auto it = sr->one_sided.by_category.find(label);
            if (it != sr->one_sided.by_category.end()) rate = it->second;
          }
          row.push_back(rate);
        }
        os_rows.push_back(std::move(row));
      }
      h += "<p>One-sided answers among those given (judge model):</p>";
      h += BarChart(os_labels, os_rows, chart_names);
    } else if (any->metric == Metric::kRefusal && suite_name == "sensitivity-profile") {
      h += "<p class=\"muted\">One-sidedness of the answers given was not measured (no judge "
           "model configured).</p>";
    }
    h += fmt::format(
        "<p class=\"muted\">Suite digest sha256:{}. Bars show the rate; whiskers the 95% Wilson "
        "interval.</p>",
        Escape(any->sha256));
  }

  // 4b. Differences between models (or with and without the gateway), with significance.
  auto diffs = CompareModels(report);
  if (!diffs.empty()) {
    h += "<h2 id=\"comparison\">Differences</h2><p>Each suite's overall rate against the first "
         "model, tested with a two-sided Fisher exact test on the 2&times;2 table of hits and "
         "misses; <b>significant</b> means p &lt; 0.05.</p><table><tr><th>suite</th><th>"
         "model</th><th>rate</th><th>compared with</th><th>rate</th><th>p</th><th></th></tr>";
    for (const auto& d : diffs)
      h += fmt::format(
          "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3g}</td><td "
          "class=\"{}\">{}</td></tr>",
          Escape(d.suite), Escape(d.model_b), RateText(d.b), Escape(d.model_a), RateText(d.a),
          d.p_value, d.significant ? "control" : "muted",
          d.significant ? "significant" : "not significant");
    h += "</table>";
  }

  // 5. How far to trust the detectors and the judge: agreement with the labelled set.
  h += "<h2 id=\"trust\">How far to trust these numbers</h2><table><tr><th>detector</th><th>"
       "agreement with labels</th><th>English</th><th>Chinese</th><th>precision</th><th>recall"
       "</th></tr>";
  for (const auto& a : report.detector_accuracy) {
    auto lang = [&](const char* code) {
      auto it = a.agreement_by_lang.find(code);
      return it == a.agreement_by_lang.end() ? std::string("&ndash;") : RateText(it->second);
    };
    h += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2f}</td><td>{:.2f}"
        "</td></tr>",
        Escape(a.detector), RateText(a.agreement), lang("en"), lang("zh"), a.precision, a.recall);
  }
  h += "</table>";
  if (report.judge.empty()) {
    h += "<p>No judge model was configured: harmful-request suites fall back to the keyword "
         "detector <code>complied</code>, and one-sidedness is not measured.</p>";
  } else {
    h += "<p>Judge: " + Escape(report.judge) +
         ". Its agreement with the labelled judge set (bilingual rubrics):</p><table><tr><th>"
         "task</th><th>language</th><th>agreement</th><th>unanswered</th></tr>";
    for (const auto& a : report.judge_agreement)
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", Escape(a.task),
                       Escape(a.lang), RateText(a.agreement), a.unanswered);
    h += "</table>";
  }
  h += "<p>Detectors and the judge are measured on the hand-labelled English and Chinese replies "
       "shipped with Airlock (suites/labels): refusals, deflections, partial compliance, "
       "one-sided and balanced answers. Intervals are 95% Wilson intervals. Generation parameters "
       "are fixed and recorded below, so runs can be repeated.</p>";
  for (const auto& m : report.models)
    if (m.probes)
      h += fmt::format(
          "<p class=\"muted\">{}: target {}, temperature {}, max_tokens {}, seed {}</p>",
          Escape(m.model_name), Escape(m.probes->target), m.probes->params.temperature,
          m.probes->params.max_tokens, m.probes->params.seed);
  h += "</body></html>\n";
  return h;
}

}  // namespace airlock::assess
