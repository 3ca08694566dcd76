// tar, gzip/xz/bzip2 (compressed tars or bare compressed streams such as model.pkl.gz) and 7z,
// read from memory with libarchive. Every regular member goes through Scanner::ScanChild. Caps:
// member count, member size, expansion ratio and the file's decompression budget; any cap hit,
// encrypted member or read error makes the scan inconclusive. Members of an uncompressed tar are
// passed as views into the input (no copy), so a large legacy PyTorch tar stays mapped, not
// loaded. Only compression filters built into libarchive are enabled: never an external program.
#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/text.h"
#include "formats/zip.h"
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {
namespace {

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};

// Name for the single member of a bare compressed stream: "model.pkl.gz" -> "model.pkl".
std::string RawMemberName(std::string_view outer) {
  for (std::string_view ext : {".gz", ".xz", ".bz2", ".gzip", ".tgz", ".z"}) {
    if (outer.ends_with(ext) && outer.size() > ext.size()) {
      return std::string(outer.substr(0, outer.size() - ext.size()));
    }
  }
  return "data";
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

// --- Legacy PyTorch tar checkpoints (torch.save before 0.4 / _legacy_save with tarfile) ---
// torch.load reads 'storages' as: pickle(count), then per storage pickle((key, location,
// storage_type)) followed by int64 element count and the raw elements, then pickle(views); and
// 'tensors' as: pickle(count), then per tensor pickle((key, storage_id, type)) followed by int32
// ndim, 4 pad bytes, ndim int64 sizes, ndim int64 strides, int64 offset. Every pickle in there
// is unpickled by torch (weights_only refuses the format), so each is analyzed on its own.

struct PickleFacts {
  std::optional<std::int64_t> last_int;
  std::string last_global;  // "module.name" of the last GLOBAL / STACK_GLOBAL
};

// Length of the pickle at the start of `d` (through its STOP opcode), by walking opcode
// arguments only; nullopt on an unknown opcode or truncation.
std::optional<std::size_t> PickleLength(std::span<const std::byte> d, PickleFacts* facts) {
  core::ByteReader r(d);
  std::string recent[2];
  auto remember = [&](std::string_view v) {
    recent[0] = recent[1];
    recent[1] = std::string(v.substr(0, 256));
  };
  auto line = [&]() -> std::optional<std::string_view> { return r.Until('\n'); };
  auto counted = [&](std::optional<std::uint64_t> n, bool text) -> bool {
    if (!n) return false;
    auto v = r.String(*n);
    if (v && text) remember(*v);
    return v.has_value();
  };
  auto u64 = [&]() -> std::optional<std::uint64_t> { return r.U64(); };
  while (true) {
    auto op = r.U8();
    if (!op) return std::nullopt;
    bool ok = true;
    switch (*op) {
      case '.':
        return r.offset();
      // No argument.
      case '(':
      case ')':
      case ']':
      case '}':
      case '0':
      case '1':
      case '2':
      case 'a':
      case 'b':
      case 'd':
      case 'e':
      case 'l':
      case 'o':
      case 's':
      case 't':
      case 'u':
      case 'N':
      case 'R':
      case 'Q':
      case 0x81:
      case 0x85:
      case 0x86:
      case 0x87:
      case 0x88:
      case 0x89:
      case 0x8f:
      case 0x90:
      case 0x91:
      case 0x92:
      case 0x94:
      case 0x97:
      case 0x98:
        break;
      case 0x93:  // STACK_GLOBAL
        facts->last_global = recent[0] + "." + recent[1];
        break;
      case 'K': {
        auto v = r.U8();
        ok = v.has_value();
        if (ok) facts->last_int = *v;
        break;
      }
      case 'M': {
        auto v = r.U16();
        ok = v.has_value();
        if (ok) facts->last_int = *v;
        break;
      }
      case 'J': {
        auto v = r.U32();
        ok = v.has_value();
        if (ok) facts->last_int = static_cast<std::int32_t>(*v);
        break;
      }
      case 'q':
      case 'h':
      case 0x80:
      case 0x82:
        ok = r.Skip(1);
        break;
      case 0x83:
        ok = r.Skip(2);
        break;
      case 'r':
      case 'j':
      case 0x84:
        ok = r.Skip(4);
        break;
      case 'G':
        ok = r.Skip(8);
        break;
      case 0x95:
        ok = u64().has_value();
        break;  // FRAME: a length prefix, opcodes follow
      case 'I':
      case 'L': {
        auto v = line();
        ok = v.has_value();
        if (ok) {
          std::string_view t = *v;
          if (!t.empty() && t.back() == 'L') t.remove_suffix(1);
          std::int64_t n = 0;
          bool digits = !t.empty();
          for (char c : t) digits &= c >= '0' && c <= '9';
          if (digits && t.size() < 18) {
            for (char c : t) n = n * 10 + (c - '0');
            facts->last_int = n;
          }
        }
        break;
      }
      case 'F':
      case 'P':
      case 'g':
      case 'p':
        ok = line().has_value();
        break;
      case 'S':
      case 'V': {
        auto v = line();
        ok = v.has_value();
        if (ok) remember(*v);
        break;
      }
      case 'c':
      case 'i': {
        auto m = line();
        auto n = m ? line() : std::nullopt;
        ok = n.has_value();
        if (ok)
          facts->last_global =
              std::string(m->substr(0, 256)) + "." + std::string(n->substr(0, 256));
        break;
      }
      case 'U':
      case 0x8c:
        ok = counted(r.U8(), true);
        break;
      case 'C':
        ok = counted(r.U8(), false);
        break;
      case 'T':
      case 'X':
        ok = counted(r.U32(), true);
        break;
      case 'B':
        ok = counted(r.U32(), false);
        break;
      case 0x8d:
        ok = counted(u64(), true);
        break;
      case 0x8e:
      case 0x96:
        ok = counted(u64(), false);
        break;
      case 0x8a:
        ok = counted(r.U8(), false);
        break;
      case 0x8b:
        ok = counted(r.U32(), false);
        break;
      default:
        return std::nullopt;
    }
    if (!ok) return std::nullopt;
  }
}

std::optional<std::uint64_t> ElementSize(std::string_view storage_type) {
  std::size_t dot = storage_type.rfind('.');
  std::string_view cls =
      dot == std::string_view::npos ? storage_type : storage_type.substr(dot + 1);
  static const std::pair<std::string_view, std::uint64_t> kSizes[] = {{"DoubleStorage", 8},
                                                                      {"FloatStorage", 4},
                                                                      {"HalfStorage", 2},
                                                                      {"LongStorage", 8},
                                                                      {"IntStorage", 4},
                                                                      {"ShortStorage", 2},
                                                                      {"CharStorage", 1},
                                                                      {"ByteStorage", 1},
                                                                      {"BoolStorage", 1},
                                                                      {"BFloat16Storage", 2},
                                                                      {"ComplexDoubleStorage", 16},
                                                                      {"ComplexFloatStorage", 8},
                                                                      {"QUInt8Storage", 1},
                                                                      {"QInt8Storage", 1},
                                                                      {"QInt32Storage", 4},
                                                                      {"QUInt4x2Storage", 1},
                                                                      {"QUInt2x4Storage", 1}};
  for (const auto& [name, size] : kSizes)
    if (cls == name) return size;
  return std::nullopt;
}

// Analyzes one embedded pickle record as the pickle analyzer's child.
void ScanRecord(Scanner& s, const Target& member, std::span<const std::byte> bytes,
                std::uint64_t at) {
  if (member.depth + 1 > s.limits().max_depth) {
    s.Incomplete(member, "scan.limit.depth",
                 "nesting deeper than " + std::to_string(s.limits().max_depth) + " levels");
    return;
  }
  Target child;
  child.data = bytes;
  child.name = "record.pkl";
  child.depth = member.depth + 1;
  child.member = member.member + "!/[pickle @" + std::to_string(at) + "]";
  AnalyzePickle(s, child);
}

// Walks a legacy 'storages' or 'tensors' member; false (after an incomplete finding) when its
// layout cannot be followed.
bool WalkLegacyRecords(Scanner& s, const Target& member, bool storages) {
  constexpr std::uint64_t kMaxRecords = 10'000'000;
  const auto d = member.data;
  std::uint64_t pos = 0;
  auto fail = [&](const std::string& why) {
    s.Incomplete(member, "torch.legacy-tar",
                 "cannot follow the legacy PyTorch record layout at byte " + std::to_string(pos) +
                     ": " + why + "; the records after it were not vetted",
                 pos);
    return false;
  };
  auto next_pickle = [&](PickleFacts* facts) -> bool {
    auto len = PickleLength(d.subspan(static_cast<std::size_t>(pos)), facts);
    if (!len) return false;
    ScanRecord(s, member, d.subspan(static_cast<std::size_t>(pos), *len), pos);
    pos += *len;
    return true;
  };
  PickleFacts head;
  if (!next_pickle(&head)) return fail("no record-count pickle");
  if (!head.last_int || *head.last_int < 0 ||
      static_cast<std::uint64_t>(*head.last_int) > kMaxRecords)
    return fail("record count is not a plausible integer");
  const std::uint64_t count = static_cast<std::uint64_t>(*head.last_int);
  for (std::uint64_t i = 0; i < count; ++i) {
    PickleFacts facts;
    if (!next_pickle(&facts)) return fail("record " + std::to_string(i) + " is not a pickle");
    core::ByteReader r(d, static_cast<std::size_t>(pos));
    if (storages) {
      auto elem = ElementSize(facts.last_global);
      if (!elem) return fail("unknown storage type '" + facts.last_global + "'");
      auto numel = r.U64();
      std::uint64_t bytes = 0;
      if (!numel || !core::CheckedMul(*numel, *elem, &bytes) || !r.Skip(bytes))
        return fail("storage data runs past the member");
    } else {
      auto ndim = r.U32();
      if (!ndim || *ndim > 64 || !r.Skip(4) || !r.Skip(16ull * *ndim + 8))
        return fail("tensor header runs past the member");
    }
    pos = r.offset();
  }
  if (storages) {
    PickleFacts views;
    if (!next_pickle(&views)) return fail("no storage-views pickle");
  }
  if (pos != d.size()) {
    s.Add(member, "torch.legacy-trailing-data", Severity::kLow,
          std::to_string(d.size() - pos) + " bytes after the last record (never read by torch)",
          pos);
  }
  return true;
}

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
            core::QuoteName(name) +
                " would be written outside the extraction folder (path traversal)");
    }
    if (archive_entry_is_encrypted(entry)) {
      s.Incomplete(t, "archive.encrypted",
                   core::QuoteName(name) + " is encrypted: its content cannot be vetted");
      continue;
    }
    const char* link = archive_entry_symlink(entry);
    const char* hard = archive_entry_hardlink(entry);
    if (link || hard) {
      std::string target = link ? link : hard;
      bool escapes = formats::zip::IsTraversalName(target);
      s.Add(t, "archive.link", escapes ? Severity::kHigh : Severity::kMedium,
            core::QuoteName(name) + " is a " + (link ? "symbolic" : "hard") + " link to " +
                core::QuoteName(target) + (escapes ? ", outside the extraction folder" : "") +
                ": extracting it can redirect later writes or reads");
      continue;
    }
    auto type = archive_entry_filetype(entry);
    if (type == AE_IFDIR) continue;
    // 7z entries without Unix attributes report type 0: plain files.
    if (type != AE_IFREG && type != 0 && !raw_format) {
      s.Add(t, "archive.special-file", Severity::kMedium,
            core::QuoteName(name) +
                " is a device, FIFO or socket entry: not something a model ships");
      continue;
    }
    if (archive_entry_size_is_set(entry) && archive_entry_size(entry) >= 0 &&
        static_cast<std::uint64_t>(archive_entry_size(entry)) > lim.max_member_bytes) {
      s.Incomplete(t, "archive.limit",
                   core::QuoteName(name) + " declares " +
                       std::to_string(archive_entry_size(entry)) +
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
                     core::QuoteName(name) + " is larger than the member limit of " +
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
                   "cannot read " + core::QuoteName(name) + ": " + (err ? err : "read error"));
      stop = drc == ARCHIVE_FATAL;
      continue;
    }
    if (!member_ok) continue;
    if (f == Format::kTar && t.depth == 0) {
      saw_pickle |= name == "pickle";
      saw_storages |= name == "storages";
      saw_tensors |= name == "tensors";
    }
    if (f == Format::kTar && t.depth + 1 <= lim.max_depth &&
        (name == "storages" || name == "tensors")) {
      // Legacy PyTorch tar records: walked so that every embedded pickle is analyzed.
      Target records;
      records.data = buffer.bytes();
      records.name = name;
      records.depth = t.depth + 1;
      records.member = t.member.empty() ? name : t.member + "!/" + name;
      if (WalkLegacyRecords(s, records, name == "storages")) continue;
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
    // torch.load's legacy tar format (sys_info, pickle, storages, tensors).
    s.RefineFormat("tar", "pytorch-legacy-tar");
  }
}

}  // namespace airlock::scan::internal
