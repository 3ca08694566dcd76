#include "formats/zip.h"

#include <zlib.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "core/bytes.h"

namespace airlock::formats::zip {
namespace {

using core::ByteReader;

constexpr std::uint32_t kLocalSig = 0x04034b50;
constexpr std::uint32_t kCentralSig = 0x02014b50;
constexpr std::uint32_t kEocdSig = 0x06054b50;
constexpr std::uint32_t kZip64EocdSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::uint32_t kDescriptorSig = 0x08074b50;
constexpr std::size_t kEocdSize = 22;
constexpr std::size_t kZip64LocatorSize = 20;
constexpr std::size_t kZip64EocdMinSize = 56;
constexpr std::size_t kCentralSize = 46;
constexpr std::size_t kLocalSize = 30;
constexpr std::uint16_t kKnownFlags = 0x0001 | 0x0002 | 0x0004 | kFlagDataDescriptor |
                                      kFlagPatched | kFlagStrongEncryption | kFlagUtf8 |
                                      kFlagMaskedHeaders;

// The ZIP64 extra field (id 0x0001) of a local header: in local headers both sizes are present
// when either is ZIP64. Leaves the sizes unchanged when the field is absent or short.
void ReadLocalZip64Sizes(std::span<const std::byte> extra, std::uint64_t* uncompressed,
                         std::uint64_t* compressed) {
  ByteReader x(extra);
  while (x.remaining() >= 4) {
    std::uint16_t id = *x.U16(), size = *x.U16();
    auto body = x.Bytes(size);
    if (!body) break;
    if (id != 0x0001) continue;
    ByteReader z(*body);
    auto u = z.U64(), c = z.U64();
    if (u && c) {
      *uncompressed = *u;
      *compressed = *c;
    }
    break;
  }
}

std::string Hex(std::uint64_t v) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  do {
    s.insert(s.begin(), kDigits[v & 0xf]);
    v >>= 4;
  } while (v != 0);
  return "0x" + s;
}

// Printable rendering of an untrusted name for messages.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += "0123456789abcdef"[u >> 4];
      out += "0123456789abcdef"[u & 0xf];
    } else {
      out += c;
    }
  }
  if (s.size() > 200) out += "...";
  return out;
}

std::uint32_t ReadU32At(std::span<const std::byte> d, std::size_t off) {
  ByteReader r(d, off);
  return r.U32().value_or(0);
}

class Parser {
 public:
  Parser(std::span<const std::byte> data, const ParseLimits& limits)
      : data_(data), limits_(limits) {}

  Result<Archive> Run();

 private:
  void Note(AnomalyKind kind, int entry, std::uint64_t offset, std::string detail,
            std::uint64_t length = 0) {
    if (archive_.anomalies.size() < limits_.max_anomalies) {
      archive_.anomalies.push_back({kind, entry, offset, length, std::move(detail)});
    } else {
      ++dropped_;
    }
  }
  std::optional<std::size_t> FindEocd() const;
  Status ReadEnd();
  Status ReadCentral();
  void ReadLocal(int index);
  void CheckNames();
  void CheckCoverage();

  std::span<const std::byte> data_;
  const ParseLimits& limits_;
  Archive archive_;
  std::uint64_t end_records_start_ = 0;  // first byte of the ZIP64 end record or the EOCD
  std::uint64_t shift_ = 0;
  std::uint64_t dropped_ = 0;
};

std::optional<std::size_t> Parser::FindEocd() const {
  if (data_.size() < kEocdSize) return std::nullopt;
  // The record is 22 bytes plus a comment of at most 65535 bytes: search only that window,
  // from the end, like both zipfile and miniz. Prefer a record whose comment ends exactly at
  // EOF; otherwise the last signature found.
  std::size_t lowest = data_.size() >= kEocdSize + 0xffff ? data_.size() - kEocdSize - 0xffff : 0;
  std::optional<std::size_t> last_any;
  for (std::size_t i = data_.size() - kEocdSize + 1; i-- > lowest;) {
    if (ReadU32At(data_, i) != kEocdSig) continue;
    ByteReader r(data_, i + 20);
    std::uint16_t comment = r.U16().value_or(0);
    if (i + kEocdSize + comment == data_.size()) return i;
    if (!last_any && i + kEocdSize + comment <= data_.size()) last_any = i;
  }
  return last_any;
}

