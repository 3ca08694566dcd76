// `airlock keygen`, `airlock sign`, `airlock verify`: model provenance in the OpenSSF
// model-signing format (compatible with `model_signing sign key|certificate` and
// `model_signing verify key|certificate`).
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/sandboxing.h"
#include "core/file.h"
#include "core/text.h"
#include "sign/sign.h"

namespace airlock::cli {
namespace {

struct KeygenArgs {
  std::string curve = "p256";
  std::string out;
  bool force = false;
};

int RunKeygen(const KeygenArgs& a) {
  std::string priv_path = a.out + ".key";
  std::string pub_path = a.out + ".pub";
  std::error_code ec;
  if (!a.force &&
      (std::filesystem::exists(priv_path, ec) || std::filesystem::exists(pub_path, ec))) {
    std::fprintf(stderr, "airlock keygen: %s or %s already exists (use --force to overwrite)\n",
                 priv_path.c_str(), pub_path.c_str());
    return kExitError;
  }
  auto pair = sign::GenerateKeyPair(a.curve);
  if (!pair.has_value()) {
    std::fprintf(stderr, "airlock keygen: %s\n", pair.error().message().c_str());
    return kExitError;
  }
  // The private key is created owner-only before any byte of it is written.
  mode_t old_mask = ::umask(077);
  Status s = core::WriteFileAtomic(priv_path, pair->private_pem);
  ::umask(old_mask);
  if (s.ok()) ::chmod(priv_path.c_str(), 0600);
  if (s.ok()) s = core::WriteFileAtomic(pub_path, pair->public_pem);
  if (!s.ok()) {
    std::fprintf(stderr, "airlock keygen: %s\n", s.message().c_str());
    return kExitError;
  }
  std::printf("private key: %s (keep it secret)\npublic key:  %s\n", priv_path.c_str(),
              pub_path.c_str());
  return kExitOk;
}

struct SignArgs {
  std::string model;
  std::string key;
  std::string password;
  std::string signature;
  std::vector<std::string> ignore_paths;
  std::vector<std::string> certificate_chain;
  std::string signing_certificate;
  bool no_ignore_git_paths = false;
  bool allow_symlinks = false;
  std::uint64_t shard_size = 0;
  int threads = 0;
};

int RunSign(const SignArgs& a) {
  sign::SignOptions o;
  o.key.private_key_path = a.key;
  o.key.password = a.password;
  o.key.signing_certificate_path = a.signing_certificate;
  o.key.certificate_chain_paths = a.certificate_chain;
  o.signature_path = a.signature;
  o.ignore_paths = a.ignore_paths;
  o.ignore_git_paths = !a.no_ignore_git_paths;
  o.allow_symlinks = a.allow_symlinks;
  if (a.shard_size > 0) {
    o.method = sign::SerializationMethod::kShards;
    o.shard_size = a.shard_size;
  }
  o.threads = a.threads;
  o.progress = true;
  auto r = sign::SignModel(a.model, o);
  if (!r.has_value()) {
    std::fprintf(stderr, "airlock sign: signing failed: %s\n", r.error().message().c_str());
    return kExitError;
  }
  std::printf("signed %s: %zu %s, root sha256:%s\nsignature: %s\n", r->model_name.c_str(),
              r->resources,
              a.shard_size > 0 ? (r->resources == 1 ? "shard" : "shards")
                               : (r->resources == 1 ? "file" : "files"),
              r->root_digest.c_str(), r->signature_path.c_str());
  return kExitOk;
}

struct VerifyArgs {
  std::string model;
  std::string key;
  std::vector<std::string> certificate_chain;
  std::string signature;
  std::string attestation;
  std::string predicate_type = "scan";
  std::vector<std::string> require_verdict;  // empty: "clean" for scan attestations
  bool at_signing_time = false;
  std::string trust_config;
  std::string identity;
  std::string identity_provider;
  std::vector<std::string> ignore_paths;
  bool no_ignore_git_paths = false;
  bool ignore_unsigned_files = false;
  std::string format = "text";
  int threads = 0;
};

using core::TerminalSafe;

// What `verify --attestation` found about the attested verdict (scan attestations carry one).
struct VerdictCheck {
  std::optional<std::string> verdict;  // the predicate's "verdict", when it is a string
  std::vector<std::string> required;   // empty: not checked
  bool accepted = true;
};

void PrintResult(const sign::VerifyResult& r, const std::string& format,
                 const std::string& predicate_json, const VerdictCheck& verdict) {
  if (format == "json") {
    nlohmann::json j;
    j["verified"] = r.verified;
    j["failure"] = std::string(sign::VerifyFailureName(r.failure));
    j["message"] = r.message;
    j["model_name"] = r.model_name;
    j["root_digest"] = r.root_digest;
    j["signer"] = r.signer;
    j["predicate_type"] = r.predicate_type;
    j["resources"] = r.resources;
    j["extra_files"] = r.diff.extra_files;
    j["missing_files"] = r.diff.missing_files;
    j["modified_files"] = r.diff.modified_files;
    j["warnings"] = r.warnings;
    if (!r.checks.empty()) j["checks"] = r.checks;
    if (verdict.verdict) j["verdict"] = *verdict.verdict;
    if (!verdict.required.empty()) j["required_verdicts"] = verdict.required;
    if (!predicate_json.empty()) {
      auto p = nlohmann::json::parse(predicate_json, nullptr, false);
      if (!p.is_discarded()) j["predicate"] = p;
    }
    // JSON escapes control characters itself; `replace` turns invalid UTF-8 into U+FFFD.
    std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
    std::printf("%s\n", text.c_str());
    return;
  }
  // Every string below may come from the bundle, the model's file names or the certificate.
  // The outcome (and verdict) is the first line; warnings follow it, on stderr.
  auto print_warnings = [&r] {
    std::fflush(stdout);
    for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", TerminalSafe(w).c_str());
  };
  if (r.verified) {
    std::string head = "OK: ";
    if (verdict.verdict) {
      std::string v = TerminalSafe(*verdict.verdict);
      // Only a clean verdict reads as OK; another accepted verdict says what it is first.
      head = *verdict.verdict == "clean" ? "OK: verdict clean: "
                                         : "VERIFIED, VERDICT " + v + " (not clean): ";
    }
    std::printf("%s%s\n", head.c_str(), TerminalSafe(r.message).c_str());
    for (const auto& c : r.checks) std::printf("  checked: %s\n", TerminalSafe(c).c_str());
    if (!predicate_json.empty()) {
      constexpr std::size_t kShown = 300;
      std::string shown = TerminalSafe(predicate_json.substr(0, kShown));
      std::printf("predicate: %s%s\n", shown.c_str(),
                  predicate_json.size() > kShown ? " ... (--format json shows all)" : "");
    }
    print_warnings();
    return;
  }
  std::printf("FAILED (%s): %s\n", std::string(sign::VerifyFailureName(r.failure)).c_str(),
              TerminalSafe(r.message).c_str());
  for (const auto& f : r.diff.modified_files)
    std::printf("  modified: %s\n", TerminalSafe(f).c_str());
  for (const auto& f : r.diff.missing_files)
    std::printf("  missing:  %s\n", TerminalSafe(f).c_str());
  for (const auto& f : r.diff.extra_files) std::printf("  extra:    %s\n", TerminalSafe(f).c_str());
  print_warnings();
}

// The predicate type `--predicate-type` names: an alias of Airlock's own, or a URI.
std::optional<std::string> ExpectedPredicateType(const std::string& name) {
  if (name == "scan") return std::string(sign::kScanAttestationType);
  if (name == "assessment") return std::string(sign::kAssessmentAttestationType);
  if (name.rfind("https://", 0) == 0 || name.rfind("http://", 0) == 0) return name;
  return std::nullopt;
}

int RunVerifyAttestation(const VerifyArgs& a, const sign::TrustAnchor& trust) {
  auto expected = ExpectedPredicateType(a.predicate_type);
  if (!expected) {
    std::fprintf(stderr,
                 "airlock verify: --predicate-type must be scan, assessment or a predicate URI\n");
    return kExitError;
  }
  VerdictCheck verdict;
  verdict.required = a.require_verdict;
  if (verdict.required.empty() && *expected == sign::kScanAttestationType)
    verdict.required = {"clean"};
  for (const auto& v : verdict.required) {
    if (v != "clean" && v != "inconclusive" && v != "malicious" && v != "any") {
      std::fprintf(stderr,
                   "airlock verify: --require-verdict takes clean, inconclusive, malicious or "
                   "any\n");
      return kExitError;
    }
  }
  auto r = sign::VerifyAttestation(a.model, a.attestation, a.ignore_paths, trust, *expected);
  if (!r.has_value()) {
    std::fprintf(stderr, "airlock verify: %s\n", TerminalSafe(r.error().message()).c_str());
    return kExitError;
  }
  sign::VerifyResult& result = r->result;
  if (result.verified) {
    auto predicate = nlohmann::json::parse(r->predicate_json, nullptr, false);
    if (predicate.is_object() && predicate.contains("verdict") && predicate["verdict"].is_string())
      verdict.verdict = predicate["verdict"].get<std::string>();
    bool any = std::find(verdict.required.begin(), verdict.required.end(), "any") !=
               verdict.required.end();
    if (!verdict.required.empty() && !any) {
      verdict.accepted =
          verdict.verdict && std::find(verdict.required.begin(), verdict.required.end(),
                                       *verdict.verdict) != verdict.required.end();
    }
    if (!verdict.accepted) {
      std::string required;
      for (const auto& v : verdict.required) required += (required.empty() ? "" : ",") + v;
      result.verified = false;
      result.failure = sign::VerifyFailure::kVerdictNotAccepted;
      result.message = (verdict.verdict ? "verdict " + *verdict.verdict : "no verdict") +
                       " (required: " + required + "); the " + result.message;
    }
  }
  PrintResult(result, a.format, result.verified ? r->predicate_json : "", verdict);
  return result.verified ? kExitOk : kExitFailed;
}

int RunVerify(const VerifyArgs& a) {
  sign::TrustAnchor trust;
  trust.public_key_path = a.key;
  trust.ca_paths = a.certificate_chain;
  trust.at_signing_time = a.at_signing_time;
  trust.trust_config_path = a.trust_config;
  trust.identity = a.identity;
  trust.identity_provider = a.identity_provider;
  int anchors = !a.key.empty() + !a.certificate_chain.empty() + !a.trust_config.empty();
  if (anchors != 1) {
    std::fprintf(stderr,
                 "airlock verify: give exactly one of --key PUB, --certificate-chain CA... or "
                 "--trust-config FILE\n");
    return kExitError;
  }
  if (a.trust_config.empty() != (a.identity.empty() && a.identity_provider.empty()) ||
      (!a.trust_config.empty() && (a.identity.empty() || a.identity_provider.empty()))) {
    std::fprintf(stderr,
                 "airlock verify: --trust-config, --identity and --identity-provider go "
                 "together\n");
    return kExitError;
  }
  std::vector<std::string> inputs = {a.model,     a.model + ".sig", a.key,
                                     a.signature, a.attestation,    a.trust_config};
  inputs.insert(inputs.end(), a.certificate_chain.begin(), a.certificate_chain.end());
  if (!EnterSandbox("verify", inputs)) return kExitError;
  if (!a.attestation.empty()) return RunVerifyAttestation(a, trust);
  if (!a.require_verdict.empty()) {
    std::fprintf(stderr, "airlock verify: --require-verdict needs --attestation\n");
    return kExitError;
  }
  sign::VerifyOptions o;
  o.trust = trust;
  o.signature_path = a.signature;
  o.ignore_paths = a.ignore_paths;
  o.ignore_git_paths = !a.no_ignore_git_paths;
  o.ignore_unsigned_files = a.ignore_unsigned_files;
  o.threads = a.threads;
  o.progress = a.format == "text";
  auto r = sign::VerifyModel(a.model, o);
  if (!r.has_value()) {
    std::fprintf(stderr, "airlock verify: %s\n", TerminalSafe(r.error().message()).c_str());
    return kExitError;
  }
  PrintResult(*r, a.format, "", VerdictCheck{});
  return r->verified ? kExitOk : kExitFailed;
}

}  // namespace

void AddKeygenCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<KeygenArgs>();
  CLI::App* cmd = app.add_subcommand("keygen", "Generate an ECDSA key pair for `airlock sign`");
  cmd->footer(
      "Writes PREFIX.key (PKCS#8 PEM private key, mode 0600) and PREFIX.pub (PEM public key).\n"
      "The keys work with `model_signing sign key --private-key PREFIX.key` too.\n"
      "Exit codes: 0 written; 3 usage or tool error.\n"
      "Example:\n"
      "  airlock keygen --curve p384 --out release-signing\n");
  cmd->add_option("--curve", args->curve, "Elliptic curve: p256 or p384")
      ->check(CLI::IsMember({"p256", "p384"}))
      ->capture_default_str();
  cmd->add_option("--out", args->out, "Output prefix (PREFIX.key, PREFIX.pub)")->required();
  cmd->add_flag("--force", args->force, "Overwrite existing key files");
  cmd->callback([args, exit_code] { *exit_code = RunKeygen(*args); });
}

void AddSignCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<SignArgs>();
  CLI::App* cmd = app.add_subcommand(
      "sign", "Sign a model (file or folder) in the OpenSSF model-signing format");
  cmd->footer(
      "Writes a Sigstore bundle (DSSE envelope over an in-toto statement listing the SHA-256 of\n"
      "every file) that `model_signing verify key|certificate` accepts. Default signature path:\n"
      "MODEL/model.sig for a folder, MODEL.sig for a single file. The signature file and the git\n"
      "paths (.git, .gitattributes, .github, .gitignore) are never signed.\n"
      "Exit codes: 0 signed; 3 usage or tool error.\n"
      "Examples:\n"
      "  airlock sign ./Qwen2.5-0.5B-Instruct --key release-signing.key\n"
      "  airlock sign ./model --key leaf.key --signing-certificate leaf.pem \\\n"
      "      --certificate-chain intermediate.pem --signature model.sig\n");
  cmd->add_option("model", args->model, "Model file or folder")->required();
  cmd->add_option("--key,--private-key", args->key, "PEM EC private key (P-256/P-384/P-521)")
      ->required();
  cmd->add_option("--password", args->password, "Password of an encrypted private key");
  cmd->add_option("--signature", args->signature, "Where to write the signature");
  cmd->add_option("--ignore-paths", args->ignore_paths,
                  "A file or folder to leave out (repeatable; relative to the working directory "
                  "or the model)")
      ->allow_extra_args(false);
  cmd->add_flag("!--ignore-git-paths,--no-ignore-git-paths", args->no_ignore_git_paths,
                "Sign .git, .gitattributes, .github and .gitignore too (--ignore-git-paths, the "
                "default, leaves them out)");
  cmd->add_flag("--allow-symlinks", args->allow_symlinks,
                "Follow symbolic links (refused by default)");
  cmd->add_option("--signing-certificate", args->signing_certificate,
                  "PEM certificate of the signing key (certificate method)");
  cmd->add_option("--certificate-chain", args->certificate_chain,
                  "PEM certificates to embed after the signing certificate (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--shard-size", args->shard_size,
                  "Use the shards serialization with this shard size in bytes (model_signing's "
                  "API default is 1000000000; its CLI always signs whole files)");
  cmd->add_option("--threads", args->threads, "Hashing threads (default: all cores)");
  cmd->callback([args, exit_code] { *exit_code = RunSign(*args); });
}

void AddVerifyCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "verify", "Verify a model (or an attestation) against its OpenSSF model-signing signature");
  cmd->footer(
      "Checks the signature with the given public key, or the signing certificate's chain up to\n"
      "the CA you name (every certificate valid now, or at the signing certificate's notBefore\n"
      "with --at-signing-time; codeSigning usage; RSA >= 2048, EC >= P-256), then re-hashes the\n"
      "model and reports exactly which files are modified, missing or extra.\n"
      "Accepts signatures from model_signing 0.2 to 1.x (key and certificate methods).\n"
      "Keyless Sigstore bundles verify offline with --trust-config (a Sigstore trusted root or\n"
      "client trust config), --identity and --identity-provider: the Rekor entry's inclusion\n"
      "proof, checkpoint and signed entry timestamp against the root's log keys, any RFC 3161\n"
      "timestamp against its timestamp authorities, the Fulcio chain at the signing time, and\n"
      "the certificate's SAN and OIDC issuer (exact match), and its embedded SCTs against\n"
      "the root's CT logs. Bundles are read strictly: duplicate JSON keys, unknown members, two\n"
      "key forms or more than one DSSE signature are refused as malformed.\n"
      "--attestation checks a signed attestation instead: its type (--predicate-type, scan by\n"
      "default), every attested file by name and digest, and for scan attestations the verdict,\n"
      "printed on the first line: only the verdicts --require-verdict lists pass (default: "
      "clean).\n"
      "Exit codes: 0 verified; 1 verification failed (what failed is printed), or a verdict that\n"
      "is not required; 3 usage or tool error (unreadable key, no such model).\n"
      "Examples:\n"
      "  airlock verify ./Qwen2.5-0.5B-Instruct --key release-signing.pub\n"
      "  airlock verify ./model --certificate-chain ca.pem --signature model.sig\n"
      "  airlock verify ./model --trust-config trust_config.json \\\n"
      "      --identity someone@example.com --identity-provider https://accounts.google.com\n"
      "  airlock verify ./model --key scanner.pub --attestation model.scan-attestation.json\n"
      "  airlock verify ./model --key assessor.pub --attestation m.assessment.sigstore.json \\\n"
      "      --predicate-type assessment\n");
  cmd->add_option("model", args->model, "Model file or folder")->required();
  cmd->add_option("--key,--public-key", args->key, "PEM or DER EC public key of the signer");
  cmd->add_option("--certificate-chain", args->certificate_chain,
                  "PEM CA certificate(s) to trust (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--trust-config", args->trust_config,
                  "Sigstore trusted root / client trust config JSON: verify a keyless bundle "
                  "offline");
  cmd->add_option("--identity", args->identity,
                  "With --trust-config: the signer's identity (certificate SAN: email or URI)");
  cmd->add_option("--identity-provider", args->identity_provider,
                  "With --trust-config: the OIDC issuer that vouched for the identity");
  cmd->add_option("--signature", args->signature,
                  "Signature file (default MODEL/model.sig, or MODEL.sig for a file)");
  cmd->add_option("--attestation", args->attestation,
                  "Verify this signed in-toto attestation (e.g. from `airlock scan --attest`) "
                  "instead of the model signature");
  cmd->add_option("--predicate-type", args->predicate_type,
                  "With --attestation: the kind expected, scan, assessment or a predicate URI")
      ->capture_default_str();
  cmd->add_option("--require-verdict", args->require_verdict,
                  "With --attestation: verdicts that pass (clean, inconclusive, malicious, any; "
                  "comma-separated; default clean for scan attestations)")
      ->delimiter(',');
  cmd->add_flag("--at-signing-time", args->at_signing_time,
                "Check certificate validity at the signing certificate's notBefore instead of "
                "now (for archived signatures; prints a warning)");
  cmd->add_option("--ignore-paths", args->ignore_paths,
                  "A file or folder to leave out (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("!--ignore-git-paths,--no-ignore-git-paths", args->no_ignore_git_paths,
                "Do not leave out the git paths (--ignore-git-paths, the default, does)");
  cmd->add_flag("--ignore-unsigned-files", args->ignore_unsigned_files,
                "Do not fail on files that are not in the signature");
  cmd->add_option("--format", args->format, "Output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Hashing threads (default: all cores)");
  cmd->callback([args, exit_code] { *exit_code = RunVerify(*args); });
}

}  // namespace airlock::cli
