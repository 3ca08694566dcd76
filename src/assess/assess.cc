#include "assess/assess.h"

#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "assess/capability.h"
#include "assess/probe.h"
#include "assess/runner.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/version.h"
#include "engine/perplexity.h"
#include "policy/policy.h"
#include "scan/inspect.h"
#include "scan/scan.h"
#include "server/engine_backend.h"
#include "server/gateway.h"
#include "sign/sign.h"

namespace airlock::assess {
namespace {

namespace fs = std::filesystem;

std::string NowRfc3339() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool IsGguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

// A saved report.json (for --compare): a JSON file whose "schema" says it is an assessment.
bool IsSavedReport(const std::string& path) {
  std::error_code ec;
  if (fs::path(path).extension() != ".json" || !fs::is_regular_file(path, ec)) return false;
  auto text = core::ReadSmallFile(path, 64u << 20);
  if (!text.has_value()) return false;
  nlohmann::json doc = nlohmann::json::parse(*text, nullptr, false);
  return doc.is_object() && doc.contains("schema") && doc["schema"] == "airlock.assessment/v1";
}

std::string SafeName(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  return s;
}

void Log(const AssessOptions& o, const std::string& line) {
  if (o.log) o.log(line);
}

// The gate's battery, then the selected suites, in one run (one results file, resumable); the
// battery's result is taken out of the suites and becomes the summary's gate.
Result<RunSummary> RunWithGate(ChatTarget& target, const std::vector<Suite>& suites,
                               const RunOptions& options) {
  std::vector<Suite> all = {CapabilityBattery()};
  all.insert(all.end(), suites.begin(), suites.end());
  AIRLOCK_ASSIGN_OR_RETURN(RunSummary run, RunSuites(target, all, options));
  for (auto it = run.suites.begin(); it != run.suites.end(); ++it) {
    if (it->name == kCapabilitySuiteName) {
      run.gate = GateFrom(*it);
      run.suites.erase(it);
      break;
    }
  }
  return run;
}

// Runs the same suites through an in-process `airlock serve` gateway configured by the policy
// file, in front of the model (a local GGUF served by the gateway itself, or the --endpoint as
// the gateway's upstream), so the report shows the behaviour with and without the gateway.
Result<ModelAssessment> ProbeThroughGateway(const AssessOptions& o, const std::string& path,
                                            const ModelAssessment& direct,
                                            const std::vector<Suite>& suites, const RunOptions& ro,
                                            const fs::path& dir) {
  AIRLOCK_ASSIGN_OR_RETURN(policy::Policy pol, policy::LoadPolicy(o.through_gateway));
  const std::string name = "assessed-model";
  server::GatewayOptions go;
  go.host = "127.0.0.1";
  go.port = 0;
  std::string label;
  if (!o.endpoint.empty()) {
    // The assessed endpoint becomes the gateway's upstream. It may receive every data class in
    // clear (the probes plant canaries on purpose); what the gateway adds is its response rules.
    policy::Upstream up;
    up.name = "assessed-endpoint";
    up.base_url = o.endpoint;
    up.jurisdiction = "ZZ";  // ISO 3166 user-assigned: "the endpoint being assessed"
    up.models = {name};
    for (int c = 0; c < policy::kDataClassCount; ++c)
      up.allowed_data_classes.push_back(static_cast<policy::DataClass>(c));
    pol.upstreams.insert(pol.upstreams.begin(), up);
    label = "gateway " + o.through_gateway + " in front of " + o.endpoint;
  } else {
    if (!IsGguf(path))
      return InvalidArgument(
          "--through-gateway needs a local GGUF model or --endpoint to put behind the gateway");
    pol.local_models.push_back({name, path});
    server::EngineBackendOptions eo;
    eo.name = name;
    AIRLOCK_ASSIGN_OR_RETURN(auto backend, server::LoadEngineBackend(path, eo));
    go.local_backends[name] = std::move(backend);
    label = "gateway " + o.through_gateway + " in front of local " + path;
  }
  go.policy = std::move(pol);
  AIRLOCK_ASSIGN_OR_RETURN(auto gateway, server::Gateway::Create(std::move(go)));
  AIRLOCK_TRY(gateway->Start());
  EndpointOptions eo;
  eo.base_url = "http://127.0.0.1:" + std::to_string(gateway->port()) + "/v1";
  eo.model = name;
  eo.label = label;
  eo.trust_policy_blocks = true;  // our own gateway, in this process
  auto target = MakeEndpointTarget(eo);
  if (!target.has_value()) {
    gateway->Stop();
    return target.error();
  }
  RunOptions via_options = ro;
  via_options.results_path = (dir / "results-through-gateway.jsonl").string();
  auto run = RunSuites(**target, suites, via_options);
  gateway->Stop();
  if (!run.has_value()) return run.error();
  ModelAssessment via = direct;
  via.model_name = direct.model_name + " (through gateway)";
  via.probes = *run;
  // The capability of the model does not change behind the gateway; its gate carries over.
  via.probes->gate = direct.probes ? direct.probes->gate : std::nullopt;
  return via;
}

void MeasureQuantization(const AssessOptions& o, const std::string& path, ModelAssessment& m) {
  if (o.text.empty()) {
    m.quantization_error = "--reference needs --text (the organization's own text)";
    return;
  }
  if (!IsGguf(path)) {
    m.quantization_error = "not a GGUF file";
    return;
  }
  Log(o, "assess: " + m.model_name + ": perplexity and KL divergence against " + o.reference);
  auto text = core::ReadSmallFile(o.text, 256u << 20);
  engine::CompareOptions co;
  co.n_ctx = o.ppl_ctx;
  co.max_chunks = o.ppl_chunks;
  auto kl = text.has_value() ? engine::ComparePerplexity(o.reference, path, *text, co)
                             : Result<engine::KlSummary>(text.error());
  if (!kl.has_value()) {
    m.quantization_error = kl.error().message();
    return;
  }
  QuantizationQuality q;
  q.reference_path = o.reference;
  q.text_path = o.text;
  q.positions = kl->positions;
  q.ppl = kl->ppl.value;
  q.ppl_err = kl->ppl.error;
  q.ppl_ref = kl->ppl_ref.value;
  q.ppl_ref_err = kl->ppl_ref.error;
  q.ppl_ratio = kl->ppl_ratio.value;
  q.ppl_ratio_err = kl->ppl_ratio.error;
  q.kld = kl->kld.value;
  q.kld_err = kl->kld.error;
  q.top1 = kl->top1_agreement.value;
  q.top1_err = kl->top1_agreement.error;
  q.top_k = kl->top_k;
  q.mean_tail_mass = kl->mean_tail_mass;
  m.quantization = q;
}

Result<std::vector<Suite>> SelectSuites(const AssessOptions& o) {
  AIRLOCK_ASSIGN_OR_RETURN(auto builtin, BuiltinSuites());
  std::vector<Suite> suites;
  for (const auto& want : o.suites) {
    if (want == "all" || want == "none") continue;
    bool known = false;
    for (const auto& s : builtin) known |= s.name == want;
    if (!known) return InvalidArgument("assess: unknown suite '" + want + "'");
  }
  for (const auto& s : builtin)
    for (const auto& want : o.suites)
      if (want == "all" || want == s.name) {
        suites.push_back(s);
        break;
      }
  for (const auto& c : o.corpora) {
    AIRLOCK_ASSIGN_OR_RETURN(Suite corpus, LoadCorpus(c));
    suites.push_back(std::move(corpus));
  }
  return suites;
}

Status SignAssessments(const AssessOptions& o, const Report& report, const fs::path& out,
                       AssessOutcome& outcome) {
  // One attestation per assessed model: the in-toto subject is the model's model-signing digest;
  // the predicate pins the report by digest and repeats the model's part of it.
  AIRLOCK_ASSIGN_OR_RETURN(std::string report_json,
                           core::ReadSmallFile((out / "report.json").string(), 1u << 30));
  nlohmann::json full = nlohmann::json::parse(report_json, nullptr, false);
  for (std::size_t i = 0; i < report.models.size(); ++i) {
    const auto& m = report.models[i];
    if (!m.loaded_from.empty()) continue;  // a saved report: not assessed in this run
    nlohmann::json predicate = {
        {"report_sha256", core::ToHex(core::Sha256Of(report_json))},
        {"airlock_version", report.airlock_version},
        {"created_at", report.created_at},
        {"assessment", full.is_object() ? full["models"][i] : nlohmann::json()}};
    sign::SigningKey key;
    key.private_key_path = o.sign_key;
    auto bundle = sign::AttestModel(m.model_path, {}, sign::kAssessmentAttestationType,
                                    predicate.dump(), key);
    if (!bundle.has_value())
      return Status(bundle.error().code(), "signing: " + bundle.error().message());
    auto path = out / (SafeName(m.model_name) + ".assessment.sigstore.json");
    AIRLOCK_TRY(core::WriteFileAtomic(path.string(), *bundle));
    outcome.attestation_paths.push_back(path.string());
  }
  return Status::Ok();
}

}  // namespace

Result<AssessOutcome> AssessModels(const AssessOptions& o) {
  if (!o.endpoint.empty()) {
    int real = 0;
    for (const auto& p : o.models) real += IsSavedReport(p) ? 0 : 1;
    if (real > 1)
      return InvalidArgument(
          "assess: --endpoint probes one model; compare models one endpoint at a time (or "
          "compare saved report.json files)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<Suite> suites, SelectSuites(o));
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  AssessOutcome outcome;
  Report& report = outcome.report;
  report.airlock_version = kVersion;
  report.created_at = NowRfc3339();
  if (auto accuracy = MeasureDetectorAccuracy(); accuracy.has_value())
    report.detector_accuracy = *accuracy;

  std::unique_ptr<ChatTarget> judge;
  if (!o.judge_endpoint.empty()) {
    EndpointOptions jo;
    jo.base_url = o.judge_endpoint;
    jo.model = o.judge_model;
    AIRLOCK_ASSIGN_OR_RETURN(judge, MakeEndpointTarget(jo));
    report.judge = judge->Describe();
    Log(o, "assess: measuring the judge's agreement with the labelled set");
    AIRLOCK_ASSIGN_OR_RETURN(report.judge_agreement, MeasureJudgeAgreement(*judge));
  }

  for (const auto& path : o.models) {
    if (IsSavedReport(path)) {
      AIRLOCK_ASSIGN_OR_RETURN(std::string text, core::ReadSmallFile(path, 64u << 20));
      AIRLOCK_ASSIGN_OR_RETURN(auto saved, ParseReportJson(text, path));
      for (auto& m : saved) report.models.push_back(std::move(m));
      continue;
    }
    ModelAssessment m;
    m.model_path = path;
    m.model_name = fs::path(path).filename().string();
    if (m.model_name.empty()) m.model_name = fs::path(path).parent_path().filename().string();
    m.is_folder = fs::is_directory(path, ec);
    Log(o, "assess: " + m.model_name + ": scanning");
    scan::ScanOptions so;
    so.hash = true;
    so.progress = true;
    AIRLOCK_ASSIGN_OR_RETURN(scan::ScanReport scanned, scan::ScanPaths({path}, so));
    m.scan = scanned;
    if (fs::is_regular_file(path, ec)) {
      for (const auto& f : scanned.files)
        if (f.path == path) m.model_sha256 = f.sha256;
      m.model_bytes = fs::file_size(path, ec);
    } else {
      for (const auto& f : scanned.files) m.model_bytes += f.size;
    }
    // A folder is named by its model-signing root digest (in the BOM, the report and the
    // attestation); a file by its SHA-256, already computed by the scan (not hashed twice).
    if (m.is_folder)
      if (auto digest = sign::ComputeModelDigest(path, {}); digest.has_value())
        m.model_root_digest = digest->root_digest;
    if (scanned.verdict != scan::Verdict::kClean) outcome.all_clean = false;
    if (!o.public_key.empty() || !o.ca_paths.empty()) {
      sign::VerifyOptions vo;
      vo.trust.public_key_path = o.public_key;
      vo.trust.ca_paths = o.ca_paths;
      auto verified = sign::VerifyModel(path, vo);
      if (!verified.has_value())
        m.signature = {"failed", verified.error().message()};
      else
        m.signature = {verified->verified ? "verified" : "failed", verified->message};
      if (m.signature.status != "verified") outcome.all_clean = false;
    }
    if (fs::is_regular_file(path, ec)) {
      if (auto facts = scan::InspectFile(path); facts.has_value())
        m.inspect_json = scan::RenderInspectJson(*facts);
    }
    if (!o.reference.empty()) MeasureQuantization(o, path, m);

    std::optional<ModelAssessment> via;
    if (o.no_probes) {
      m.probes_unavailable_reason = "--no-probes";
    } else if (scanned.verdict == scan::Verdict::kMalicious) {
      m.probes_unavailable_reason =
          "the file scan found malicious content, so the model was not run";
    } else if (o.endpoint.empty() && !IsGguf(path)) {
      m.probes_unavailable_reason =
          "not a GGUF file and no --endpoint given: nothing to run the probes against";
    } else {
      std::unique_ptr<ChatTarget> target;
      if (!o.endpoint.empty()) {
        EndpointOptions eo;
        eo.base_url = o.endpoint;
        eo.model = o.endpoint_model;
        AIRLOCK_ASSIGN_OR_RETURN(target, MakeEndpointTarget(eo));
      } else {
        AIRLOCK_ASSIGN_OR_RETURN(target, MakeLocalTarget(path));
      }
      RunOptions ro;
      ro.params = o.params;
      ro.judge = judge.get();
      fs::path dir = fs::path(o.out_dir) / SafeName(m.model_name);
      fs::create_directories(dir, ec);
      ro.results_path = (dir / "results.jsonl").string();
      Log(o, "assess: " + m.model_name + ": capability gate and probe suites");
      AIRLOCK_ASSIGN_OR_RETURN(m.probes, RunWithGate(*target, suites, ro));
      if (!o.through_gateway.empty()) {
        Log(o, "assess: " + m.model_name + ": probe suites through the gateway");
        auto through = ProbeThroughGateway(o, path, m, suites, ro, dir);
        if (!through.has_value())
          return Status(through.error().code(), "--through-gateway: " + through.error().message());
        via = std::move(*through);
      }
    }
    m.verdict = DecideAdoption(m);
    report.models.push_back(std::move(m));
    if (via) {
      via->verdict = DecideAdoption(*via);
      report.models.push_back(std::move(*via));
    }
  }

  fs::path out(o.out_dir);
  outcome.html_path = (out / "report.html").string();
  outcome.json_path = (out / "report.json").string();
  outcome.bom_path = (out / "bom.cdx.json").string();
  AIRLOCK_TRY(core::WriteFileAtomic(outcome.html_path, RenderHtml(report)));
  AIRLOCK_TRY(core::WriteFileAtomic(outcome.json_path, RenderJson(report)));
  AIRLOCK_TRY(core::WriteFileAtomic(outcome.bom_path, RenderCycloneDx(report)));
  if (!o.sign_key.empty()) AIRLOCK_TRY(SignAssessments(o, report, out, outcome));
  return outcome;
}

}  // namespace airlock::assess
