// Hardened ZIP reader over an untrusted byte span (usually a memory-mapped file). It reads an
// archive the way PyTorch's reader (miniz) and Python's zipfile do: end-of-central-directory
// record found from the end, ZIP64 records, central directory entries, member data located
// through each entry's local header. Everything that lets two readers see different content
// (duplicate names, local/central mismatches, flag bits, overlaps, bytes no entry claims) is
// REPORTED as an Anomaly instead of being an error, so the scanner can flag tampering and still
// read what a loader would. Stored members are returned as views into the input (never copied);
// deflated ones are inflated with zlib under caller-supplied caps. Entries and anomalies own
// their strings; views returned by Extract live as long as the input span (or the Member).
// Thread-safety: free functions over immutable input; safe to call concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace airlock::formats::zip {

inline constexpr std::uint16_t kMethodStored = 0;
inline constexpr std::uint16_t kMethodDeflate = 8;

// General-purpose flag bits (APPNOTE 4.4.4).
inline constexpr std::uint16_t kFlagEncrypted = 0x0001;
inline constexpr std::uint16_t kFlagDataDescriptor = 0x0008;
inline constexpr std::uint16_t kFlagPatched = 0x0020;
inline constexpr std::uint16_t kFlagStrongEncryption = 0x0040;
inline constexpr std::uint16_t kFlagUtf8 = 0x0800;
inline constexpr std::uint16_t kFlagMaskedHeaders = 0x2000;

enum class AnomalyKind {
  kDuplicateName,           // two central-directory entries share a name
  kNameMismatch,            // local header name differs from the central directory name
  kHeaderMismatch,          // local header method/CRC/sizes differ from the central directory
  kFlagMismatch,            // local header flags differ from the central directory flags
  kDataDescriptorMismatch,  // data descriptor absent or disagreeing with the central directory
  kEncryptionFlag,          // bit 0 (traditional) or bit 6 (strong) encryption set
  kPatchedFlag,             // bit 5 (compressed patched data) set
  kMaskedHeaders,           // bit 13 (central directory encryption) set
  kUnusualFlags,            // reserved or unused flag bits set
  kStoredSizeMismatch,      // stored member whose compressed and uncompressed sizes differ
  kOverlap,                 // a member overlaps another member or the central directory
  kPrefixData,              // bytes before the first local header
  kUnaccountedData,         // bytes between records that no entry claims
  kTrailingData,            // bytes after the end-of-central-directory record and comment
  kOffsetShift,             // offsets are relative to a later archive start (prefix added)
  kEntryCountMismatch,      // end record's entry count != entries in the central directory
  kZip64Inconsistent,       // ZIP64 record or extra field missing or disagreeing
  kBadLocalHeader,          // no valid local header where the central directory points
  kOutOfBounds,             // member data extends past the end of the input
  kPathTraversal,           // absolute path, drive letter or ".." component (zip-slip)
  kBadName,                 // empty name, NUL or control characters
  kSymlink,                 // Unix symlink entry
  kUnsupportedMethod,       // compression method other than stored/deflate
};

struct Anomaly {
  AnomalyKind kind;
  int entry = -1;            // index into Archive::entries, -1 for archive-level anomalies
  std::uint64_t offset = 0;  // where in the input it was found
  std::uint64_t length = 0;  // bytes concerned, for byte-region anomalies (gaps, trailing data)
  std::string detail;        // human-readable specifics (names, values)
};

struct Entry {
  std::string name;        // central directory name (raw bytes; what loaders look up)
  std::string local_name;  // name in the local header ("" if unreadable)
  std::uint16_t version_made_by = 0;
  std::uint16_t flags = 0;
  std::uint16_t local_flags = 0;
  std::uint16_t method = 0;
  std::uint16_t local_method = 0;
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t uncompressed_size = 0;
  std::uint32_t external_attributes = 0;
  std::uint64_t central_offset = 0;       // where its central-directory record starts
  std::uint64_t local_header_offset = 0;  // absolute, after any offset shift
  std::uint64_t data_offset = 0;          // absolute start of member data
  std::uint64_t record_end = 0;           // end of data plus data descriptor
  bool readable = false;                  // local header valid and data within the input

  bool IsDirectory() const { return !name.empty() && name.back() == '/'; }
  bool IsEncrypted() const { return (flags & (kFlagEncrypted | kFlagStrongEncryption)) != 0; }
  bool IsSymlink() const;
};

struct Archive {
  std::vector<Entry> entries;  // central-directory order
  std::vector<Anomaly> anomalies;
  bool zip64 = false;
  std::uint64_t archive_start = 0;  // first byte claimed by a record (prefix before it)
  std::uint64_t central_directory_offset = 0;
  std::uint64_t central_directory_size = 0;
  std::uint64_t eocd_offset = 0;
  std::uint64_t end_offset = 0;  // one past the end record and its comment
  std::uint64_t declared_entries = 0;
};

struct ParseLimits {
  std::uint64_t max_entries = 1'000'000;
  std::uint64_t max_anomalies = 1'000;  // further anomalies are counted in one summary
};

// Parses the archive structure of `data`. Errors: kCorrupt (no end record, central directory
// unreadable), kUnsupported (multi-disk archives), kLimitExceeded (more than max_entries).
// Member-level problems are anomalies, with the entry marked !readable where data is unusable.
Result<Archive> Parse(std::span<const std::byte> data, const ParseLimits& limits = {});

struct ExtractOptions {
  std::uint64_t max_bytes = 2ull << 30;  // largest member produced (declared or actual)
  std::uint64_t max_ratio = 200;         // uncompressed / compressed, enforced above ratio_floor
  std::uint64_t ratio_floor = 1u << 20;  // small members may compress arbitrarily well
  // Called with each chunk of inflated bytes; returning false aborts with kLimitExceeded.
  std::function<bool(std::uint64_t)> charge;
  bool verify_crc = true;
};

// One member's bytes. Move-only: `data` may point into `owned`.
struct Member {
  std::span<const std::byte> data;  // what a loader reads (stored: a view into the input)
  std::vector<std::byte> owned;
  bool crc_checked = false;
  bool crc_ok = true;
  std::uint32_t actual_crc = 0;
  bool size_ok = true;  // inflated size equals the declared uncompressed size

  Member() = default;
  Member(Member&&) noexcept = default;
  Member& operator=(Member&&) noexcept = default;
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;
};

// Reads entry `e` of `data` as PyTorch does: data at the local header's data offset, sizes and
// method from the central directory, encryption flags ignored. Errors: kUnsupported (method
// other than stored/deflate), kCorrupt (entry unreadable, deflate stream invalid),
// kLimitExceeded (declared or inflated size over max_bytes or the ratio cap, or charge refused).
Result<Member> Extract(std::span<const std::byte> data, const Entry& e, const ExtractOptions& opt);

// Reads a local file record at `offset` on its own (for records the central directory does not
// list, which streaming readers still see). Name, flags, method, CRC and sizes come from the
// local header. Errors: kCorrupt (no local header there, sizes deferred to a data descriptor,
// data past the end of the input).
Result<Entry> ReadLocalEntry(std::span<const std::byte> data, std::uint64_t offset);

// True for names a careless extractor would write outside its target folder.
bool IsTraversalName(std::string_view name);

}  // namespace airlock::formats::zip
