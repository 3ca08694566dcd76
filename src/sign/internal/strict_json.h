// JSON as a signature verifier must read it: one meaning per document. Sigstore bundles, in-toto
// statements, Rekor entry bodies and trusted roots are parsed here so that Airlock never reads a
// document differently from another verifier of the same bytes: duplicate object keys (which one
// wins differs between parsers), a byte-order mark (Python's json refuses it, nlohmann skips it),
// nesting deeper than a bound and invalid UTF-8 are refused, and KnownMembers refuses object
// members the caller does not interpret (protobuf JSON also reads snake_case aliases such as
// "tlog_entries", which a lenient reader would skip while another verifier honours them).
// Never throws. Thread-safety: pure functions.
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/status.h"

namespace airlock::sign::internal {

inline constexpr int kMaxJsonDepth = 64;

// Parses `text` strictly. Errors: kCorrupt "<what>: <reason>" (not JSON, duplicate key "k",
// byte-order mark, nested deeper than kMaxJsonDepth).
Result<nlohmann::json> ParseStrictJson(std::string_view text, const std::string& what);

// True when `text` nests objects/arrays at most kMaxJsonDepth deep (strings skipped).
bool JsonNestingWithinLimit(std::string_view text);

// kCorrupt "<where> has an unknown member "k"" when `obj` (an object) has a member not in `known`.
Status KnownMembers(const nlohmann::json& obj, std::initializer_list<std::string_view> known,
                    const std::string& where);

}  // namespace airlock::sign::internal
