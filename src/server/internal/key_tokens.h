// What both key stores (SQLite in keys.cc, PostgreSQL in postgres_store.cc) share: the token
// format (ak_<12 hex id>_<64 hex secret>), the checks on a new key's fields, and reading the
// stored models list fail-closed. Included only by those files.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace airlock::server::internal {

std::int64_t NowMs();
// `bytes` random bytes as hex; empty when the system has no randomness.
std::string RandomHex(std::size_t bytes);
// The id part of a well-formed token; nullopt for anything else.
std::optional<std::string> TokenId(std::string_view token);
// Errors: kInvalidArgument, as documented at KeyStore::Create.
Status ValidateNewKey(const std::string& name, const std::vector<std::string>& models,
                      std::int64_t rpm, std::int64_t tpm, std::int64_t budget_tokens);
// A new id and token, or kInternal without randomness.
Result<std::pair<std::string, std::string>> NewIdAndToken();
// Parses the stored models column: a JSON array of non-empty strings. nullopt for anything else
// (the caller treats the key as revoked: an unreadable list must not widen to every model).
std::optional<std::vector<std::string>> ParseModels(const std::string& json_text);
std::string ModelsJson(const std::vector<std::string>& models);

}  // namespace airlock::server::internal
