// Small encodings used by the signature format: base64 (DSSE payloads, signatures, certificates),
// lowercase hex digests, and the Python bytes repr that model_signing v0.2 fed into its buggy PAE.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/text.h"

namespace airlock::sign::internal {

using core::Base64Encode;  // standard base64 with '=' padding
// Accepts the standard and the URL-safe alphabets, with or without padding (protobuf JSON accepts
// both). Returns nullopt on any other character, misplaced padding or a dangling 6-bit group.
std::optional<std::string> Base64Decode(std::string_view text);

// Lowercase hex of raw bytes.
std::string HexEncode(std::string_view bytes);
// Decodes hex (either case); nullopt on odd length or a non-hex character.
std::optional<std::string> HexDecode(std::string_view hex);

// What Python's repr() of a bytes object prints, e.g. b'{\n  "a": 1\n}' -> the characters
// b ' { \ n ... }: quotes chosen as Python does, \\, \t, \n, \r and \xNN escapes.
std::string PythonBytesRepr(std::string_view bytes);

}  // namespace airlock::sign::internal
