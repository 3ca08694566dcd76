// Byte builders for hand-written pickles in tests, and a printer for scan findings.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "scan/scan.h"

namespace airlock::testing::pkl {

inline std::span<const std::byte> Bytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}
inline std::string Le(std::uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}
// A literal with its full length (literals may hold NUL bytes).
template <std::size_t N>
std::string S(const char (&a)[N]) {
  return std::string(a, N - 1);
}
inline std::string Proto(int p) { return std::string("\x80", 1) + static_cast<char>(p); }
// SHORT_BINUNICODE
inline std::string U(std::string_view s) {
  return std::string("\x8c", 1) + static_cast<char>(s.size()) + std::string(s);
}
// SHORT_BINBYTES
inline std::string C(std::string_view s) {
  return std::string("C", 1) + static_cast<char>(s.size()) + std::string(s);
}
// BINUNICODE (4-byte length)
inline std::string X(std::string_view s) { return "X" + Le(s.size(), 4) + std::string(s); }
inline std::string Frame(std::uint64_t n) { return std::string("\x95", 1) + Le(n, 8); }
inline const std::string kStackGlobal = "\x93";
inline const std::string kMemoize = "\x94";
inline const std::string kTuple1 = "\x85";
inline const std::string kTuple2 = "\x86";
inline const std::string kNewObj = "\x81";
inline const std::string kNewObjEx = "\x92";

// The findings of a report, one per line, for failure messages.
inline std::string Dump(const airlock::scan::FileReport& r) {
  std::string s;
  for (const auto& f : r.findings) s += "\n  " + f.rule_id + " [" + f.member + "] " + f.message;
  return s;
}

}  // namespace airlock::testing::pkl
