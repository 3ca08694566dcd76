// Bounded JSON reading for everything the gateway parses from the network (client requests,
// upstream responses, SSE events, upstream error bodies). nlohmann-json parses iteratively, but
// serializing, copying and comparing a document recurse once per nesting level, so an 80,000-deep
// array from a client or an upstream would overflow the stack later. Every document is therefore
// checked against a nesting limit (core::JsonNestingDepth: one linear pass, no recursion) and a
// size limit before it is parsed; a document past either limit is rejected, never truncated.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/status.h"

namespace airlock::server::internal {

// Deep enough for any real request (JSON Schemas in `tools` nest a few dozen levels at most).
inline constexpr std::size_t kMaxJsonDepth = 64;
// Upper bound for one upstream response body (non-streamed) and for one SSE event.
inline constexpr std::size_t kMaxUpstreamBodyBytes = 32u << 20;
inline constexpr std::size_t kMaxSseEventBytes = 4u << 20;

// Parses `text` as JSON. Errors: kLimitExceeded (larger than max_bytes or nested deeper than
// max_depth), kInvalidArgument (not JSON). Never throws.
Result<nlohmann::json> ParseBoundedJson(std::string_view text, std::size_t max_bytes,
                                        std::size_t max_depth = kMaxJsonDepth);

// Serializes without throwing (invalid UTF-8 is replaced). Only for documents that came from
// ParseBoundedJson or were built by the gateway, so the recursion is bounded.
std::string DumpJson(const nlohmann::json& j);

}  // namespace airlock::server::internal