Status Parser::ReadEnd() {
  auto eocd = FindEocd();
  if (!eocd) return Corrupt("zip: no end-of-central-directory record in the last 64 KiB");
  ByteReader r(data_, *eocd + 4);
  std::uint16_t disk = *r.U16(), cd_disk = *r.U16();
  std::uint64_t entries_disk = *r.U16(), entries_total = *r.U16();
  std::uint64_t cd_size = *r.U32(), cd_offset = *r.U32();
  std::uint16_t comment_len = *r.U16();
  archive_.eocd_offset = *eocd;
  archive_.end_offset = *eocd + kEocdSize + comment_len;
  end_records_start_ = *eocd;
  if (archive_.end_offset < data_.size()) {
    Note(AnomalyKind::kTrailingData, -1, archive_.end_offset,
         std::to_string(data_.size() - archive_.end_offset) +
             " bytes after the end-of-central-directory record",
         data_.size() - archive_.end_offset);
  }

  // ZIP64: a locator right before the EOCD points at the ZIP64 end record.
  if (*eocd >= kZip64LocatorSize &&
      ReadU32At(data_, *eocd - kZip64LocatorSize) == kZip64LocatorSig) {
    ByteReader loc(data_, *eocd - kZip64LocatorSize + 4);
    std::uint32_t z_disk = *loc.U32();
    std::uint64_t z_offset = *loc.U64();
    std::uint32_t z_disks = *loc.U32();
    if (z_disk != 0 || z_disks > 1) return Unsupported("zip: multi-disk ZIP64 archive");
    std::uint64_t z_at = z_offset;
    if (z_at >= data_.size() || ReadU32At(data_, z_at) != kZip64EocdSig) {
      // Like zipfile: the record may sit right before the locator when offsets are shifted.
      std::uint64_t guess = *eocd - kZip64LocatorSize;
      bool found = false;
      if (guess >= kZip64EocdMinSize) {
        for (std::uint64_t g = guess - kZip64EocdMinSize;; --g) {
          if (ReadU32At(data_, g) == kZip64EocdSig) {
            ByteReader zr(data_, g + 4);
            auto rec = zr.U64();
            if (rec && g + 12 + *rec == guess) {
              z_at = g;
              found = true;
              break;
            }
          }
          if (g == 0 || guess - g > 4096) break;
        }
      }
      if (!found) return Corrupt("zip: ZIP64 end record not found where its locator points");
      Note(AnomalyKind::kZip64Inconsistent, -1, z_at,
           "ZIP64 locator points at " + Hex(z_offset) + " but the ZIP64 end record is at " +
               Hex(z_at));
    }
    ByteReader z(data_, z_at + 4);
    auto rec_size = z.U64();
    z.Skip(4);  // versions
    auto zd = z.U32(), zcd = z.U32();
    auto ze_disk = z.U64(), ze_total = z.U64(), zcd_size = z.U64(), zcd_offset = z.U64();
    if (!zcd_offset) return Corrupt("zip: truncated ZIP64 end record");
    if (*zd != 0 || *zcd != 0) return Unsupported("zip: multi-disk ZIP64 archive");
    std::uint64_t rec_end = 0;
    if (!core::CheckedAdd(z_at + 12, *rec_size, &rec_end) || rec_end > *eocd - kZip64LocatorSize) {
      Note(AnomalyKind::kZip64Inconsistent, -1, z_at, "ZIP64 end record size is out of range");
    } else if (rec_end < *eocd - kZip64LocatorSize) {
      Note(AnomalyKind::kUnaccountedData, -1, rec_end,
           std::to_string(*eocd - kZip64LocatorSize - rec_end) +
               " bytes between the ZIP64 end record and its locator");
    }
    auto mismatch = [&](std::uint64_t v32, std::uint64_t max32, std::uint64_t v64,
                        const char* what) {
      if (v32 != max32 && v32 != v64) {
        Note(AnomalyKind::kZip64Inconsistent, -1, *eocd,
             std::string(what) + " is " + std::to_string(v32) + " in the end record but " +
                 std::to_string(v64) + " in the ZIP64 end record");
      }
    };
    mismatch(entries_total, 0xffff, *ze_total, "entry count");
    mismatch(cd_size, 0xffffffff, *zcd_size, "central directory size");
    mismatch(cd_offset, 0xffffffff, *zcd_offset, "central directory offset");
    entries_disk = *ze_disk;
    entries_total = *ze_total;
    cd_size = *zcd_size;
    cd_offset = *zcd_offset;
    archive_.zip64 = true;
    end_records_start_ = z_at;
  } else if (disk != 0 || cd_disk != 0) {
    return Unsupported("zip: multi-disk archive");
  }
  if (entries_disk != entries_total) {
    Note(AnomalyKind::kEntryCountMismatch, -1, *eocd,
         "end record counts " + std::to_string(entries_disk) + " entries on this disk but " +
             std::to_string(entries_total) + " in total");
  }
  archive_.declared_entries = entries_total;

  // Where the central directory is: at its declared offset, or (zipfile's rule for archives
  // with data prepended) right before the end records.
  std::uint64_t declared_end = 0;
  if (!core::CheckedAdd(cd_offset, cd_size, &declared_end) || cd_size > end_records_start_)
    return Corrupt("zip: central directory size " + std::to_string(cd_size) + " out of range");
  std::uint64_t cd_start = cd_offset;
  if (declared_end != end_records_start_) {
    std::uint64_t shifted = end_records_start_ - cd_size;
    bool at_declared = declared_end <= end_records_start_ &&
                       (cd_size == 0 || ReadU32At(data_, cd_offset) == kCentralSig);
    bool at_shifted =
        shifted > cd_offset && (cd_size == 0 || ReadU32At(data_, shifted) == kCentralSig);
    if (at_declared) {
      Note(AnomalyKind::kUnaccountedData, -1, declared_end,
           std::to_string(end_records_start_ - declared_end) +
               " bytes between the central directory and the end record");
    } else if (at_shifted) {
      shift_ = shifted - cd_offset;
      cd_start = shifted;
      Note(AnomalyKind::kOffsetShift, -1, shifted,
           "archive offsets are relative to byte " + std::to_string(shift_) +
               " (data was prepended); readers that do not adjust see a different archive");
    } else {
      return Corrupt("zip: central directory not found at offset " + Hex(cd_offset));
    }
  }
  archive_.central_directory_offset = cd_start;
  archive_.central_directory_size = cd_size;
  return Status::Ok();
}

