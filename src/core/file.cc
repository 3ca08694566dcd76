#include "core/file.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "core/memory.h"

namespace airlock::core {

namespace {

// Opens `path` read-only. O_NONBLOCK keeps the open of a FIFO without a writer from hanging;
// callers that read a stream clear it again (ClearNonBlocking).
Result<int> OpenReadOnly(const std::string& path, bool nonblocking) {
  const int fd =
      ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | (nonblocking ? O_NONBLOCK : 0));
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return NotFound("file: no such file: " + path);
    return IoError("file: cannot open " + path + ": " + std::strerror(err));
  }
  return fd;
}

Result<struct stat> StatFd(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return IoError("file: cannot stat " + path + ": " + std::strerror(errno));
  }
  return st;
}

// Closes the descriptor when it goes out of scope.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

std::string TooLarge(const std::string& name, std::size_t max_bytes) {
  return "file: " + name + " is larger than the limit of " + std::to_string(max_bytes) + " bytes";
}

}  // namespace

Result<MappedFile> MappedFile::Open(const std::string& path) {
  AIRLOCK_ASSIGN_OR_RETURN(int fd, OpenReadOnly(path, /*nonblocking=*/true));
  FdCloser closer{fd};
  return FromFd(fd, path);
}

Result<MappedFile> MappedFile::FromFd(int fd, const std::string& path) {
  AIRLOCK_ASSIGN_OR_RETURN(struct stat st, StatFd(fd, path));
  if (!S_ISREG(st.st_mode)) return InvalidArgument("file: not a regular file: " + path);
  MappedFile file;
  file.path_ = path;
  file.size_ = static_cast<std::size_t>(st.st_size);
  if (file.size_ > 0) {
    void* p = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      return IoError("file: cannot map " + path + ": " + std::strerror(errno));
    }
    file.data_ = static_cast<const std::byte*>(p);
  }
  return file;
}

namespace {
std::int64_t Nanoseconds(const struct timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}
}  // namespace

Result<PinnedFile> PinnedFile::Open(const std::string& path) {
  // Non-blocking open: a FIFO planted at the path is refused below instead of hanging here.
  AIRLOCK_ASSIGN_OR_RETURN(int fd, OpenReadOnly(path, /*nonblocking=*/true));
  PinnedFile f;
  f.fd_ = fd;  // closed by f from here on
  f.path_ = path;
  AIRLOCK_ASSIGN_OR_RETURN(struct stat st, StatFd(fd, path));
  if (!S_ISREG(st.st_mode)) return InvalidArgument("file: not a regular file: " + path);
  f.size_ = static_cast<std::uint64_t>(st.st_size);
  f.mtime_ns_ = Nanoseconds(st.st_mtim);
  f.ctime_ns_ = Nanoseconds(st.st_ctim);
  return f;
}

PinnedFile::PinnedFile(PinnedFile&& other) noexcept { *this = std::move(other); }

PinnedFile& PinnedFile::operator=(PinnedFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    if (watched_fd_ >= 0) ::close(watched_fd_);
    fd_ = std::exchange(other.fd_, -1);
    watched_fd_ = std::exchange(other.watched_fd_, -1);
    path_ = std::move(other.path_);
    size_ = other.size_;
    mtime_ns_ = other.mtime_ns_;
    ctime_ns_ = other.ctime_ns_;
  }
  return *this;
}

PinnedFile::~PinnedFile() {
  if (fd_ >= 0) ::close(fd_);
  if (watched_fd_ >= 0) ::close(watched_fd_);
}

Status PinnedFile::Unchanged() const {
  AIRLOCK_ASSIGN_OR_RETURN(struct stat st, StatFd(sealed() ? watched_fd_ : fd_, path_));
  if (static_cast<std::uint64_t>(st.st_size) != size_ || Nanoseconds(st.st_mtim) != mtime_ns_ ||
      Nanoseconds(st.st_ctim) != ctime_ns_)
    return Status(
        StatusCode::kPermissionDenied,
        "file: " + path_ + " was written to, replaced or removed after it was opened and checked");
  return Status::Ok();
}

