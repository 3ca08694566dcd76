// Sensitive-data detectors for gateway traffic: personal data (e-mail, phone, payment card, IBAN,
// US SSN, Chinese resident ID, IP address) and secrets (API keys, tokens, private keys, generic
// high-entropy assignments). Every pattern is an RE2 regex (linear time, no backtracking). One
// multi-pattern pass over the text finds candidates for all rules at once (Hyperscan, with
// hand-written finders for the rules it is slow on, where the build has it; RE2::Set otherwise;
// see DetectorEngine); each rule's RE2 pattern then runs only
// inside its candidate regions (for the commonest rules a hand-written matcher with RE2's exact
// result runs instead, see internal/confirm.h), followed by checksum or entropy validation (Luhn,
// mod-97, ISO 7064, Shannon entropy). Both engines give the same findings, byte for byte.
// Text is read normalized (NFKC, TS #39 confusable letters, format and control characters
// dropped; see internal/normalize.h) and, where it holds encoded characters, also decoded
// (percent, HTML references, backslash escapes, quoted-printable, base64 text data: URLs; see
// internal/decode.h), with offsets mapped back to the original bytes.
// For streamed text, policy/stream_scanner.h scans chunk by chunk with the same findings.
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

  friend bool operator==(const Match&, const Match&) = default;
};

// The multi-pattern engine that finds candidates. kDefault is the build's choice
// (CMake AIRLOCK_DETECTOR_ENGINE: "auto" picks Hyperscan where libhyperscan is found on x86-64);
// findings never depend on the engine, only speed does.
enum class DetectorEngine { kDefault, kHyperscan, kRe2Set };
// Whether Create() can use `engine` in this build on this CPU.
bool DetectorEngineAvailable(DetectorEngine engine);

struct DetectorOptions {
  // Classes to detect; empty means all detectable classes.
  std::vector<DataClass> enabled;
  DetectorEngine engine = DetectorEngine::kDefault;
};

class DetectorSet {
 public:
  // Compiles every rule of the enabled classes. Errors: kInternal if a built-in pattern fails to
  // compile (a bug); kUnavailable if kHyperscan is asked for where it is not available.
  static Result<std::unique_ptr<DetectorSet>> Create(const DetectorOptions& options = {});
  ~DetectorSet();
  DetectorSet(const DetectorSet&) = delete;
  DetectorSet& operator=(const DetectorSet&) = delete;

  // Returns validated, non-overlapping matches sorted by position, as byte offsets into `text`.
  // Text is read normalized first (each character's NFKC form, letters confusable with an ASCII
  // letter read as it, invisible format and control characters dropped), so that full-width
  // digits, a Cyrillic "а" or a zero-width space or NUL inside an e-mail do not hide it; the
  // offsets still cover the original characters. Text that holds encoded characters
  // (percent-encoding, HTML character references, backslash escapes, quoted-printable, base64
  // text data: URLs; see internal/decode.h) is also read decoded, and findings there cover the
  // encoded original bytes. Linear in text size. Never throws; any byte sequence is accepted.
  std::vector<Match> Scan(std::string_view text) const;

  // Number of compiled rules (for diagnostics and tests).
  std::size_t rule_count() const;
  // "hyperscan" or "re2-set".
  std::string_view engine_name() const;

 private:
  struct Impl;
  explicit DetectorSet(std::unique_ptr<Impl> impl);
  std::vector<Match> ScanExact(std::string_view text) const;       // Scan without normalization
  std::vector<Match> ScanNormalized(std::string_view text) const;  // Scan without decoding
  std::unique_ptr<Impl> impl_;
};

// The separator to read between two pieces of one digit-grouped number that is split between two
// fields exactly at a group boundary with no separator at the cut ("card 4111 1111" + "1111 1111",
// "ssn 536-22" + "4581"): the separator printed between the groups next to the cut, taken from
// the end of `before` ("... 4111 1111") or else the start of `after` ("1111-1111 ..."), where the
// number's other groups show it. Empty when the cut is not between two digits or neither side
// shows a separator between digit groups (then the pieces join as they are). At most 3 bytes:
// the separators the grouped-number rules accept (blank, tab, dash, slash, dot, colon, line
// break...).
std::string GroupSeparatorAtCut(std::string_view before, std::string_view after);

// Text as the detectors read it decoded (see DetectorSet::Scan and internal/decode.h): one
// family of encodings undone, with every decoded byte range mapped back to the bytes it came
// from. For callers that arrange several texts into one before scanning it: the gateway reads the
// fields of a request joined, and a field boundary written encoded ("card 4111%201111" +
// "1111%201111") shows its group separator or padding only decoded. Linear in the text size.
class DecodedView {
 public:
  // kWeb: percent-encoding, HTML references, backslash escapes, base64 text data: URLs;
  // kQuotedPrintable: =XX and soft line breaks (read apart, as Scan reads them).
  enum class Family { kWeb, kQuotedPrintable };
  DecodedView();
  ~DecodedView();
  DecodedView(DecodedView&&) noexcept;
  DecodedView& operator=(DecodedView&&) noexcept;

  // Decodes `in`. Returns false, leaving text() empty, when nothing in it decodes.
  bool Assign(std::string_view in, Family family);
  const std::string& text() const;
  // The original byte range covered by decoded bytes [begin, end) of text() (begin < end).
  std::size_t OriginalBegin(std::size_t begin) const;
  std::size_t OriginalEnd(std::size_t end) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether `label` (the last label of an e-mail domain, any case) is a top-level domain: any two
// letters (country codes) or one of the common generic ones (com, org, net, info, io, ...). Used
// to tell "alice@example.co" + "m" (the next field completes the address) from
// "alice@example.com" + "my" (a word glued on).
bool IsKnownTopLevelDomain(std::string_view label);

// Validators, exposed for tests and reuse. Each takes the matched text (separators allowed where
// the format has them) and returns whether the check digits are right.
bool LuhnValid(std::string_view digits_with_separators);
bool IbanValid(std::string_view iban_with_spaces);
bool CnResidentIdValid(std::string_view id);
bool UsSsnPlausible(std::string_view ssn);
// Shannon entropy in bits per character of `s` (0 for empty).
double ShannonEntropy(std::string_view s);
// ShannonEntropy(s) > bits, decided as that comparison decides, without the logarithms where
// the commonest byte's share alone shows the entropy is well above `bits`.
bool ShannonEntropyExceeds(std::string_view s, double bits);

}  // namespace airlock::policy