Status Parser::ReadCentral() {
  const std::uint64_t cd_start = archive_.central_directory_offset;
  const std::uint64_t cd_end = cd_start + archive_.central_directory_size;
  ByteReader r(data_.first(static_cast<std::size_t>(cd_end)), static_cast<std::size_t>(cd_start));
  // Every record is at least 46 bytes, so the count is bounded by the bytes that exist.
  archive_.entries.reserve(static_cast<std::size_t>(
      std::min<std::uint64_t>({archive_.central_directory_size / kCentralSize,
                               archive_.declared_entries, limits_.max_entries})));
  while (!r.at_end()) {
    std::uint64_t at = r.offset();
    if (r.remaining() < kCentralSize || *r.U32() != kCentralSig) {
      return Corrupt("zip: bad central directory record at " + Hex(at));
    }
    if (archive_.entries.size() >= limits_.max_entries) {
      return LimitExceeded("zip: more than " + std::to_string(limits_.max_entries) + " entries");
    }
    Entry e;
    e.central_offset = at;
    e.version_made_by = *r.U16();
    r.Skip(2);  // version needed
    e.flags = *r.U16();
    e.method = *r.U16();
    r.Skip(4);  // time, date
    e.crc32 = *r.U32();
    e.compressed_size = *r.U32();
    e.uncompressed_size = *r.U32();
    std::uint16_t name_len = *r.U16(), extra_len = *r.U16(), comment_len = *r.U16();
    std::uint16_t disk_start = *r.U16();
    r.Skip(2);  // internal attributes
    e.external_attributes = *r.U32();
    std::uint64_t local = *r.U32();
    auto name = r.String(name_len);
    auto extra = r.Bytes(extra_len);
    if (!name || !extra || !r.Skip(comment_len)) {
      return Corrupt("zip: central directory record at " + Hex(at) + " runs past the directory");
    }
    e.name = std::string(*name);
    int index = static_cast<int>(archive_.entries.size());

    // ZIP64 extended information: 8-byte values for each 32-bit field that is all ones.
    bool need_u = e.uncompressed_size == 0xffffffff, need_c = e.compressed_size == 0xffffffff;
    bool need_o = local == 0xffffffff, need_d = disk_start == 0xffff;
    bool found_zip64 = false;
    ByteReader x(*extra);
    while (x.remaining() >= 4) {
      std::uint16_t id = *x.U16(), size = *x.U16();
      auto body = x.Bytes(size);
      if (!body) {
        Note(AnomalyKind::kZip64Inconsistent, index, at, "malformed extra field");
        break;
      }
      if (id != 0x0001) continue;
      found_zip64 = true;
      ByteReader z(*body);
      bool ok = true;
      auto take64 = [&](std::uint64_t* out) {
        auto v = z.U64();
        if (v) *out = *v;
        ok = ok && v.has_value();
      };
      if (need_u) take64(&e.uncompressed_size);
      if (need_c) take64(&e.compressed_size);
      if (need_o) take64(&local);
      if (need_d) {
        auto v = z.U32();
        if (v) disk_start = *v == 0 ? 0 : 1;
        ok = ok && v.has_value();
      }
      if (!ok) {
        Note(AnomalyKind::kZip64Inconsistent, index, at,
             "ZIP64 extra field of '" + Printable(e.name) + "' is too short");
        need_u = need_c = need_o = false;
        e.compressed_size = e.uncompressed_size = 0;
        local = UINT64_MAX;
      } else {
        need_u = need_c = need_o = need_d = false;
      }
      break;
    }
    if (!found_zip64 && (need_u || need_c || need_o)) {
      // The all-ones value is taken literally by readers without ZIP64 support.
      Note(AnomalyKind::kZip64Inconsistent, index, at,
           "'" + Printable(e.name) + "' has a 0xffffffff size/offset but no ZIP64 extra field");
    }
    if (disk_start != 0) {
      Note(AnomalyKind::kZip64Inconsistent, index, at,
           "'" + Printable(e.name) + "' starts on another disk");
    }
    if (!core::CheckedAdd(local, shift_, &e.local_header_offset))
      e.local_header_offset = UINT64_MAX;
    archive_.entries.push_back(std::move(e));
  }
  if (archive_.entries.size() != archive_.declared_entries) {
    Note(AnomalyKind::kEntryCountMismatch, -1, archive_.eocd_offset,
         "end record declares " + std::to_string(archive_.declared_entries) +
             " entries but the central directory holds " + std::to_string(archive_.entries.size()) +
             ": readers that trust the count see a different set of members");
  }
  return Status::Ok();
}

