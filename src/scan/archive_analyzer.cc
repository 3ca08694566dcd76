// tar, gzip/xz/bzip2 (compressed tars or bare compressed streams such as model.pkl.gz) and 7z,
// read from memory with libarchive. Every regular member goes through Scanner::ScanChild. Caps:
// member count, member size, expansion ratio and the file's decompression budget; any cap hit,
// encrypted member or read error makes the scan inconclusive. Members of an uncompressed tar are
// passed as views into the input (no copy), so a large legacy PyTorch tar stays mapped, not
// loaded. Only compression filters built into libarchive are enabled: never an external program.
#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "formats/zip.h"
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {
namespace {

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Name for the single member of a bare compressed stream: "model.pkl.gz" -> "model.pkl".
std::string RawMemberName(std::string_view outer) {
  for (std::string_view ext : {".gz", ".xz", ".bz2", ".gzip", ".tgz", ".z"}) {
    if (EndsWith(outer, ext) && outer.size() > ext.size()) {
      return std::string(outer.substr(0, outer.size() - ext.size()));
    }
  }
  return "data";
}

std::string Quote(std::string_view name) {
  std::string out = "'";
  for (char c : name.substr(0, 200)) {
    auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out + (name.size() > 200 ? "...'" : "'");
}

// Collects one member's bytes: a view into the input while libarchive hands out contiguous
// blocks of it (uncompressed tar), else a bounded copy.
class MemberBuffer {
 public:
  MemberBuffer(std::span<const std::byte> input, std::uint64_t cap) : input_(input), cap_(cap) {}

  // False when the member would exceed the cap.
  bool Append(const void* block, std::size_t len, std::int64_t offset) {
    const auto* p = static_cast<const std::byte*>(block);
    std::uint64_t at = offset < 0 ? size_ : static_cast<std::uint64_t>(offset);
    std::uint64_t end = 0;
    if (!core::CheckedAdd(at, len, &end) || end > cap_) return false;
    if (len == 0 && at == size_) return true;
    bool in_input = p >= input_.data() && p + len <= input_.data() + input_.size();
    if (!copying_ && in_input && at == size_ && (size_ == 0 || p == view_begin_ + size_)) {
      if (size_ == 0) view_begin_ = p;
      size_ = end;
      return true;
    }
    if (!copying_) {
      copying_ = true;
      owned_.assign(view_begin_, view_begin_ + size_);
    }
    if (at > owned_.size()) owned_.resize(static_cast<std::size_t>(at));  // sparse hole
    if (at < owned_.size()) owned_.resize(static_cast<std::size_t>(at));  // rewrite (unusual)
    owned_.insert(owned_.end(), p, p + len);
    size_ = owned_.size();
    return true;
  }
  std::span<const std::byte> bytes() const {
    if (copying_) return {owned_.data(), owned_.size()};
    return {view_begin_, static_cast<std::size_t>(size_)};
  }

 private:
  std::span<const std::byte> input_;
  std::uint64_t cap_;
  bool copying_ = false;
  const std::byte* view_begin_ = nullptr;
  std::uint64_t size_ = 0;
  std::vector<std::byte> owned_;
};

}  // namespace

void AnalyzeArchive(Scanner& s, const Target& t, Format f) {
  std::unique_ptr<archive, ArchiveDeleter> a(archive_read_new());
  if (!a) {
    s.Incomplete(t, "archive.error", "libarchive could not be initialised", 0);
    return;
  }
  const bool compressed = f == Format::kGzip || f == Format::kXz || f == Format::kBzip2;
  switch (f) {
    case Format::kTar:
      archive_read_support_format_tar(a.get());
      break;
    case Format::kSevenZip:
      archive_read_support_format_7zip(a.get());
      break;
    default:
      archive_read_support_filter_gzip(a.get());
      archive_read_support_filter_bzip2(a.get());
      archive_read_support_filter_xz(a.get());
      archive_read_support_format_tar(a.get());
      archive_read_support_format_raw(a.get());  // bare stream: one member, bids lowest
      break;
  }
  if (archive_read_open_memory(a.get(), t.data.data(), t.data.size()) != ARCHIVE_OK) {
    s.Incomplete(
        t, "archive.corrupt",
        std::string("cannot open ") + std::string(FormatName(f)) + " data: " +
            (archive_error_string(a.get()) ? archive_error_string(a.get()) : "unknown error"),
        0);
    return;
  }

  const ScanLimits& lim = s.limits();
  std::uint64_t ratio_cap = 0;
  if (!core::CheckedMul(t.data.size(), lim.max_expansion_ratio, &ratio_cap)) ratio_cap = UINT64_MAX;
  ratio_cap = std::max<std::uint64_t>(ratio_cap, 1u << 20);
  const bool inflates = f != Format::kTar;  // 7z and compressed streams decompress
  std::uint64_t total_out = 0, members = 0;
  bool raw_format = false, saw_pickle = false, saw_storages = false, saw_tensors = false;
  bool stop = false;

  archive_entry* entry = nullptr;
  int rc = ARCHIVE_OK;
  while (!stop &&
         ((rc = archive_read_next_header(a.get(), &entry)) == ARCHIVE_OK || rc == ARCHIVE_WARN)) {
    if (archive_format(a.get()) == ARCHIVE_FORMAT_RAW) raw_format = true;
    if (members == 0 && compressed && !raw_format && t.depth == 0) {
      s.RefineFormat(FormatName(f), "tar." + std::string(f == Format::kGzip ? "gz"
                                                         : f == Format::kXz ? "xz"
                                                                            : "bz2"));
    }
    const char* raw_name = archive_entry_pathname(entry);
    std::string name = raw_format ? RawMemberName(t.name) : (raw_name ? raw_name : "");
    if (++members > lim.max_members) {
      s.Incomplete(t, "archive.limit",
                   "more than " + std::to_string(lim.max_members) + " archive members");
      break;
    }
    if (!raw_format && formats::zip::IsTraversalName(name)) {
      s.Add(t, "archive.path-traversal", Severity::kHigh,
            Quote(name) + " would be written outside the extraction folder (path traversal)");
    }
    if (archive_entry_is_encrypted(entry)) {
      s.Incomplete(t, "archive.encrypted",
                   Quote(name) + " is encrypted: its content cannot be vetted");
      continue;
    }
    const char* link = archive_entry_symlink(entry);
    const char* hard = archive_entry_hardlink(entry);
    if (link || hard) {
      std::string target = link ? link : hard;
      bool escapes = formats::zip::IsTraversalName(target);
      s.Add(t, "archive.link", escapes ? Severity::kHigh : Severity::kMedium,
            Quote(name) + " is a " + (link ? "symbolic" : "hard") + " link to " + Quote(target) +
                (escapes ? ", outside the extraction folder" : "") +
                ": extracting it can redirect later writes or reads");
      continue;
    }
    auto type = archive_entry_filetype(entry);
    if (type == AE_IFDIR) continue;
    // 7z entries without Unix attributes report type 0: plain files.
    if (type != AE_IFREG && type != 0 && !raw_format) {
      s.Add(t, "archive.special-file", Severity::kMedium,
            Quote(name) + " is a device, FIFO or socket entry: not something a model ships");
      continue;
    }
    if (archive_entry_size_is_set(entry) && archive_entry_size(entry) >= 0 &&
        static_cast<std::uint64_t>(archive_entry_size(entry)) > lim.max_member_bytes) {
      s.Incomplete(t, "archive.limit",
                   Quote(name) + " declares " + std::to_string(archive_entry_size(entry)) +
                       " bytes, over the member limit of " + std::to_string(lim.max_member_bytes));
      continue;
    }

    MemberBuffer buffer(t.data, lim.max_member_bytes);
    const void* block = nullptr;
    std::size_t len = 0;
    la_int64_t offset = 0;
    int drc = ARCHIVE_OK;
    bool member_ok = true;
    while ((drc = archive_read_data_block(a.get(), &block, &len, &offset)) == ARCHIVE_OK ||
           drc == ARCHIVE_WARN) {
      if (!buffer.Append(block, len, offset)) {
        s.Incomplete(t, "archive.limit",
                     Quote(name) + " is larger than the member limit of " +
                         std::to_string(lim.max_member_bytes) +
                         " bytes (possible decompression bomb)");
        member_ok = false;
        break;
      }
      if (inflates) {
        total_out += len;
        if (total_out > ratio_cap) {
          s.Incomplete(
              t, "archive.limit",
              "decompressed output exceeds " + std::to_string(lim.max_expansion_ratio) +
                  "x the archive size (possible decompression bomb); the rest was not vetted");
          member_ok = false;
          stop = true;
          break;
        }
        if (!s.ChargeDecompressed(t, len)) {
          member_ok = false;
          stop = true;
          break;
        }
      }
    }
    if (member_ok && drc != ARCHIVE_EOF) {
      const char* err = archive_error_string(a.get());
      s.Incomplete(t, "archive.corrupt",
                   "cannot read " + Quote(name) + ": " + (err ? err : "read error"));
      stop = drc == ARCHIVE_FATAL;
      continue;
    }
    if (!member_ok) continue;
    if (f == Format::kTar && t.depth == 0) {
      saw_pickle |= name == "pickle";
      saw_storages |= name == "storages";
      saw_tensors |= name == "tensors";
    }
    s.ScanChild(t, buffer.bytes(), name);
  }
  if (rc != ARCHIVE_EOF && rc != ARCHIVE_OK && rc != ARCHIVE_WARN && !stop) {
    const char* err = archive_error_string(a.get());
    s.Incomplete(t, "archive.corrupt",
                 std::string(FormatName(f)) + " data is damaged after " + std::to_string(members) +
                     " members: " + (err ? err : "read error"));
  }
  if (members == 0 && rc == ARCHIVE_EOF && !compressed) {
    s.Add(t, "archive.empty", Severity::kInfo, "archive has no members");
  }
  if (saw_pickle && (saw_storages || saw_tensors)) {
    // torch.load's legacy tar format: 'storages' and 'tensors' interleave pickles with raw
    // tensor bytes, and torch unpickles each of those records (weights_only refuses the format).
    s.RefineFormat("tar", "pytorch-legacy-tar");
    s.Incomplete(t, "torch.legacy-tar",
                 "legacy PyTorch tar checkpoint: the pickled records interleaved with raw storage "
                 "bytes in 'storages'/'tensors' are not walked individually; only each member's "
                 "leading pickle was analyzed",
                 std::nullopt, Severity::kLow);
  }
}

}  // namespace airlock::scan::internal