Status PinnedFile::SealPrivateCopy() {
  if (sealed()) return Status::Ok();
  // Checked first: a file made huge (sparse) by whoever can write it must not drive the machine
  // out of memory while it is copied.
  const std::uint64_t available = AvailableMemoryBytes();
  if (size_ > available) {
    return IoError("file: cannot check " + path_ + ": a signature is checked on a sealed copy in " +
                   "memory, and its " + std::to_string(size_) + " bytes exceed the " +
                   std::to_string(available) + " bytes of memory available");
  }
  const int copy = ::memfd_create("airlock-checked-model", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (copy < 0) {
    return IoError("file: cannot create a private copy of " + path_ + ": " + std::strerror(errno));
  }
  auto fail = [&](const std::string& what, int err) {
    ::close(copy);
    return IoError("file: cannot copy " + path_ + " (" + std::to_string(size_) +
                   " bytes) into a sealed private copy in memory: " + what + ": " +
                   std::strerror(err));
  };
  // Reserve the whole size first, so that a model too large for memory fails here, at once.
  if (size_ > 0) {
    const int err = ::posix_fallocate(copy, 0, static_cast<off_t>(size_));  // returns the error
    if (err != 0) return fail("reserving the space", err);
  }
  std::uint64_t copied = 0;
  off_t in_offset = 0;
  std::vector<char> buffer;  // only when sendfile cannot write to a memfd (old kernels)
  for (;;) {
    const std::size_t want = 1u << 30;
    ssize_t n = -1;
    if (buffer.empty()) {
      n = ::sendfile(copy, fd_, &in_offset, want);
      if (n < 0 && (errno == EINVAL || errno == ENOSYS) && copied == 0) buffer.resize(1u << 20);
    }
    if (!buffer.empty()) {
      n = ::pread(fd_, buffer.data(), buffer.size(), in_offset);
      if (n > 0) {
        for (ssize_t done = 0; done < n;) {
          const ssize_t w = ::write(copy, buffer.data() + done, static_cast<std::size_t>(n - done));
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) return fail("writing", w < 0 ? errno : ENOSPC);
          done += w;
        }
        in_offset += n;
      }
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("reading", errno);
    if (n == 0) break;
    copied += static_cast<std::uint64_t>(n);
    if (copied > size_) break;  // growing while copied: refused below
  }
  if (copied != size_) {
    ::close(copy);
    return Status(StatusCode::kPermissionDenied,
                  "file: " + path_ + " changed size while it was copied to be checked");
  }
  if (::fcntl(copy, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    return fail("sealing", errno);
  ::lseek(copy, 0, SEEK_SET);
  // The copy holds the bytes now; the file's own cached pages need not stay in memory too.
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
  watched_fd_ = std::exchange(fd_, copy);
  return Status::Ok();
}

MappedFile::MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = other.data_;
    size_ = other.size_;
    path_ = std::move(other.path_);
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

void MappedFile::AdviseSequential() const {
  if (data_ != nullptr) ::madvise(const_cast<std::byte*>(data_), size_, MADV_SEQUENTIAL);
}

Result<std::string> ReadAllBounded(int fd, std::size_t max_bytes) {
  std::string data;
  char buf[65536];
  while (true) {
    // Ask for at most one byte past the cap: that byte proves there is more.
    const std::size_t want = std::min(sizeof buf, max_bytes - data.size() + 1);
    const ssize_t n = ::read(fd, buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        // A non-blocking descriptor (inherited that way): wait until it is readable.
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, -1) < 0 && errno != EINTR) {
          return IoError(std::string("file: poll failed: ") + std::strerror(errno));
        }
        continue;
      }
      return IoError(std::string("file: read failed: ") + std::strerror(errno));
    }
    if (n == 0) return data;
    if (static_cast<std::size_t>(n) > max_bytes - data.size()) {
      return LimitExceeded("file: more than the limit of " + std::to_string(max_bytes) + " bytes");
    }
    data.append(buf, static_cast<std::size_t>(n));
  }
}

Result<std::string> ReadSmallFile(const std::string& path, std::size_t max_bytes) {
  AIRLOCK_ASSIGN_OR_RETURN(int fd, OpenReadOnly(path, /*nonblocking=*/true));
  FdCloser closer{fd};
  AIRLOCK_ASSIGN_OR_RETURN(struct stat st, StatFd(fd, path));
  if (!S_ISREG(st.st_mode)) return InvalidArgument("file: not a regular file: " + path);
  if (static_cast<std::size_t>(st.st_size) > max_bytes) {
    return LimitExceeded("file: " + path + " is " + std::to_string(st.st_size) +
                         " bytes, more than the limit of " + std::to_string(max_bytes));
  }
  // The file may still grow after fstat: the read itself stops at the cap.
  auto data = ReadAllBounded(fd, max_bytes);
  if (!data.has_value()) {
    if (data.error().code() == StatusCode::kLimitExceeded) {
      return LimitExceeded(TooLarge(path, max_bytes));
    }
    return IoError("file: cannot read " + path + ": " + data.error().message());
  }
  return data;
}

Result<TextInput> TextInput::Open(const std::string& path, std::size_t max_bytes) {
  // Blocking open: a FIFO named on the command line waits for its writer, as a shell user expects.
  AIRLOCK_ASSIGN_OR_RETURN(int fd, OpenReadOnly(path, /*nonblocking=*/false));
  FdCloser closer{fd};
  return FromFd(fd, path, max_bytes);
}

