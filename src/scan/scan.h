// airlock::scan: static vetting of model files. Nothing in a scanned file is ever executed: each
// format is parsed by a hardened reader from `formats/` and the result judged against rules.
//
// Verdicts are three-valued and fail closed:
//   clean         every byte that matters was understood and nothing is wrong;
//   malicious     at least one finding of severity high or critical;
//   inconclusive  the scan could not finish (parse error, unsupported construct, resource cap,
//                 unknown import needing review): never reported as clean.
// Thread-safety: ScanPaths and ScanBuffer are reentrant; they share no global state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace airlock::scan {

enum class Severity { kInfo = 0, kLow, kMedium, kHigh, kCritical };
enum class Verdict { kClean = 0, kInconclusive, kMalicious };

std::string_view SeverityName(Severity s);
std::optional<Severity> ParseSeverity(std::string_view name);
std::string_view VerdictName(Verdict v);

struct Finding {
  std::string rule_id;  // stable, e.g. "pickle.dangerous-import"; documented in docs/rules.md
  Severity severity = Severity::kInfo;
  std::string message;  // one sentence a security engineer understands
  std::string path;     // the file on disk
  std::string member;   // archive member chain, "archive/data.pkl" or "a.tar!/b.zip!/c.pkl"
  std::optional<std::uint64_t> offset;  // byte offset within the innermost member (or file)
  // 1-based line of `offset` when the innermost member (or file) is text: a chat template,
  // JSON, YAML, Python source, a notebook or plain text. Empty for binary formats.
  std::optional<std::uint64_t> line;
  // True when this finding means the scan could not be completed (makes the verdict at least
  // inconclusive regardless of severity).
  bool incomplete = false;
};

struct FileReport {
  std::string path;
  std::string format;  // detected format of the top-level content ("pickle", "pytorch-zip", ...)
  std::uint64_t size = 0;
  std::string sha256;  // hex; filled only when ScanOptions::hash is set
  Verdict verdict = Verdict::kInconclusive;
  std::vector<Finding> findings;
};

struct ScanReport {
  std::vector<FileReport> files;
  Verdict verdict = Verdict::kClean;  // the worst of the files' verdicts
};

struct ScanLimits {
  int max_depth = 8;                                  // nesting of archives and nested pickles
  std::uint64_t max_members = 100'000;                // archive members across the whole file
  std::uint64_t max_expansion_ratio = 200;            // decompressed bytes / compressed bytes
  std::uint64_t max_decompressed_bytes = 8ull << 30;  // total across one top-level file
  std::uint64_t max_member_bytes = 2ull << 30;        // largest member decompressed into memory
  std::uint64_t max_pickle_ops = 50'000'000;          // opcodes executed per pickle stream
  std::uint64_t max_pickle_memo = 1'000'000;          // memo entries per pickle stream
  std::uint64_t max_template_bytes = 1u << 20;        // chat template source size
  std::uint64_t max_json_bytes = 64u << 20;           // config/tokenizer JSON parsed in memory
};

struct ScanOptions {
  ScanLimits limits;
  bool hash = false;      // compute sha256 of each top-level file
  bool progress = false;  // progress bar on stderr (only drawn on a TTY)
};

// Computes a file's verdict from its findings.
Verdict VerdictOf(const std::vector<Finding>& findings);

// Scans files and folders (recursively; a folder is treated as a model folder with cross-file
// checks). Errors: kInvalidArgument when a path does not exist; per-file read errors become
// inconclusive findings, never a failed scan.
Result<ScanReport> ScanPaths(const std::vector<std::string>& paths, const ScanOptions& options);

// Scans bytes already in memory as if they were a file named `display_name` (used by tests,
// fuzzers and archive members). Never fails: problems are findings.
FileReport ScanBuffer(std::span<const std::byte> data, std::string display_name,
                      const ScanOptions& options);

}  // namespace airlock::scan