void Parser::ReadLocal(int index) {
  Entry& e = archive_.entries[static_cast<std::size_t>(index)];
  const std::string shown = "'" + Printable(e.name) + "'";
  // Flags first: they matter whether or not the local header is usable.
  if (e.flags & kFlagEncrypted || e.flags & kFlagStrongEncryption) {
    Note(AnomalyKind::kEncryptionFlag, index, e.central_offset,
         shown + " has encryption flag bits " +
             Hex(e.flags & (kFlagEncrypted | kFlagStrongEncryption)));
  }
  if (e.flags & kFlagPatched) {
    Note(AnomalyKind::kPatchedFlag, index, e.central_offset,
         shown + " has the patched-data flag (0x20)");
  }
  if (e.flags & kFlagMaskedHeaders) {
    Note(AnomalyKind::kMaskedHeaders, index, e.central_offset,
         shown + " has the masked-header flag (0x2000, central directory encryption)");
  }
  if (e.flags & ~kKnownFlags) {
    Note(AnomalyKind::kUnusualFlags, index, e.central_offset,
         shown + " has reserved flag bits " + Hex(e.flags & ~kKnownFlags));
  }
  if (e.method != kMethodStored && e.method != kMethodDeflate) {
    Note(AnomalyKind::kUnsupportedMethod, index, e.central_offset,
         shown + " uses compression method " + std::to_string(e.method));
  }
  if (e.method == kMethodStored && e.compressed_size != e.uncompressed_size && !e.IsEncrypted()) {
    Note(AnomalyKind::kStoredSizeMismatch, index, e.central_offset,
         shown + " is stored but declares " + std::to_string(e.compressed_size) +
             " compressed and " + std::to_string(e.uncompressed_size) + " uncompressed bytes");
  }
  if (e.IsSymlink()) {
    Note(AnomalyKind::kSymlink, index, e.central_offset, shown + " is a symbolic link");
  }

  const std::uint64_t at = e.local_header_offset;
  if (at >= data_.size() || data_.size() - at < kLocalSize || ReadU32At(data_, at) != kLocalSig) {
    Note(AnomalyKind::kBadLocalHeader, index, std::min<std::uint64_t>(at, data_.size()),
         "no local header for " + shown + " at " + Hex(at));
    return;
  }
  ByteReader r(data_, static_cast<std::size_t>(at) + 4);
  r.Skip(2);  // version needed
  e.local_flags = *r.U16();
  e.local_method = *r.U16();
  r.Skip(4);
  std::uint32_t l_crc = *r.U32();
  std::uint64_t l_csize = *r.U32(), l_usize = *r.U32();
  std::uint16_t name_len = *r.U16(), extra_len = *r.U16();
  auto name = r.String(name_len);
  auto extra = r.Bytes(extra_len);
  if (!name || !extra) {
    Note(AnomalyKind::kBadLocalHeader, index, at, "local header of " + shown + " is truncated");
    return;
  }
  e.local_name = std::string(*name);
  e.data_offset = r.offset();
  if (l_csize == 0xffffffff || l_usize == 0xffffffff)
    ReadLocalZip64Sizes(*extra, &l_usize, &l_csize);

  if (e.local_name != e.name) {
    Note(AnomalyKind::kNameMismatch, index, at,
         "local header names '" + Printable(e.local_name) + "' but the central directory names " +
             shown);
  }
  if (e.local_method != e.method) {
    Note(AnomalyKind::kHeaderMismatch, index, at,
         shown + ": compression method " + std::to_string(e.local_method) +
             " in the local header, " + std::to_string(e.method) + " in the central directory");
  }
  if (e.local_flags != e.flags) {
    Note(AnomalyKind::kFlagMismatch, index, at,
         shown + ": flags " + Hex(e.local_flags) + " in the local header, " + Hex(e.flags) +
             " in the central directory");
  }
  const bool descriptor = (e.local_flags & kFlagDataDescriptor) != 0;
  // With a data descriptor the local CRC and sizes may be zero (some writers fill in only some
  // of them); a value that is present must still agree.
  auto differs = [&](std::uint64_t local_value, std::uint64_t central_value) {
    return local_value != central_value && !(descriptor && local_value == 0);
  };
  if (differs(l_crc, e.crc32) || differs(l_csize, e.compressed_size) ||
      differs(l_usize, e.uncompressed_size)) {
    Note(AnomalyKind::kHeaderMismatch, index, at,
         shown + ": local header declares crc " + Hex(l_crc) + ", " + std::to_string(l_csize) +
             "/" + std::to_string(l_usize) + " bytes; central directory declares crc " +
             Hex(e.crc32) + ", " + std::to_string(e.compressed_size) + "/" +
             std::to_string(e.uncompressed_size) + " bytes");
  }

  std::uint64_t data_end = 0;
  if (!core::CheckedAdd(e.data_offset, e.compressed_size, &data_end) || data_end > data_.size()) {
    Note(AnomalyKind::kOutOfBounds, index, at,
         shown + ": " + std::to_string(e.compressed_size) + " bytes of data at " +
             Hex(e.data_offset) + " run past the end of the file");
    return;
  }
  e.record_end = data_end;
  e.readable = true;

  if (descriptor) {
    // Optional signature, CRC, then 4- or 8-byte sizes.
    ByteReader d(data_, static_cast<std::size_t>(data_end));
    std::uint64_t start = data_end;
    if (ReadU32At(data_, static_cast<std::size_t>(data_end)) == kDescriptorSig &&
        d.remaining() >= 4) {
      d.Skip(4);
    }
    auto crc = d.U32();
    std::size_t after_crc = d.offset();
    auto c32 = d.U32(), u32 = d.U32();
    bool ok = false;
    if (crc && c32 && u32 && *crc == e.crc32 && *c32 == e.compressed_size &&
        *u32 == e.uncompressed_size) {
      ok = true;
      e.record_end = d.offset();
    } else {
      d.Seek(after_crc);
      auto c64 = d.U64(), u64 = d.U64();
      if (crc && c64 && u64 && *crc == e.crc32 && *c64 == e.compressed_size &&
          *u64 == e.uncompressed_size) {
        ok = true;
        e.record_end = d.offset();
      }
    }
    if (!ok) {
      Note(AnomalyKind::kDataDescriptorMismatch, index, start,
           shown + ": data descriptor missing or disagreeing with the central directory");
    }
  }
}