Result<TextInput> TextInput::FromStdin(std::size_t max_bytes) {
  return FromFd(STDIN_FILENO, "standard input", max_bytes);
}

Result<TextInput> TextInput::FromFd(int fd, const std::string& name, std::size_t max_bytes) {
  AIRLOCK_ASSIGN_OR_RETURN(struct stat st, StatFd(fd, name));
  if (S_ISDIR(st.st_mode)) return InvalidArgument("file: " + name + " is a directory");
  TextInput input;
  if (S_ISREG(st.st_mode)) {
    if (static_cast<std::size_t>(st.st_size) > max_bytes) {
      return LimitExceeded("file: " + name + " is " + std::to_string(st.st_size) +
                           " bytes, more than the limit of " + std::to_string(max_bytes));
    }
    AIRLOCK_ASSIGN_OR_RETURN(input.mapped_, MappedFile::FromFd(fd, name));
    return input;
  }
  auto data = ReadAllBounded(fd, max_bytes);
  if (!data.has_value()) {
    if (data.error().code() == StatusCode::kLimitExceeded) {
      return LimitExceeded(TooLarge(name, max_bytes) + " (a stream is read up to that limit)");
    }
    return IoError("file: cannot read " + name + ": " + data.error().message());
  }
  input.read_ = std::move(data).value();
  return input;
}

namespace {

Status WriteAll(int fd, std::string_view contents, const std::string& name) {
  const char* p = contents.data();
  std::size_t left = contents.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("file: cannot write " + name + ": " + std::strerror(errno));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

OutputTarget ClassifyOutput(const std::string& path, int* std_fd) {
  struct stat target;
  if (::stat(path.c_str(), &target) != 0) return OutputTarget::kReplace;
  for (int fd : {1, 2}) {
    struct stat stream;
    if (::fstat(fd, &stream) == 0 && stream.st_dev == target.st_dev &&
        stream.st_ino == target.st_ino) {
      if (std_fd != nullptr) *std_fd = fd;
      return OutputTarget::kStdStream;
    }
  }
  if (S_ISREG(target.st_mode)) return OutputTarget::kReplace;
  if (S_ISDIR(target.st_mode)) return OutputTarget::kFolder;
  if (S_ISFIFO(target.st_mode) || S_ISSOCK(target.st_mode)) return OutputTarget::kInPlace;
  if (S_ISCHR(target.st_mode)) {
    struct stat null_device;
    if (::stat("/dev/null", &null_device) == 0 && S_ISCHR(null_device.st_mode) &&
        null_device.st_rdev == target.st_rdev)
      return OutputTarget::kInPlace;
    // A terminal: opening one has no side effect but making it a controlling terminal, which
    // O_NOCTTY prevents.
    int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) {
      const bool terminal = ::isatty(fd) == 1;
      ::close(fd);
      if (terminal) return OutputTarget::kInPlace;
    }
  }
  return OutputTarget::kRefused;
}

Status WriteFileAtomic(const std::string& path, std::string_view contents) {
  int std_fd = -1;
  switch (ClassifyOutput(path, &std_fd)) {
    case OutputTarget::kReplace:
      break;
    case OutputTarget::kStdStream:
      return WriteAll(std_fd, contents, path);
    case OutputTarget::kInPlace: {
      // Non-blocking open: a FIFO without a reader is an error (ENXIO), not a hang.
      int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
      if (fd < 0) {
        return IoError("file: cannot open " + path + ": " +
                       (errno == ENXIO ? std::string("nobody reads this FIFO")
                                       : std::string(std::strerror(errno))));
      }
      const int flags = ::fcntl(fd, F_GETFL);
      if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
      Status written = WriteAll(fd, contents, path);
      ::close(fd);
      return written;
    }
    case OutputTarget::kFolder:
      return IoError("file: " + path + " is a folder");
    case OutputTarget::kRefused:
      return IoError("file: " + path +
                     " is a device other than a terminal or /dev/null; refusing to write to it");
  }
  // The temporary name is created exclusively and never followed as a link: in a shared folder
  // another user cannot plant `<path>.tmp.<pid>` as a link to a file of ours and have it truncated.
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(attempt);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST)
      return IoError("file: cannot create " + tmp + ": " + std::strerror(errno));
  }
  if (fd < 0) return IoError("file: cannot create a temporary file beside " + path);
  if (Status written = WriteAll(fd, contents, tmp); !written.ok()) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return written;
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return IoError("file: cannot flush " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return IoError("file: cannot rename to " + path + ": " + std::strerror(err));
  }
  return Status::Ok();
}

}  // namespace airlock::core
