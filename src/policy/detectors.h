// Sensitive-data detectors for gateway traffic: personal data (e-mail, phone, payment card, IBAN,
// US SSN, Chinese resident ID, IP address) and secrets (API keys, tokens, private keys, generic
// high-entropy assignments). Every pattern is an RE2 regex (linear time, no backtracking); one
// RE2::Set pass finds which detectors can match, then only those run, followed by checksum or
// entropy validation (Luhn, mod-97, ISO 7064, Shannon entropy).
// Ownership: a DetectorSet owns its compiled patterns. Thread-safety: Scan() is const and safe to
// call from many threads at once on one DetectorSet.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace airlock::policy {

enum class DataClass {
  kEmail = 0,
  kPhone,
  kPaymentCard,
  kIban,
  kUsSsn,
  kCnResidentId,
  kIpAddress,
  kSecret,
  kReasoning,  // model reasoning text (<think> blocks, reasoning_content); not found by Scan()
};
inline constexpr int kDataClassCount = 9;

// "email", "phone", "payment_card", "iban", "us_ssn", "cn_resident_id", "ip_address", "secret",
// "reasoning".
std::string_view DataClassName(DataClass c);
// Inverse of DataClassName; nullopt for unknown names.
std::optional<DataClass> ParseDataClass(std::string_view name);
// True for the classes that identify a person (all but kSecret and kReasoning).
bool IsPersonalData(DataClass c);

struct Match {
  DataClass data_class;
  std::string rule;   // detector rule id, e.g. "email", "github-pat", "generic-api-key"
  std::size_t begin;  // byte offsets into the scanned text, [begin, end)
  std::size_t end;
};

struct DetectorOptions {
  // Classes to detect; empty means all detectable classes.
  std::vector<DataClass> enabled;
};

class DetectorSet {
 public:
  // Compiles every rule of the enabled classes. Errors: kInternal if a built-in pattern fails to
  // compile (a bug).
  static Result<std::unique_ptr<DetectorSet>> Create(const DetectorOptions& options = {});
  ~DetectorSet();
  DetectorSet(const DetectorSet&) = delete;
  DetectorSet& operator=(const DetectorSet&) = delete;

  // Returns validated, non-overlapping matches sorted by position, as byte offsets into `text`.
  // Non-ASCII text is read normalized first (each character's NFKC form, invisible format
  // characters dropped), so that full-width digits or a zero-width space inside an e-mail do not
  // hide it; the offsets still cover the original characters. Linear in text size times the
  // number of rules that can match at all. Never throws; any byte sequence is accepted.
  std::vector<Match> Scan(std::string_view text) const;

  // Number of compiled rules (for diagnostics and tests).
  std::size_t rule_count() const;

 private:
  struct Impl;
  explicit DetectorSet(std::unique_ptr<Impl> impl);
  std::vector<Match> ScanExact(std::string_view text) const;  // Scan without normalization
  std::unique_ptr<Impl> impl_;
};

// Validators, exposed for tests and reuse. Each takes the matched text (separators allowed where
// the format has them) and returns whether the check digits are right.
bool LuhnValid(std::string_view digits_with_separators);
bool IbanValid(std::string_view iban_with_spaces);
bool CnResidentIdValid(std::string_view id);
bool UsSsnPlausible(std::string_view ssn);
// Shannon entropy in bits per character of `s` (0 for empty).
double ShannonEntropy(std::string_view s);

}  // namespace airlock::policy
