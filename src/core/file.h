// Read-only access to files without copying them: MappedFile maps a whole file (an empty file
// maps to an empty span), so parsers work on std::span<const std::byte> and the kernel pages
// bytes in on demand. Memory stays bounded for any file size because pages are not pinned.
// Everything that reads into memory (ReadAllBounded, ReadSmallFile, TextInput) takes a cap, so
// untrusted input (a pipe, a terminal, a file that grows) never makes it allocate without bound.
// Thread-safety: a MappedFile may be read from many threads; it is movable, not copyable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"

namespace airlock::core {

inline std::string_view AsStringView(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

class MappedFile {
 public:
  // Maps `path` read-only. Errors: kNotFound (no such file), kInvalidArgument (a directory or a
  // special file), kIo (open/mmap failed).
  static Result<MappedFile> Open(const std::string& path);
  // Maps the regular file open on `fd` (which stays owned by the caller); `path` names it in
  // errors. Errors: kInvalidArgument (not a regular file), kIo.
  static Result<MappedFile> FromFd(int fd, const std::string& path);

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

// Reads `fd` to its end, at most `max_bytes` (the bytes are read, never a size announced).
// Errors: kLimitExceeded when there is more than `max_bytes`, kIo when a read fails.
Result<std::string> ReadAllBounded(int fd, std::size_t max_bytes);

// Reads a whole small regular file (configs, keys, signatures) into a string; the size check and
// the read use the same descriptor. Errors: kNotFound, kInvalidArgument (not a regular file),
// kIo, kLimitExceeded when the file is (or grows) larger than `max_bytes`.
Result<std::string> ReadSmallFile(const std::string& path, std::size_t max_bytes = 64u << 20);

// A text a command reads whole (a prompt, a corpus): a regular file is mapped, anything else (a
// pipe, a terminal, /dev/stdin, standard input) is read into memory up to a cap. A regular file
// larger than the cap is refused as well, because what callers build from the text (token ids)
// grows with it.
class TextInput {
 public:
  // Errors: kNotFound, kInvalidArgument (a directory), kIo, kLimitExceeded past `max_bytes`.
  static Result<TextInput> Open(const std::string& path, std::size_t max_bytes);
  // Standard input (file descriptor 0), named "standard input" in errors.
  static Result<TextInput> FromStdin(std::size_t max_bytes);
  // Reads from `fd` (which stays owned by the caller); `name` is used in error messages.
  static Result<TextInput> FromFd(int fd, const std::string& name, std::size_t max_bytes);

  // Valid while this object lives.
  std::string_view text() const {
    return mapped_.size() > 0 ? AsStringView(mapped_.bytes()) : std::string_view(read_);
  }

 private:
  MappedFile mapped_;  // a regular file
  std::string read_;   // a stream, read up to the cap
};

// A model file opened once, so that what is checked (its signature, hashed through this
// descriptor) and what is loaded (mapped from this descriptor, here or by a model worker that
// inherits it) are the same file: renaming another file over the path after the check changes
// nothing. Unchanged() tells whether the file was changed since it was opened: written to, or
// renamed over or removed (its size, mtime or ctime moved; the kernel sets ctime on every write and
// link change, and no caller can set it back). Callers check it after loading and before reusing
// a loaded model. Timestamps move in clock ticks (a few ms): a write in the same tick as the
// file's previous change, before Open, is not told apart.
// Thread-safety: Unchanged() may be called from any thread; movable, not copyable.
class PinnedFile {
 public:
  // Opens `path` read-only (links are followed: a model may be a link into a download cache).
  // Errors: kNotFound, kInvalidArgument (not a regular file), kIo.
  static Result<PinnedFile> Open(const std::string& path);
  PinnedFile() = default;
  PinnedFile(PinnedFile&& other) noexcept;
  PinnedFile& operator=(PinnedFile&& other) noexcept;
  PinnedFile(const PinnedFile&) = delete;
  PinnedFile& operator=(const PinnedFile&) = delete;
  ~PinnedFile();

  // What the file's bytes are read and mapped through: the file itself, or after
  // SealPrivateCopy() the sealed copy.
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // Errors: kPermissionDenied (naming the path) when the file changed since Open: what was
  // checked is no longer what is there. After SealPrivateCopy() it still watches the file at the
  // path (a changed file is a reason to check and load it again), while fd() cannot change.
  Status Unchanged() const;

  // Copies the file's bytes into an anonymous memory file (memfd) sealed against writes, shrinking
  // and growing, and makes fd() read that copy. Why: timestamps do not tell every write apart.
  // Whoever can write the file can change its bytes through a shared writable mapping whose pages
  // were dirtied before the check, which moves no timestamp, so Unchanged() cannot see it; nobody,
  // not even root, can change a sealed copy. Costs memory (shared memory, swappable) equal to the
  // file's size; the file's own cached pages are dropped after the copy. The copy is what is then
  // checked, so a write during the copy makes the check fail, never a checked copy that is wrong.
  // Errors: kIo (no memory for the copy, naming the size), kPermissionDenied (the file changed
  // size while it was copied).
  Status SealPrivateCopy();
  bool sealed() const { return watched_fd_ >= 0; }

 private:
  int fd_ = -1;
  int watched_fd_ = -1;  // the file at the path, once fd_ is its sealed copy
  std::string path_;
  std::uint64_t size_ = 0;
  std::int64_t mtime_ns_ = 0;
  std::int64_t ctime_ns_ = 0;
};

// What writing an output file at `path` means (WriteFileAtomic; the sandbox grants by it too).
// Links are followed: an output planted as a link to a disk must not be written.
enum class OutputTarget {
  kReplace,    // nothing there yet, or a regular file: written beside it and renamed over it
  kStdStream,  // the file this process's stdout or stderr is (`-o /dev/stdout`, even redirected
               // to a regular file): written through that descriptor, the path left as it is
  kInPlace,    // a FIFO, a socket, a terminal or /dev/null: opened and written in place
  kFolder,     // a folder: refused
  kRefused,    // any other device (a disk, /dev/mem...): refused
};
// `std_fd` (optional) receives 1 or 2 for kStdStream.
OutputTarget ClassifyOutput(const std::string& path, int* std_fd = nullptr);

// Writes `contents` to `path` as ClassifyOutput says: atomically (an exclusive temp file beside
// it + rename) for kReplace, through stdout/stderr or in place for streams and terminals; a
// folder or another device is refused, and so is a FIFO nobody reads. Errors: kIo.
Status WriteFileAtomic(const std::string& path, std::string_view contents);

}  // namespace airlock::core