void Parser::CheckNames() {
  std::unordered_map<std::string_view, int> first;
  first.reserve(archive_.entries.size());
  for (std::size_t i = 0; i < archive_.entries.size(); ++i) {
    const Entry& e = archive_.entries[i];
    int index = static_cast<int>(i);
    auto [it, inserted] = first.emplace(e.name, index);
    if (!inserted) {
      Note(AnomalyKind::kDuplicateName, index, e.central_offset,
           "'" + Printable(e.name) + "' appears more than once in the central directory (entries " +
               std::to_string(it->second) + " and " + std::to_string(index) +
               "): readers disagree on which one they load");
    }
    if (IsTraversalName(e.name) || (!e.local_name.empty() && IsTraversalName(e.local_name))) {
      Note(AnomalyKind::kPathTraversal, index, e.central_offset,
           "'" + Printable(IsTraversalName(e.name) ? e.name : e.local_name) +
               "' would be written outside the extraction folder");
    }
    bool bad = e.name.empty();
    for (char c : e.name) {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) bad = true;
    }
    if (bad) {
      Note(AnomalyKind::kBadName, index, e.central_offset,
           "member name '" + Printable(e.name) + "' is empty or contains control characters");
    }
  }
}

void Parser::CheckCoverage() {
  struct Span {
    std::uint64_t begin, end;
    int entry;  // -1 central directory, -2 end records
  };
  std::vector<Span> spans;
  spans.reserve(archive_.entries.size() + 2);
  for (std::size_t i = 0; i < archive_.entries.size(); ++i) {
    const Entry& e = archive_.entries[i];
    if (e.readable) spans.push_back({e.local_header_offset, e.record_end, static_cast<int>(i)});
  }
  if (archive_.central_directory_size > 0) {
    spans.push_back({archive_.central_directory_offset,
                     archive_.central_directory_offset + archive_.central_directory_size, -1});
  }
  spans.push_back({end_records_start_, archive_.end_offset, -2});
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  auto describe = [&](int entry) -> std::string {
    if (entry == -1) return "the central directory";
    if (entry == -2) return "the end records";
    return "'" + Printable(archive_.entries[static_cast<std::size_t>(entry)].name) + "'";
  };
  archive_.archive_start = spans.front().begin;
  if (spans.front().begin > 0) {
    Note(AnomalyKind::kPrefixData, -1, 0,
         std::to_string(spans.front().begin) + " bytes before the first zip record");
  }
  std::uint64_t covered_end = spans.front().end;
  int covered_by = spans.front().entry;
  for (std::size_t i = 1; i < spans.size(); ++i) {
    const Span& s = spans[i];
    if (s.begin < covered_end) {
      int entry = s.entry >= 0 ? s.entry : covered_by;
      Note(AnomalyKind::kOverlap, entry, s.begin,
           describe(s.entry) + " overlaps " + describe(covered_by) + " at " + Hex(s.begin));
    } else if (s.begin > covered_end) {
      Note(AnomalyKind::kUnaccountedData, -1, covered_end,
           std::to_string(s.begin - covered_end) + " bytes at " + Hex(covered_end) +
               " belong to no zip record",
           s.begin - covered_end);
    }
    if (s.end > covered_end) {
      covered_end = s.end;
      covered_by = s.entry;
    }
  }
}

