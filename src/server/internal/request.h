// The one place that knows the OpenAI request fields the gateway acts on and their types. A
// request body is checked here once, before any reservation or policy work; everything after
// reads the typed CompletionRequest (or a body this check has accepted), so malformed field types
// end in a 400 instead of an exception halfway through a request.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace airlock::server::internal {

inline constexpr std::int64_t kMaxTokensLimit = 1 << 24;
inline constexpr std::int64_t kMaxChoices = 128;  // `n`

struct CompletionRequest {
  bool chat = true;
  std::string model;
  bool stream = false;
  // Output limits as given (nullopt: absent or null).
  std::optional<std::int64_t> max_tokens;
  std::optional<std::int64_t> max_completion_tokens;
  std::int64_t n = 1;
  std::int64_t best_of = 1;  // completions: candidates generated server-side (billed like `n`)
  std::size_t message_count = 1;
  // The most completion tokens one choice may produce: the larger of the two limits, or the
  // default when neither is given. Reserved (times n) and written back as the upstream's limit.
  std::int64_t CompletionCap(std::int64_t default_max_tokens) const;
};

struct RequestError {
  std::string message;
  std::string code;   // OpenAI-style error code
  std::string param;  // the offending field, when there is one
};

// Checks the types of every field the gateway reads (model, stream, messages and their roles,
// names and content parts, prompt, max_tokens, max_completion_tokens, n, best_of, temperature,
// top_p, presence_penalty, frequency_penalty, seed, stop) and the ranges OpenAI accepts for the
// numeric ones (temperature 0..2, top_p 0..1, penalties -2..2, n and best_of 1..128), so that a
// number cannot carry arbitrary digits past the scan. Returns the typed request or the 400 error.
std::optional<RequestError> ParseCompletionRequest(const nlohmann::json& body, bool chat,
                                                   CompletionRequest* out);

// Text the policy scans as one: adjacent string nodes of the request (the text parts of one
// message's content, or a single string anywhere else), joined without a separator so that data
// split across parts ("phone 1381234" + "5678") is still found.
struct ScanUnit {
  std::vector<nlohmann::json*> parts;
  // Text the model reads (content, names, arguments, descriptions, unknown fields...), as opposed
  // to a structural value (role, type, ids): only model text joins the cross-field scan.
  bool model_text = true;
  // A copy of a short integer's digits (an enum of numbers, [4111, 1111, 1111, 1111]): it joins
  // the cross-field scan, but the number is forwarded as it is: a finding in it that the policy
  // would rewrite refuses the request.
  bool fixed = false;
  std::string Joined() const;
};

// What CollectScanUnits found: the string values to scan (and rewrite in place), and every object
// key of the request, which the gateway scans but cannot rewrite (a key with a finding is refused).
struct ScanTargets {
  std::vector<ScanUnit> units;
  std::vector<std::string> keys;
  // Texts that are scanned but forwarded unchanged as numbers: the decimal text of the typed
  // numeric fields (seed, temperature, ...) that have 7 or more digits. A finding: refused.
  std::vector<std::pair<std::string, std::string>> numbers;  // {field, decimal text}
  // The texts of the fixed units (integers of under 7 digits outside the typed fields); a deque,
  // so that the units' pointers stay valid as it grows.
  std::deque<nlohmann::json> number_texts;
};

// Collects every string value of a request that ParseCompletionRequest accepted, known fields and
// unknown ones alike, and every object key; only `model` (a configured model's name) is skipped.
// Shapes ParseCompletionRequest did not check (a `messages` array sent to /v1/completions) are
// walked as plain JSON, never assumed. Numbers outside the typed numeric fields that have 7 or more
// digits are turned into strings first, so that a phone or card number sent as a JSON number is
// scanned too. Errors (400 unscannable_content): a value the gateway cannot scan, a data: URL (its
// base64 payload could carry any text past the detectors).
std::optional<RequestError> CollectScanUnits(nlohmann::json& body, bool chat, ScanTargets* units);

// The text a JSON number is scanned as: an integer's decimal text, or a float's mantissa digits
// in order (4532015112830366.0 dumps as 4.532015112830366e+15: the digits still form the card)
// followed by a blank and the mantissa with its point read as a blank (a card in the fraction
// digits of 0.4111111111111111).
std::string NumberScanText(const nlohmann::json& number);

// An integer field of an object from an upstream (index, token counts), or `fallback` when it is
// absent, not an integer, or outside [0, max].
std::int64_t IntegerField(const nlohmann::json& object, const char* key, std::int64_t fallback,
                          std::int64_t max = std::int64_t{1} << 40);

}  // namespace airlock::server::internal
