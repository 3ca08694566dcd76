// Read-only access to files without copying them: MappedFile maps a whole file (an empty file
// maps to an empty span), so parsers work on std::span<const std::byte> and the kernel pages
// bytes in on demand. Memory stays bounded for any file size because pages are not pinned.
// Thread-safety: a MappedFile may be read from many threads; it is movable, not copyable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"

namespace airlock::core {

class MappedFile {
 public:
  // Maps `path` read-only. Errors: kNotFound (no such file), kInvalidArgument (a directory or a
  // special file), kIo (open/mmap failed).
  static Result<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  // Valid while this object lives.
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Hints the kernel that the mapping will be read front to back (readahead).
  void AdviseSequential() const;

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

// Reads a whole small file (configs, keys, signatures) into a string. Errors: kNotFound, kIo,
// kLimitExceeded when the file is larger than `max_bytes`.
Result<std::string> ReadSmallFile(const std::string& path, std::size_t max_bytes = 64u << 20);

// Writes `contents` to `path` atomically (temp file + rename). Errors: kIo.
Status WriteFileAtomic(const std::string& path, std::string_view contents);

inline std::string_view AsStringView(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace airlock::core