Result<Archive> Parser::Run() {
  AIRLOCK_TRY(ReadEnd());
  AIRLOCK_TRY(ReadCentral());
  for (std::size_t i = 0; i < archive_.entries.size(); ++i) ReadLocal(static_cast<int>(i));
  CheckNames();
  CheckCoverage();
  if (dropped_ > 0) {
    archive_.anomalies.push_back({AnomalyKind::kUnaccountedData, -1, 0, 0,
                                  std::to_string(dropped_) + " further anomalies not listed"});
  }
  return std::move(archive_);
}

// Largest output allowed for `compressed` input bytes.
std::uint64_t OutputCap(std::uint64_t compressed, const ExtractOptions& opt) {
  std::uint64_t by_ratio = 0;
  if (!core::CheckedMul(compressed, opt.max_ratio, &by_ratio)) by_ratio = UINT64_MAX;
  return std::min(opt.max_bytes, std::max(by_ratio, opt.ratio_floor));
}

}  // namespace

bool Entry::IsSymlink() const {
  constexpr std::uint16_t kHostUnix = 3;
  return (version_made_by >> 8) == kHostUnix && ((external_attributes >> 16) & 0xf000) == 0xa000;
}

bool IsTraversalName(std::string_view name) {
  if (name.empty()) return false;
  if (name[0] == '/' || name[0] == '\\') return true;
  if (name.size() >= 2 && name[1] == ':' &&
      ((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z')))
    return true;
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t end = name.find_first_of("/\\", start);
    if (end == std::string_view::npos) end = name.size();
    if (name.substr(start, end - start) == "..") return true;
    start = end + 1;
  }
  return false;
}

Result<Entry> ReadLocalEntry(std::span<const std::byte> data, std::uint64_t offset) {
  if (offset >= data.size() || data.size() - offset < kLocalSize ||
      ReadU32At(data, offset) != kLocalSig)
    return Corrupt("zip: no local header at " + Hex(offset));
  ByteReader r(data, static_cast<std::size_t>(offset) + 4);
  Entry e;
  r.Skip(2);
  e.flags = e.local_flags = *r.U16();
  e.method = e.local_method = *r.U16();
  r.Skip(4);
  e.crc32 = *r.U32();
  e.compressed_size = *r.U32();
  e.uncompressed_size = *r.U32();
  std::uint16_t name_len = *r.U16(), extra_len = *r.U16();
  auto name = r.String(name_len);
  auto extra = r.Bytes(extra_len);
  if (!name || !extra) return Corrupt("zip: truncated local header at " + Hex(offset));
  e.name = e.local_name = std::string(*name);
  if (e.compressed_size == 0xffffffff || e.uncompressed_size == 0xffffffff)
    ReadLocalZip64Sizes(*extra, &e.uncompressed_size, &e.compressed_size);
  if ((e.flags & kFlagDataDescriptor) && e.compressed_size == 0)
    return Corrupt("zip: local record at " + Hex(offset) +
                   " defers its sizes to a data descriptor");
  e.local_header_offset = offset;
  e.data_offset = r.offset();
  std::uint64_t end = 0;
  if (!core::CheckedAdd(e.data_offset, e.compressed_size, &end) || end > data.size())
    return Corrupt("zip: local record at " + Hex(offset) + " runs past the end of the input");
  e.record_end = end;
  e.readable = true;
  return e;
}

Result<Archive> Parse(std::span<const std::byte> data, const ParseLimits& limits) {
  Parser p(data, limits);
  return p.Run();
}

Result<Member> Extract(std::span<const std::byte> data, const Entry& e, const ExtractOptions& opt) {
  if (!e.readable) return Corrupt("zip: member '" + Printable(e.name) + "' is unreadable");
  auto raw = data.subspan(static_cast<std::size_t>(e.data_offset),
                          static_cast<std::size_t>(e.compressed_size));
  Member m;
  if (e.method == kMethodStored) {
    m.data = raw;
  } else if (e.method == kMethodDeflate) {
    std::uint64_t cap = OutputCap(e.compressed_size, opt);
    if (e.uncompressed_size > cap) {
      return LimitExceeded("zip: member '" + Printable(e.name) + "' declares " +
                           std::to_string(e.uncompressed_size) + " bytes from " +
                           std::to_string(e.compressed_size) + " compressed (limit " +
                           std::to_string(cap) + ")");
    }
    // Loaders inflate into a buffer of the declared size: produce at most that much, and one
    // probe byte more to learn whether the stream is longer than declared.
    const std::uint64_t want = e.uncompressed_size;
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) return Internal("zip: inflateInit2 failed");
    m.owned.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(want, 64u << 20)));
    std::size_t in_pos = 0;
    std::byte probe[1];
    int rc = Z_OK;
    Status failure = Status::Ok();
    constexpr std::size_t kChunk = 1u << 20;
    while (true) {
      if (zs.avail_in == 0 && in_pos < raw.size()) {
        std::size_t n = std::min<std::size_t>(raw.size() - in_pos, 1u << 30);
        zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(raw.data() + in_pos));
        zs.avail_in = static_cast<uInt>(n);
        in_pos += n;
      }
      const bool input_done = zs.avail_in == 0 && in_pos >= raw.size();
      std::size_t have = m.owned.size();
      bool probing = have >= want;
      std::size_t room =
          probing ? 1 : static_cast<std::size_t>(std::min<std::uint64_t>(want - have, kChunk));
      if (!probing) m.owned.resize(have + room);
      zs.next_out = reinterpret_cast<Bytef*>(probing ? probe : m.owned.data() + have);
      zs.avail_out = static_cast<uInt>(room);
      rc = inflate(&zs, Z_NO_FLUSH);
      std::size_t produced = room - zs.avail_out;
      if (!probing) m.owned.resize(have + produced);
      if (probing && produced > 0) {
        m.size_ok = false;  // stream longer than declared; the loader stops at the declared size
        rc = Z_STREAM_END;
        break;
      }
      if (produced > 0 && opt.charge && !opt.charge(produced)) {
        failure = LimitExceeded("zip: decompression budget exhausted");
        break;
      }
      if (rc == Z_STREAM_END) break;
      if (rc != Z_OK && rc != Z_BUF_ERROR) break;  // data, dictionary or memory error
      if (produced == 0 && (input_done || rc == Z_BUF_ERROR)) break;  // no progress possible
    }
    inflateEnd(&zs);
    if (!failure.ok()) return failure;
    if (rc != Z_STREAM_END && m.size_ok) {
      if (m.owned.empty()) {
        return Corrupt("zip: member '" + Printable(e.name) + "' is not a valid deflate stream");
      }
      m.size_ok = false;  // truncated or corrupt stream: keep what was inflated
    }
    if (m.owned.size() != want) m.size_ok = false;
    m.data = std::span<const std::byte>(m.owned.data(), m.owned.size());
  } else {
    return Unsupported("zip: member '" + Printable(e.name) + "' uses compression method " +
                       std::to_string(e.method));
  }
  if (opt.verify_crc) {
    m.crc_checked = true;
    m.actual_crc = static_cast<std::uint32_t>(
        crc32_z(0, reinterpret_cast<const Bytef*>(m.data.data()), m.data.size()));
    m.crc_ok = m.actual_crc == e.crc32;
  }
  return m;
}

}  // namespace airlock::formats::zip
