#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "assess/probe.h"
#include "assess/report.h"
#include "assess/runner.h"
#include "assess/target.h"
#include "cli/commands.h"
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

namespace airlock::cli {
namespace {

namespace fs = std::filesystem;

struct AssessArgs {
  std::vector<std::string> models;
  std::string out = "airlock-assessment";
  std::string endpoint;
  std::string model_name;
  std::string public_key;
  std::vector<std::string> ca_paths;
  std::vector<std::string> suites = {"all"};
  std::vector<std::string> corpora;
  bool compare = false;
  std::string through_gateway;
  std::string sign_key;
  std::string reference;
  std::string text;
  int ppl_ctx = 512;
  int ppl_chunks = 16;
  bool no_probes = false;
  double temperature = 0.0;
  int max_tokens = 256;
  std::uint64_t seed = 42;
};

std::string NowRfc3339() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

bool IsGguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

std::string SafeName(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  return s;
}

// Runs the same suites through an in-process `airlock serve` gateway configured by the policy
// file, with the model served locally behind it, so the report shows attack success with and
// without the gateway. Only local GGUF models are supported here.
Result<assess::ModelAssessment> ProbeThroughGateway(const AssessArgs& a, const std::string& path,
                                                    const assess::ModelAssessment& direct,
                                                    const std::vector<assess::Suite>& suites,
                                                    const assess::GenerationParams& params,
                                                    const fs::path& dir) {
  if (!IsGguf(path)) return InvalidArgument("only local GGUF models can be put behind the gateway");
  AIRLOCK_ASSIGN_OR_RETURN(policy::Policy pol, policy::LoadPolicy(a.through_gateway));
  const std::string name = "assessed-model";
  pol.local_models.push_back({name, path});
  server::EngineBackendOptions eo;
  eo.name = name;
  AIRLOCK_ASSIGN_OR_RETURN(auto backend, server::LoadEngineBackend(path, eo));
  server::GatewayOptions go;
  go.host = "127.0.0.1";
  go.port = 0;
  go.policy = std::move(pol);
  go.local_backends[name] = std::move(backend);
  AIRLOCK_ASSIGN_OR_RETURN(auto gateway, server::Gateway::Create(std::move(go)));
  AIRLOCK_TRY(gateway->Start());
  assess::EndpointOptions opts;
  opts.base_url = "http://127.0.0.1:" + std::to_string(gateway->port()) + "/v1";
  opts.model = name;
  opts.label = "gateway " + a.through_gateway + " in front of local " + path;
  auto target = assess::MakeEndpointTarget(opts);
  if (!target.has_value()) {
    gateway->Stop();
    return target.error();
  }
  assess::RunOptions ro;
  ro.params = params;
  ro.results_path = (dir / "results-through-gateway.jsonl").string();
  auto run = assess::RunSuites(**target, suites, ro);
  gateway->Stop();
  if (!run.has_value()) return run.error();
  assess::ModelAssessment via = direct;
  via.model_name = direct.model_name + " (through gateway)";
  via.probes = *run;
  return via;
}

int RunAssess(const AssessArgs& a) {
  if (a.compare && a.models.size() < 2) {
    std::fprintf(stderr, "airlock assess: --compare needs at least two models\n");
    return 3;
  }
  if (!a.endpoint.empty() && a.models.size() > 1) {
    std::fprintf(
        stderr,
        "airlock assess: --endpoint probes one model; compare models one endpoint at a time\n");
    return 3;
  }
  auto builtin = assess::BuiltinSuites();
  if (!builtin.has_value()) {
    std::fprintf(stderr, "airlock assess: %s\n", builtin.error().message().c_str());
    return 3;
  }
  std::vector<assess::Suite> suites;
  for (const auto& s : *builtin)
    for (const auto& want : a.suites)
      if (want == "all" || want == s.name) suites.push_back(s);
  for (const auto& c : a.corpora) {
    auto corpus = assess::LoadCorpus(c);
    if (!corpus.has_value()) {
      std::fprintf(stderr, "airlock assess: %s\n", corpus.error().message().c_str());
      return 3;
    }
    suites.push_back(std::move(*corpus));
  }
  std::error_code ec;
  fs::create_directories(a.out, ec);
  assess::Report report;
  report.airlock_version = kVersion;
  report.created_at = NowRfc3339();
  auto accuracy = assess::MeasureDetectorAccuracy();
  if (accuracy.has_value()) report.detector_accuracy = *accuracy;
  int worst = 0;
  for (const auto& path : a.models) {
    assess::ModelAssessment m;
    m.model_path = path;
    m.model_name = fs::path(path).filename().string();
    if (m.model_name.empty()) m.model_name = fs::path(path).parent_path().filename().string();
    std::fprintf(stderr, "assess: %s: scanning\n", m.model_name.c_str());
    scan::ScanOptions so;
    so.hash = true;
    so.progress = true;
    auto scanned = scan::ScanPaths({path}, so);
    if (!scanned.has_value()) {
      std::fprintf(stderr, "airlock assess: %s\n", scanned.error().message().c_str());
      return 3;
    }
    m.scan = *scanned;
    if (fs::is_regular_file(path)) {
      for (const auto& f : scanned->files)
        if (f.path == path) m.model_sha256 = f.sha256;
      m.model_bytes = fs::file_size(path, ec);
    }
    if (scanned->verdict != scan::Verdict::kClean) worst = std::max(worst, 1);
    if (!a.public_key.empty() || !a.ca_paths.empty()) {
      sign::VerifyOptions vo;
      vo.trust.public_key_path = a.public_key;
      vo.trust.ca_paths = a.ca_paths;
      auto verified = sign::VerifyModel(path, vo);
      if (!verified.has_value()) {
        m.signature = {"failed", verified.error().message()};
      } else if (verified->verified) {
        m.signature = {"verified", verified->message};
      } else {
        m.signature = {"failed", verified->message};
      }
      if (m.signature.status != "verified") worst = std::max(worst, 1);
    }
    if (fs::is_regular_file(path)) {
      auto facts = scan::InspectFile(path);
      if (facts.has_value()) m.inspect_json = scan::RenderInspectJson(*facts);
    }
    if (!a.reference.empty()) {
      if (a.text.empty()) {
        m.quantization_error = "--reference needs --text (the organization's own text)";
      } else if (!IsGguf(path)) {
        m.quantization_error = "not a GGUF file";
      } else {
        std::fprintf(stderr, "assess: %s: perplexity and KL divergence against %s\n",
                     m.model_name.c_str(), a.reference.c_str());
        auto text = core::ReadSmallFile(a.text, 256u << 20);
        engine::CompareOptions co;
        co.n_ctx = a.ppl_ctx;
        co.max_chunks = a.ppl_chunks;
        auto kl = text.has_value() ? engine::ComparePerplexity(a.reference, path, *text, co)
                                   : Result<engine::KlSummary>(text.error());
        if (!kl.has_value()) {
          m.quantization_error = kl.error().message();
        } else {
          assess::QuantizationQuality q;
          q.reference_path = a.reference;
          q.text_path = a.text;
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
      }
    }
    if (a.no_probes) {
      m.probes_unavailable_reason = "--no-probes";
    } else if (scanned->verdict == scan::Verdict::kMalicious) {
      m.probes_unavailable_reason =
          "the file scan found malicious content, so the model was not run";
    } else {
      Result<std::unique_ptr<assess::ChatTarget>> target = InvalidArgument("no target");
      if (!a.endpoint.empty()) {
        assess::EndpointOptions eo;
        eo.base_url = a.endpoint;
        eo.model = a.model_name;
        target = assess::MakeEndpointTarget(eo);
      } else if (IsGguf(path)) {
        target = assess::MakeLocalTarget(path);
      } else {
        m.probes_unavailable_reason =
            "not a GGUF file and no --endpoint given: nothing to run the probes against";
      }
      if (!m.probes_unavailable_reason.empty()) {
        report.models.push_back(std::move(m));
        continue;
      }
      if (!target.has_value()) {
        std::fprintf(stderr, "airlock assess: %s\n", target.error().message().c_str());
        return 3;
      }
      assess::RunOptions ro;
      ro.params = {a.temperature, a.max_tokens, a.seed};
      fs::path dir = fs::path(a.out) / SafeName(m.model_name);
      fs::create_directories(dir, ec);
      ro.results_path = (dir / "results.jsonl").string();
      auto run = assess::RunSuites(**target, suites, ro);
      if (!run.has_value()) {
        std::fprintf(stderr, "airlock assess: %s\n", run.error().message().c_str());
        return 3;
      }
      m.probes = *run;
      if (!a.through_gateway.empty()) {
        auto via = ProbeThroughGateway(a, path, m, suites, ro.params, dir);
        if (!via.has_value()) {
          std::fprintf(stderr, "airlock assess: --through-gateway: %s\n",
                       via.error().message().c_str());
          return 3;
        }
        report.models.push_back(std::move(m));
        report.models.push_back(std::move(*via));
        continue;
      }
    }
    report.models.push_back(std::move(m));
  }
  fs::path out(a.out);
  for (auto [name, text] :
       {std::pair<std::string, std::string>{"report.html", assess::RenderHtml(report)},
        {"report.json", assess::RenderJson(report)},
        {"bom.cdx.json", assess::RenderCycloneDx(report)}}) {
    if (Status s = core::WriteFileAtomic((out / name).string(), text); !s.ok()) {
      std::fprintf(stderr, "airlock assess: %s\n", s.message().c_str());
      return 3;
    }
  }
  if (!a.sign_key.empty()) {
    // One attestation per model: the in-toto subject is the model's model-signing digest; the
    // predicate pins the report by digest and repeats its headline results.
    auto report_json = core::ReadSmallFile((out / "report.json").string(), 1u << 30);
    if (!report_json.has_value()) {
      std::fprintf(stderr, "airlock assess: %s\n", report_json.error().message().c_str());
      return 3;
    }
    nlohmann::json full = nlohmann::json::parse(*report_json, nullptr, false);
    for (std::size_t i = 0; i < report.models.size(); ++i) {
      const auto& m = report.models[i];
      nlohmann::json predicate = {
          {"report_sha256", core::ToHex(core::Sha256Of(*report_json))},
          {"airlock_version", report.airlock_version},
          {"created_at", report.created_at},
          {"assessment", full.is_object() ? full["models"][i] : nlohmann::json()}};
      sign::SigningKey key;
      key.private_key_path = a.sign_key;
      auto bundle = sign::AttestModel(m.model_path, {}, sign::kAssessmentAttestationType,
                                      predicate.dump(), key);
      if (!bundle.has_value()) {
        std::fprintf(stderr, "airlock assess: signing: %s\n", bundle.error().message().c_str());
        return 3;
      }
      auto path = out / (SafeName(m.model_name) + ".assessment.sigstore.json");
      if (Status s = core::WriteFileAtomic(path.string(), *bundle); !s.ok()) {
        std::fprintf(stderr, "airlock assess: %s\n", s.message().c_str());
        return 3;
      }
      std::printf("signed: %s\n", path.c_str());
    }
  }
  std::printf("report: %s\njson:   %s\nbom:    %s\n", (out / "report.html").c_str(),
              (out / "report.json").c_str(), (out / "bom.cdx.json").c_str());
  return worst;
}

}  // namespace

void AddAssessCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<AssessArgs>();
  CLI::App* cmd = app.add_subcommand(
      "assess",
      "Scan, verify, inspect and probe a model; write one risk report (HTML + JSON + CycloneDX)");
  cmd->footer(
      "Writes OUT/report.html (self-contained), OUT/report.json and OUT/bom.cdx.json. Probe\n"
      "results are kept in OUT/<model>/results.jsonl, so an interrupted assessment resumes.\n"
      "Exit codes: 0 report written, every file scanned clean (and the signature verified when a "
      "key\n"
      "was given); 1 report written, some file not clean or the signature did not verify; 3 usage\n"
      "or tool error.\n"
      "Examples:\n"
      "  airlock assess model.gguf --endpoint http://127.0.0.1:8080/v1 --out report\n"
      "  airlock assess --compare a.gguf b.gguf --no-probes\n");
  cmd->add_option("models", a->models, "Model files or folders")->required();
  cmd->add_option("--out", a->out, "Output folder")->capture_default_str();
  cmd->add_option("--endpoint", a->endpoint, "OpenAI-compatible endpoint serving the model");
  cmd->add_option("--model", a->model_name, "Model name to send to the endpoint");
  cmd->add_option("--key", a->public_key, "Public key (PEM) to verify the model's signature with");
  cmd->add_option("--certificate-chain", a->ca_paths,
                  "CA certificate(s) for certificate-signed models");
  cmd->add_option("--suite", a->suites,
                  "Suites to run (default: all; 'none' to run only --corpus files)");
  cmd->add_option("--corpus", a->corpora, "External corpus file(s) to add");
  cmd->add_flag("--compare", a->compare, "Put several models side by side in one report");
  cmd->add_option(
      "--sign", a->sign_key,
      "Private key (PEM): sign an in-toto attestation of the assessment per model "
      "(verify with: airlock verify MODEL --predicate-type assessment --attestation FILE "
      "--key PUB)");
  cmd->add_option("--reference", a->reference,
                  "Reference (e.g. F16) GGUF: add a quantization-quality section (needs --text)");
  cmd->add_option("--text", a->text, "Text to measure perplexity and KL divergence on");
  cmd->add_option("--ppl-ctx", a->ppl_ctx, "Chunk length for the comparison")
      ->capture_default_str();
  cmd->add_option("--ppl-chunks", a->ppl_chunks, "Chunks to score (-1: all)")
      ->capture_default_str();
  cmd->add_option("--through-gateway", a->through_gateway,
                  "Also run the suites through `airlock serve` with this policy file in front of "
                  "the (local GGUF) model; the report shows both");
  cmd->add_flag("--no-probes", a->no_probes, "Only scan and inspect");
  cmd->add_option("--temperature", a->temperature, "Sampling temperature")->capture_default_str();
  cmd->add_option("--max-tokens", a->max_tokens, "Reply length cap")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Sampling seed")->capture_default_str();
  cmd->callback([a, exit_code] { *exit_code = RunAssess(*a); });
}

}  // namespace airlock::cli
