// Zip containers: plain zips, PyTorch checkpoints (torch.save), TorchScript archives
// (torch.jit.save), NumPy .npz. The archive is read with formats/zip (PyTorch semantics), every
// structural anomaly becomes a finding, and each member a loader would read goes through
// Scanner::ScanChild, so pickles inside reach the pickle analyzer and nested archives recurse.
#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_set>

#include "core/bytes.h"
#include "core/file.h"
#include "core/text.h"
#include "formats/zip.h"
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {
namespace {

namespace zip = formats::zip;
using zip::AnomalyKind;

struct Rule {
  const char* id;
  Severity severity;
  bool incomplete;
  const char* why;  // appended to the reader's detail
};

Rule RuleFor(AnomalyKind kind) {
  switch (kind) {
    case AnomalyKind::kDuplicateName:
      return {"zip.duplicate-name", Severity::kHigh, false,
              "zip readers pick different copies (zipfile the last, miniz by sorted lookup), so a "
              "scanner can be shown one member while torch.load reads another"};
    case AnomalyKind::kNameMismatch:
      return {"zip.name-mismatch", Severity::kHigh, false,
              "Python's zipfile rejects the member while PyTorch reads it by the central name "
              "(CVE-2025-1944 technique)"};
    case AnomalyKind::kHeaderMismatch:
      return {"zip.header-mismatch", Severity::kHigh, false,
              "readers that trust the local header see different data than ones that trust the "
              "central directory"};
    case AnomalyKind::kFlagMismatch:
      return {"zip.flag-mismatch", Severity::kMedium, false,
              "local and central flags should agree"};
    case AnomalyKind::kDataDescriptorMismatch:
      return {"zip.data-descriptor-mismatch", Severity::kMedium, false,
              "streaming readers would see different sizes"};
    case AnomalyKind::kPatchedFlag:
      return {"zip.flag-bits", Severity::kHigh, false,
              "zipfile refuses such members while PyTorch ignores the bit (CVE-2025-1945 "
              "technique)"};
    case AnomalyKind::kMaskedHeaders:
      return {"zip.encrypted", Severity::kMedium, true,
              "masked (encrypted) headers cannot be vetted"};
    case AnomalyKind::kUnusualFlags:
      return {"zip.unusual-flags", Severity::kLow, false, "no common zip writer sets these bits"};
    case AnomalyKind::kStoredSizeMismatch:
      return {"zip.size-mismatch", Severity::kMedium, false,
              "readers disagree on how many bytes the member has"};
    case AnomalyKind::kOverlap:
      return {"zip.overlap", Severity::kHigh, false,
              "overlapping members hide data or build zip bombs"};
    case AnomalyKind::kPrefixData:
      return {"zip.prefix-data", Severity::kLow, false,
              "torch.load only opens files that start with a zip header"};
    case AnomalyKind::kUnaccountedData:
      return {"zip.unaccounted-data", Severity::kMedium, false,
              "bytes that belong to no member can hide content from this scan"};
    case AnomalyKind::kTrailingData:
      return {"zip.trailing-data", Severity::kMedium, false,
              "bytes after the archive belong to no member"};
    case AnomalyKind::kOffsetShift:
      return {"zip.offset-shift", Severity::kMedium, false,
              "zipfile adjusts the offsets while miniz (PyTorch) does not"};
    case AnomalyKind::kEntryCountMismatch:
      return {"zip.entry-count-mismatch", Severity::kHigh, false,
              "readers that trust the count (miniz) and readers that walk the directory "
              "(zipfile) see different members"};
    case AnomalyKind::kZip64Inconsistent:
      return {"zip.zip64-inconsistent", Severity::kMedium, false,
              "ZIP64 and 32-bit values disagree, so readers may see different archives"};
    case AnomalyKind::kBadLocalHeader:
      return {"zip.bad-local-header", Severity::kMedium, true, "the member cannot be read"};
    case AnomalyKind::kOutOfBounds:
      return {"zip.truncated", Severity::kMedium, true, "the member cannot be read"};
    case AnomalyKind::kPathTraversal:
      return {"zip.path-traversal", Severity::kHigh, false,
              "extracting the archive writes outside the target folder (zip-slip)"};
    case AnomalyKind::kBadName:
      return {"zip.bad-name", Severity::kMedium, false,
              "such names display differently in different tools"};
    case AnomalyKind::kSymlink:
      return {"zip.symlink", Severity::kMedium, false,
              "extracting a symbolic link can redirect later writes outside the target folder"};
    case AnomalyKind::kUnsupportedMethod:
      return {"zip.unsupported-method", Severity::kMedium, true,
              "neither PyTorch nor this scanner can read it; its content is not vetted"};
    case AnomalyKind::kEncryptionFlag:
      break;  // decided per member, once we know whether the data is really encrypted
  }
  return {"zip.anomaly", Severity::kMedium, false, ""};
}

// How a member is treated, following what the loader of this kind of archive reads.
enum class Role { kContent, kStorage, kTorchScriptCode };

struct Layout {
  std::string format = "zip";
  std::string prefix;  // PyTorch's archive folder ("archive/"), taken from the first entry
  bool torch = false;

  Role RoleOf(const std::string& name) const {
    if (!torch || name.compare(0, prefix.size(), prefix) != 0) return Role::kContent;
    std::string_view rest = std::string_view(name).substr(prefix.size());
    for (std::string_view dir : {"data/", "constants/"}) {
      // Tensor storages: raw bytes that torch copies into memory and never interprets.
      if (rest.substr(0, dir.size()) == dir && rest.size() > dir.size() &&
          rest.find('/', dir.size()) == std::string_view::npos)
        return Role::kStorage;
    }
    if (rest.substr(0, 5) == "code/" && rest.size() > 3 && rest.substr(rest.size() - 3) == ".py")
      return Role::kTorchScriptCode;
    return Role::kContent;
  }
};

Layout Classify(const zip::Archive& a) {
  Layout l;
  if (a.entries.empty()) return l;
  // PyTorchStreamReader takes the archive folder from the first central-directory entry.
  const std::string& first = a.entries.front().name;
  std::size_t slash = first.find('/');
  l.prefix = slash == std::string::npos ? "" : first.substr(0, slash + 1);
  bool has_data_pkl = false, has_constants = false, has_code = false;
  bool all_npy = true;
  for (const auto& e : a.entries) {
    if (e.name == l.prefix + "data.pkl") has_data_pkl = true;
    if (e.name == l.prefix + "constants.pkl") has_constants = true;
    if (e.name.compare(0, l.prefix.size() + 5, l.prefix + "code/") == 0) has_code = true;
    if (!e.IsDirectory() && !e.name.ends_with(".npy")) all_npy = false;
  }
  // PyTorch refuses archives whose first entry is not inside a folder.
  if (l.prefix.empty()) {
    if (all_npy) l.format = "npz";
    return l;
  }
  if (has_constants || has_code) {
    l.format = "torchscript";
    l.torch = true;
  } else if (has_data_pkl) {
    l.format = "pytorch-zip";
    l.torch = true;
  } else if (all_npy) {
    l.format = "npz";
  }
  return l;
}

}  // namespace

void AnalyzeZip(Scanner& s, const Target& t) {
  zip::ParseLimits parse_limits;
  parse_limits.max_entries = s.limits().max_members;
  auto parsed = zip::Parse(t.data, parse_limits);
  if (!parsed.has_value()) {
    bool limit = parsed.error().code() == StatusCode::kLimitExceeded;
    s.Incomplete(t, limit ? "archive.limit" : "zip.corrupt",
                 parsed.error().message() + ": the archive's content could not be vetted", 0);
    return;
  }
  const zip::Archive& a = *parsed;
  const Layout layout = Classify(a);
  if (t.depth == 0) s.RefineFormat("zip", layout.format);

  std::vector<bool> encryption_flag(a.entries.size(), false);
  std::vector<bool> unreadable(a.entries.size(), false);
  for (const zip::Anomaly& an : a.anomalies) {
    if (an.kind == AnomalyKind::kEncryptionFlag) {
      encryption_flag[static_cast<std::size_t>(an.entry)] = true;
      continue;
    }
    Rule rule = RuleFor(an.kind);
    if (rule.incomplete && an.entry >= 0) unreadable[static_cast<std::size_t>(an.entry)] = true;
    std::string message = an.detail + (rule.why[0] ? std::string(": ") + rule.why : "");
    if (rule.incomplete) {
      s.Incomplete(t, rule.id, std::move(message), an.offset, rule.severity);
    } else {
      s.Add(t, rule.id, rule.severity, std::move(message), an.offset);
    }
  }

  // Local records that the central directory does not list: streaming readers (which walk local
  // headers) see them, PyTorch and zipfile do not. They are scanned too.
  std::vector<zip::Entry> hidden;
  constexpr std::size_t kMaxHiddenPerRegion = 16;
  for (const zip::Anomaly& an : a.anomalies) {
    if (an.kind != AnomalyKind::kUnaccountedData && an.kind != AnomalyKind::kTrailingData) continue;
    std::uint64_t end = std::min<std::uint64_t>(an.offset + an.length, t.data.size());
    std::size_t found = 0;
    const std::string_view region = core::AsStringView(t.data).substr(0, end);
    for (std::uint64_t at = an.offset; found < kMaxHiddenPerRegion; ++at) {
      at = region.find(std::string_view("PK\x03\x04", 4), at);
      if (at == std::string_view::npos) break;
      auto local = zip::ReadLocalEntry(t.data, at);
      if (!local.has_value() || local->record_end > end) continue;
      ++found;
      s.Add(t, "zip.hidden-entry", Severity::kMedium,
            "local record " + core::QuoteName(local->name) +
                " is not listed in the central directory: streaming unzip tools extract it, "
                "PyTorch and zipfile do not",
            at);
      at = local->record_end - 1;
      hidden.push_back(std::move(*local));
    }
  }

  zip::ExtractOptions opt;
  opt.max_bytes = s.limits().max_member_bytes;
  opt.max_ratio = s.limits().max_expansion_ratio;
  // Per-archive expansion cap on top of the per-member one, so that many members sharing the
  // same compressed bytes (overlapping-entry bombs) cannot multiply the output.
  std::uint64_t archive_cap = 0;
  if (!core::CheckedMul(t.data.size(), s.limits().max_expansion_ratio, &archive_cap))
    archive_cap = UINT64_MAX;
  archive_cap = std::max<std::uint64_t>(archive_cap, opt.ratio_floor);
  std::uint64_t archive_out = 0;
  bool budget_spent = false;
  opt.charge = [&](std::uint64_t n) {
    if (budget_spent) return false;
    archive_out += n;
    if (archive_out > archive_cap) {
      s.Incomplete(t, "archive.limit",
                   "members inflate to more than " +
                       std::to_string(s.limits().max_expansion_ratio) +
                       "x the archive size (possible zip bomb); the rest was not vetted");
      budget_spent = true;
    } else if (!s.ChargeDecompressed(t, n)) {
      budget_spent = true;
    }
    return !budget_spent;
  };

  std::uint64_t storages = 0, code_files = 0;
  constexpr std::uint64_t kMaxCodeFindings = 32;
  constexpr std::uint64_t kMaxCrcStoredBytes = 256u << 20;
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    const zip::Entry& e = a.entries[i];
    if (unreadable[i] || !e.readable) continue;
    if (e.IsDirectory() && e.compressed_size == 0) continue;
    if (budget_spent) {
      s.Incomplete(t, "archive.limit",
                   "decompression budget spent: remaining members were not vetted",
                   e.local_header_offset);
      break;
    }
    Role role = layout.RoleOf(e.name);
    const bool flagged_encrypted = encryption_flag[i];
    if (role == Role::kStorage && !flagged_encrypted && e.method == zip::kMethodStored) {
      ++storages;
      continue;
    }
    // CRC is integrity, not safety (PyTorch ignores it): verify it for members of ordinary size,
    // but do not make a multi-gigabyte stored member cost a second full pass over its pages.
    opt.verify_crc = flagged_encrypted || e.method != zip::kMethodStored ||
                     e.compressed_size <= kMaxCrcStoredBytes;
    auto member = zip::Extract(t.data, e, opt);
    if (flagged_encrypted) {
      // PyTorch ignores the encryption bits; the data decides. Plaintext under an encryption
      // flag is a trick to make zipfile-based scanners skip the member.
      bool plaintext = member.has_value() && member->crc_ok && member->size_ok;
      if (!plaintext) {
        s.Incomplete(t, "zip.encrypted",
                     core::QuoteName(e.name) + " is encrypted: its content cannot be vetted",
                     e.local_header_offset);
        continue;
      }
      s.Add(t, "zip.flag-bits", Severity::kHigh,
            core::QuoteName(e.name) +
                " carries encryption flag bits but its data is plaintext: zipfile-based "
                "scanners skip it while PyTorch reads it (CVE-2025-1945 technique)",
            e.local_header_offset);
    }
    if (!member.has_value()) {
      bool limit = member.error().code() == StatusCode::kLimitExceeded;
      if (limit && budget_spent) continue;  // ChargeDecompressed already reported it
      s.Incomplete(
          t, limit ? "archive.limit" : "zip.unreadable-member",
          member.error().message() + (limit ? " (possible zip bomb); the member was not vetted"
                                            : "; the member was not vetted"),
          e.data_offset);
      continue;
    }
    if (!member->crc_ok) {
      s.Add(t, "zip.bad-crc", Severity::kMedium,
            core::QuoteName(e.name) +
                ": CRC-32 of the data does not match the declared value (zipfile "
                "rejects the member, PyTorch reads it; CVE-2025-10156 technique)",
            e.data_offset);
    }
    if (!member->size_ok) {
      s.Add(t, "zip.size-mismatch", Severity::kMedium,
            core::QuoteName(e.name) + ": the deflate stream does not produce the declared " +
                std::to_string(e.uncompressed_size) + " bytes",
            e.data_offset);
    }
    if (role == Role::kStorage) {
      ++storages;
      continue;
    }
    if (role == Role::kTorchScriptCode) {
      if (++code_files <= kMaxCodeFindings) {
        s.Add(t, "torchscript.code", Severity::kMedium,
              "TorchScript code file " + core::QuoteName(e.name) + " (" +
                  std::to_string(member->data.size()) +
                  " bytes): torch.jit.load compiles and runs it; review it before loading",
              e.data_offset);
      }
      continue;
    }
    if (layout.torch && e.name == layout.prefix + "data.pkl") {
      // The storages data.pkl declares are checked against their records' sizes.
      Scanner::TorchRecords records;
      records.depth = t.depth + 1;
      const std::string data_dir = layout.prefix + "data/";
      for (const zip::Entry& r : a.entries) {
        if (r.name.size() > data_dir.size() && r.name.compare(0, data_dir.size(), data_dir) == 0) {
          records.sizes[r.name.substr(data_dir.size())] = r.uncompressed_size;
        }
      }
      // Restored afterwards: this zip may itself be bytes inside an outer archive's data.pkl.
      const Scanner::TorchRecords* outer = s.torch_records();
      s.SetTorchRecords(&records);
      // torch.load unpickles data.pkl whatever its first bytes look like: when they look like
      // something else, the member is scanned as that too (other readers may take it so).
      if (DetectFormat(member->data, e.name) != Format::kPickle)
        s.ScanChild(t, member->data, e.name);
      s.ScanChildAsPickle(t, member->data, e.name);
      s.SetTorchRecords(outer);
      continue;
    }
    s.ScanChild(t, member->data, e.name);
  }
  for (const zip::Entry& e : hidden) {
    if (budget_spent) break;
    opt.verify_crc = true;
    auto member = zip::Extract(t.data, e, opt);
    if (!member.has_value()) {
      s.Incomplete(t, "zip.unreadable-member",
                   member.error().message() + "; the hidden record was not vetted", e.data_offset);
      continue;
    }
    s.ScanChild(t, member->data, e.name);
  }
  if (code_files > kMaxCodeFindings) {
    s.Add(t, "torchscript.code", Severity::kMedium,
          std::to_string(code_files - kMaxCodeFindings) + " more TorchScript code files");
  }
  (void)storages;
}

}  // namespace airlock::scan::internal
