#include "assess/report.h"

#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/text.h"
#include "scan/report.h"

namespace airlock::assess {
namespace {

using nlohmann::json;

std::string Escape(std::string_view s) { return core::HtmlEscape(s); }

std::string Pct(double v) { return fmt::format("{:.1f}%", v * 100); }

json ModelJson(const ModelAssessment& m) {
  json j = {{"path", m.model_path},
            {"name", m.model_name},
            {"sha256", m.model_sha256},
            {"bytes", m.model_bytes},
            {"signature", {{"status", m.signature.status}, {"detail", m.signature.detail}}}};
  if (m.scan) j["scan"] = json::parse(scan::RenderJson(*m.scan), nullptr, false);
  if (!m.inspect_json.empty()) j["inspect"] = json::parse(m.inspect_json, nullptr, false);
  if (m.quantization) {
    const auto& q = *m.quantization;
    j["quantization"] = {{"reference", q.reference_path},
                         {"text", q.text_path},
                         {"positions", q.positions},
                         {"ppl", {q.ppl, q.ppl_err}},
                         {"ppl_reference", {q.ppl_ref, q.ppl_ref_err}},
                         {"ppl_ratio", {q.ppl_ratio, q.ppl_ratio_err}},
                         {"kl_divergence", {q.kld, q.kld_err}},
                         {"top1_agreement", {q.top1, q.top1_err}},
                         {"top_k", q.top_k},
                         {"mean_tail_mass", q.mean_tail_mass}};
  } else if (!m.quantization_error.empty()) {
    j["quantization"] = {{"error", m.quantization_error}};
  }
  if (m.probes) {
    j["probes"] = json::parse(SummaryJson(*m.probes), nullptr, false);
  } else {
    j["probes"] = {{"unavailable", m.probes_unavailable_reason}};
  }
  return j;
}

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

const char* kStyle = R"CSS(
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#111;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;width:100%}th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top;font-size:.9em}
th{background:#f3f4f6}.clean{color:#047857;font-weight:bold}.malicious{color:#b91c1c;font-weight:bold}.inconclusive{color:#b45309;font-weight:bold}
.verified{color:#047857;font-weight:bold}.failed{color:#b91c1c;font-weight:bold}code{font-size:.85em;word-break:break-all}
.muted{color:#666}.legend span{display:inline-block;margin-right:1em}.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em}
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

  // 2. Static scan findings.
  h += "<h2>File scan</h2>";
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

  // 3. Model facts from inspect.
  h += "<h2>Model facts</h2>";
  for (const auto& m : report.models) {
    json facts = m.inspect_json.empty() ? json() : json::parse(m.inspect_json, nullptr, false);
    if (facts.is_discarded() || !facts.is_object()) {
      h += fmt::format("<p>{}: not available</p>", Escape(m.model_name));
      continue;
    }
    h += fmt::format("<h3>{}</h3><table>", Escape(m.model_name));
    for (const auto& [k, v] : facts.items()) {
      std::string value = v.is_string() ? v.get<std::string>() : v.dump();
      if (value.size() > 400) value = value.substr(0, 400) + "...";
      h += fmt::format("<tr><th>{}</th><td><code>{}</code></td></tr>", Escape(k), Escape(value));
    }
    h += "</table>";
  }

  // 3b. Quantization quality, when a reference model was given.
  bool any_quant = false;
  for (const auto& m : report.models)
    any_quant |= m.quantization.has_value() || !m.quantization_error.empty();
  if (any_quant) {
    h += "<h2>Quantization quality</h2><table><tr><th>model</th><th>reference</th><th>scored "
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

  // 4. Behaviour: one chart per suite, all models side by side.
  h += "<h2>Behaviour under attack</h2>";
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
    h += fmt::format("<h3>{} <span class=\"muted\">({})</span></h3><p>{}</p>", Escape(suite_name),
                     any->metric == Metric::kRefusal
                         ? "refusal rate: lower is better unless the topic is harmful"
                         : "attack success rate: lower is better",
                     Escape(any->intent));
    h += BarChart(labels, rows, names);
    // One-sidedness of the answers that were given (judge model), when measured.
    std::set<std::string> os_categories;
    for (const SuiteResult* sr : per_model)
      if (sr)
        for (const auto& [c, r] : sr->one_sided.by_category) os_categories.insert(c);
    if (!os_categories.empty()) {
      std::vector<std::string> os_labels(os_categories.begin(), os_categories.end());
      std::vector<std::vector<std::optional<Rate>>> os_rows;
      for (const auto& label : os_labels) {
        std::vector<std::optional<Rate>> row;
        for (const SuiteResult* sr : per_model) {
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
      h += BarChart(os_labels, os_rows, names);
    } else if (any->metric == Metric::kRefusal && suite_name == "sensitivity-profile") {
      h += "<p class=\"muted\">One-sidedness of the answers given was not measured (no judge "
           "model configured).</p>";
    }
    h += fmt::format(
        "<p class=\"muted\">Suite digest sha256:{}. Bars show the rate; whiskers the 95% Wilson "
        "interval.</p>",
        Escape(any->sha256));
  }

  // 5. Detector accuracy and method.
  h += "<h2>How far to trust these "
       "numbers</h2><table><tr><th>detector</th><th>precision</th><th>recall</th><th>accuracy</"
       "th><th>labelled examples</th></tr>";
  for (const auto& a : report.detector_accuracy)
    h += fmt::format("<tr><td>{}</td><td>{:.2f}</td><td>{:.2f}</td><td>{:.2f}</td><td>{}</td></tr>",
                     Escape(a.detector), a.precision, a.recall, a.accuracy,
                     a.true_positive + a.false_positive + a.true_negative + a.false_negative);
  h +=
      "</table><p>Keyword detectors are measured on the hand-labelled replies shipped with Airlock "
      "(suites/labels). A judge model, when configured, replaces keyword detection for harmful "
      "requests. Generation parameters are fixed and recorded below, so runs can be repeated.</p>";
  for (const auto& m : report.models)
    if (m.probes)
      h += fmt::format(
          "<p class=\"muted\">{}: target {}, temperature {}, max_tokens {}, seed {}</p>",
          Escape(m.model_name), Escape(m.probes->target), m.probes->params.temperature,
          m.probes->params.max_tokens, m.probes->params.seed);
  h += "</body></html>\n";
  return h;
}

std::string RenderJson(const Report& report) {
  json models = json::array();
  for (const auto& m : report.models) models.push_back(ModelJson(m));
  json acc = json::array();
  for (const auto& a : report.detector_accuracy)
    acc.push_back({{"detector", a.detector},
                   {"precision", a.precision},
                   {"recall", a.recall},
                   {"accuracy", a.accuracy}});
  json doc = {{"schema", "airlock.assessment/v1"},
              {"airlock_version", report.airlock_version},
              {"created_at", report.created_at},
              {"models", models},
              {"detector_accuracy", acc}};
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string RenderCycloneDx(const Report& report) {
  json components = json::array();
  for (const auto& m : report.models) {
    json props = json::array();
    if (m.scan)
      props.push_back(
          {{"name", "airlock:scan:verdict"}, {"value", scan::VerdictName(m.scan->verdict)}});
    props.push_back({{"name", "airlock:signature"}, {"value", m.signature.status}});
    if (m.probes)
      for (const auto& s : m.probes->suites)
        props.push_back({{"name", "airlock:probe:" + s.name},
                         {"value", fmt::format("{:.4f} [{:.4f},{:.4f}] n={}", s.rates.overall.rate,
                                               s.rates.overall.low, s.rates.overall.high,
                                               s.rates.overall.total)}});
    json card = {{"considerations", {{"ethicalConsiderations", json::array()}}}};
    components.push_back({{"type", "machine-learning-model"},
                          {"bom-ref", "model-" + m.model_sha256.substr(0, 16)},
                          {"name", m.model_name},
                          {"hashes", {{{"alg", "SHA-256"}, {"content", m.model_sha256}}}},
                          {"properties", props},
                          {"modelCard", card}});
  }
  json doc = {
      {"bomFormat", "CycloneDX"},
      {"specVersion", "1.5"},
      {"version", 1},
      {"metadata",
       {{"timestamp", report.created_at},
        {"tools",
         {{{"vendor", "Airlock"}, {"name", "airlock"}, {"version", report.airlock_version}}}}}},
      {"components", components}};
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace airlock::assess
