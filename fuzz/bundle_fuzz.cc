// Fuzzes the model-signing wire format: Sigstore bundle JSON, the DSSE envelope inside it, the
// in-toto statement and the model-signing predicate, the keyless verification material
// (Rekor entries, inclusion proofs, checkpoints, SCTs, checked against model_signing's trust config
// when the fixtures are present), the strict JSON reader and Sigstore trusted roots. Any input must
// yield a value or a clean Status (no crash, no leak, no hang), and what we serialize must parse
// back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>

#include "sign/bundle.h"
#include "sign/internal/sigstore.h"
#include "sign/internal/strict_json.h"

namespace {

// model_signing's custom trust config when the fixtures are present ($AIRLOCK_FIXTURES, else
// ../shared/fixtures from the working directory), so that mutated keyless vectors reach the
// inclusion proof, checkpoint, SET, SCT and identity checks instead of stopping at "unknown log".
const airlock::sign::internal::TrustedRoot* RealTrustRoot() {
  static const std::optional<airlock::sign::internal::TrustedRoot> root =
      []() -> std::optional<airlock::sign::internal::TrustedRoot> {
    const char* env = std::getenv("AIRLOCK_FIXTURES");
    std::string dir = env && *env ? env : "../shared/fixtures";
    std::ifstream in(dir + "/model-signing/tests/_signing/testdata/custom_trust_config.json");
    if (!in) return std::nullopt;
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = airlock::sign::internal::ParseTrustedRoot(text.str());
    if (!parsed.has_value()) return std::nullopt;
    return std::move(*parsed);
  }();
  return root ? &*root : nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  using namespace airlock::sign;

  auto bundle = ParseBundle(text);
  if (bundle.has_value()) {
    // Round trip: our own serialization of any accepted bundle must be accepted again with the
    // same envelope.
    std::string again = SerializeBundle(*bundle);
    auto reparsed = ParseBundle(again);
    if (!reparsed.has_value() || reparsed->payload != bundle->payload ||
        reparsed->signature != bundle->signature)
      std::abort();
    (void)Pae(bundle->payload_type, bundle->payload);
    (void)PaeV02Compat(bundle->payload_type, bundle->payload);
    auto st = ParseStatement(bundle->payload);
    if (st.has_value()) (void)ManifestFromStatement(*st);
    // Keyless material: inclusion proofs with hostile indices, sizes and paths, and the checks
    // against an empty trusted root (every entry's log is unknown: a clean failure).
    for (const TlogEntry& e : bundle->tlog_entries)
      (void)internal::VerifyInclusionProof(e.canonicalized_body, e.proof_log_index, e.tree_size,
                                           e.proof_hashes, e.root_hash);
    (void)internal::VerifyKeylessMaterial(*bundle, internal::TrustedRoot{}, "a@b", "https://i");
    if (const internal::TrustedRoot* real = RealTrustRoot())
      (void)internal::VerifyKeylessMaterial(*bundle, *real, "stefanb@us.ibm.com",
                                            "https://sigstore.verify.ibm.com/oauth2");
  }
  // The strict JSON reader alone (duplicate keys, BOM, depth).
  (void)internal::ParseStrictJson(text, "fuzz");
  // The same bytes as a Sigstore trusted root / client trust config.
  (void)internal::ParseTrustedRoot(text);

  // The same bytes as a bare statement (the DSSE payload).
  auto statement = ParseStatement(text);
  if (statement.has_value()) {
    auto manifest = ManifestFromStatement(*statement);
    if (manifest.has_value() && !manifest->v01_compat) {
      // A manifest we accepted must serialize to a statement that parses to the same resources.
      auto out = StatementForManifest(manifest->manifest);
      if (out.has_value()) {
        auto back = ParseStatement(*out);
        if (!back.has_value()) std::abort();
        auto m2 = ManifestFromStatement(*back);
        if (!m2.has_value() || m2->manifest.resources.size() != manifest->manifest.resources.size())
          std::abort();
      }
    }
  }
  return 0;
}
