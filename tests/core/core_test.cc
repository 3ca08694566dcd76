#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "core/bytes.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/status.h"
#include "core/text.h"
#include "test_util.h"

namespace airlock {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  AIRLOCK_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(StatusTest, ResultCarriesValueOrError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.error().ToString(), "invalid argument: odd");
}

TEST(StatusTest, ResultFromOkStatusIsInternalError) {
  Result<int> r(Status::Ok());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInternal);
}

TEST(ByteReaderTest, ReadsLittleEndianAndStopsAtEnd) {
  const unsigned char raw[] = {1, 0, 0, 0, 0xff, 0xee};
  core::ByteReader r(std::as_bytes(std::span(raw)));
  EXPECT_EQ(r.U32(), 1u);
  EXPECT_EQ(r.U16(), 0xeeffu);
  EXPECT_FALSE(r.U8().has_value());
  EXPECT_FALSE(r.Skip(1));
  EXPECT_TRUE(r.at_end());
}

TEST(ByteReaderTest, HugeLengthsAreRejectedNotWrapped) {
  const unsigned char raw[] = {1, 2, 3};
  core::ByteReader r(std::as_bytes(std::span(raw)));
  EXPECT_FALSE(r.Bytes(~0ull).has_value());
  EXPECT_FALSE(r.Skip(~0ull));
  std::uint64_t out;
  EXPECT_FALSE(core::CheckedMul(~0ull, 2, &out));
  EXPECT_FALSE(core::CheckedAdd(~0ull, 1, &out));
}

TEST(HashTest, Sha256KnownVectors) {
  EXPECT_EQ(core::ToHex(core::Sha256Of(std::string_view(""))),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(core::ToHex(core::Sha256Of(std::string_view("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(FileTest, MapsFilesIncludingEmptyOnes) {
  testing::TempDir dir;
  auto p = (dir.path() / "a.bin").string();
  { std::ofstream(p) << "hello"; }
  auto m = core::MappedFile::Open(p);
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  EXPECT_EQ(core::AsStringView(m->bytes()), "hello");
  EXPECT_EQ(core::ToHex(*core::Sha256File(p)),
            core::ToHex(core::Sha256Of(std::string_view("hello"))));

  auto e = (dir.path() / "empty").string();
  { std::ofstream(e) << ""; }
  auto me = core::MappedFile::Open(e);
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(me->size(), 0u);

  auto missing = core::MappedFile::Open((dir.path() / "nope").string());
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
  EXPECT_EQ(core::MappedFile::Open(dir.path().string()).error().code(),
            StatusCode::kInvalidArgument);
}

TEST(FileTest, WriteFileAtomicReplacesContents) {
  testing::TempDir dir;
  auto p = (dir.path() / "out.txt").string();
  ASSERT_TRUE(core::WriteFileAtomic(p, "one").ok());
  ASSERT_TRUE(core::WriteFileAtomic(p, "two").ok());
  EXPECT_EQ(*core::ReadSmallFile(p), "two");
  EXPECT_EQ(core::ReadSmallFile(p, 2).error().code(), StatusCode::kLimitExceeded);
}

// Attack: `-o /dev/stdout` (a link to a device) or a FIFO as the output. Written in place; the
// link and the FIFO stay what they were (a rename used to put a regular file over them).
TEST(FileTest, WriteFileAtomicWritesALinkToADeviceOrAFifoInPlace) {
  testing::TempDir dir;
  const std::string link = (dir.path() / "stdout-link").string();
  ASSERT_EQ(::symlink("/dev/null", link.c_str()), 0);
  ASSERT_TRUE(core::WriteFileAtomic(link, "report").ok());
  struct stat st;
  ASSERT_EQ(::lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the link was replaced by a regular file";

  const std::string fifo = (dir.path() / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // The reader is there first (a FIFO nobody reads is refused, see below).
  int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  EXPECT_TRUE(core::WriteFileAtomic(fifo, "through the fifo").ok());
  char buf[64];
  ssize_t n = ::read(reader, buf, sizeof buf);
  ::close(reader);
  std::string received(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  EXPECT_EQ(received, "through the fifo");
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_FALSE(core::WriteFileAtomic(dir.path().string(), "x").ok()) << "a folder is refused";
}

// Attack (red team): an output planted as a link to a device: only a terminal, /dev/null, a FIFO
// or this process's own stdout/stderr are written in place; a disk or /dev/zero is refused.
TEST(FileTest, ClassifyOutputRefusesDevicesOtherThanTerminalsAndNull) {
  testing::TempDir dir;
  EXPECT_EQ(core::ClassifyOutput((dir.path() / "new.json").string()), core::OutputTarget::kReplace);
  EXPECT_EQ(core::ClassifyOutput(dir.path().string()), core::OutputTarget::kFolder);
  EXPECT_EQ(core::ClassifyOutput("/dev/null"), core::OutputTarget::kInPlace);
  EXPECT_EQ(core::ClassifyOutput("/dev/zero"), core::OutputTarget::kRefused);
  const std::string zero_link = (dir.path() / "zero-link").string();
  ASSERT_EQ(::symlink("/dev/zero", zero_link.c_str()), 0);
  EXPECT_EQ(core::ClassifyOutput(zero_link), core::OutputTarget::kRefused);
  EXPECT_FALSE(core::WriteFileAtomic(zero_link, "x").ok());
  struct stat st;
  ASSERT_EQ(::lstat(zero_link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  // Any block device there is, without writing to it.
  for (const char* disk : {"/dev/loop0", "/dev/vda", "/dev/sda", "/dev/nvme0n1"}) {
    if (::stat(disk, &st) == 0 && S_ISBLK(st.st_mode))
      EXPECT_EQ(core::ClassifyOutput(disk), core::OutputTarget::kRefused) << disk;
  }
  int std_fd = 0;
  if (::fstat(1, &st) == 0) {
    EXPECT_EQ(core::ClassifyOutput("/proc/self/fd/1", &std_fd), core::OutputTarget::kStdStream);
    EXPECT_EQ(std_fd, 1);
  }
}

// Attack (red team): a FIFO planted as the output with nobody reading it: an error, not a hang.
TEST(FileTest, WriteFileAtomicToAFifoNobodyReadsFailsAtOnce) {
  testing::TempDir dir;
  const std::string fifo = (dir.path() / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Status s = core::WriteFileAtomic(fifo, "x");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("nobody reads"), std::string::npos) << s.message();
}

// A file's timestamps move in clock ticks of a few milliseconds: wait for the next tick, so that a
// write right after is stamped later than the file's creation.
void WaitForTheNextTimestampTick(const std::string& path) {
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  const std::string probe = path + ".tick";
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(core::WriteFileAtomic(probe, "t").ok());
    struct stat now {};
    ASSERT_EQ(::stat(probe.c_str(), &now), 0);
    if (now.st_ctim.tv_sec != before.st_ctim.tv_sec ||
        now.st_ctim.tv_nsec != before.st_ctim.tv_nsec)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Attack: another file renamed over a checked model's path. The pinned file still reads the
// checked bytes, and reports the change (the replaced file's ctime moves when it loses its name),
// so serve retires the worker and checks the new file before loading it.
TEST(PinnedFileTest, FileRenamedOverThePathIsNotWhatThePinnedFileReads) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "model.gguf").string();
  ASSERT_TRUE(core::WriteFileAtomic(path, "checked bytes").ok());
  auto pinned = core::PinnedFile::Open(path);
  ASSERT_TRUE(pinned.has_value()) << pinned.error().message();
  ASSERT_TRUE(core::WriteFileAtomic(path, "tampered bytes!").ok());  // a new file, renamed over
  auto mapped = core::MappedFile::FromFd(pinned->fd(), path);
  ASSERT_TRUE(mapped.has_value());
  EXPECT_EQ(core::AsStringView(mapped->bytes()), "checked bytes");
  EXPECT_EQ(pinned->Unchanged().code(), StatusCode::kPermissionDenied);
}

// Attack: the checked model written in place, same size (one byte flipped), or appended to.
TEST(PinnedFileTest, WriteInPlaceIsSeen) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "model.gguf").string();
  ASSERT_TRUE(core::WriteFileAtomic(path, "checked bytes").ok());
  WaitForTheNextTimestampTick(path);
  for (bool append : {false, true}) {
    auto pinned = core::PinnedFile::Open(path);
    ASSERT_TRUE(pinned.has_value());
    EXPECT_TRUE(pinned->Unchanged().ok());
    {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      if (append) {
        f.seekp(0, std::ios::end);
      } else {
        f.seekp(0);
      }
      f.put('C');
    }
    Status s = pinned->Unchanged();
    EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << (append ? "append" : "flip");
    EXPECT_NE(s.message().find("written to"), std::string::npos) << s.message();
    WaitForTheNextTimestampTick(path);
  }
}

// Attack (red team R1): whoever can write the model dirties its pages through a shared writable
// mapping before the check, then changes them through the same mapping afterwards. Such writes
// move no timestamp (the pages are already writable, so no fault updates mtime), so Unchanged()
// cannot see them; the sealed private copy still reads the checked bytes.
TEST(PinnedFileTest, WritesThroughADirtySharedMappingDoNotReachTheSealedCopy) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "model.gguf").string();
  const std::string checked(3 * 4096 + 17, 'c');
  ASSERT_TRUE(core::WriteFileAtomic(path, checked).ok());
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  void* p = ::mmap(nullptr, checked.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  ::close(fd);
  char* bytes = static_cast<char*>(p);
  for (std::size_t i = 0; i < checked.size(); i += 4096) bytes[i] = 'c';  // dirty every page
  WaitForTheNextTimestampTick(path);

  auto pinned = core::PinnedFile::Open(path);
  ASSERT_TRUE(pinned.has_value()) << pinned.error().message();
  Status sealed = pinned->SealPrivateCopy();
  ASSERT_TRUE(sealed.ok()) << sealed.message();
  EXPECT_TRUE(pinned->sealed());
  std::memset(bytes, 't', checked.size());  // the tamper, through the dirty mapping

  auto mapped = core::MappedFile::FromFd(pinned->fd(), path);
  ASSERT_TRUE(mapped.has_value()) << mapped.error().message();
  EXPECT_EQ(core::AsStringView(mapped->bytes()), checked);
  std::string reread(checked.size(), '\0');
  ASSERT_EQ(::pread(pinned->fd(), reread.data(), reread.size(), 0),
            static_cast<ssize_t>(reread.size()));
  EXPECT_EQ(reread, checked);
  ::munmap(p, checked.size());
}

// Attack: whoever can write the model makes it a huge sparse file, so that the copy made to check
// it would take the machine's memory (the OOM killer, not a refusal). Refused before copying.
TEST(PinnedFileTest, SparseFileLargerThanMemoryIsRefusedBeforeItIsCopied) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "model.gguf").string();
  ASSERT_TRUE(core::WriteFileAtomic(path, "GGUF").ok());
  ASSERT_EQ(::truncate(path.c_str(), off_t{4} << 40), 0) << std::strerror(errno);  // 4 TiB
  auto pinned = core::PinnedFile::Open(path);
  ASSERT_TRUE(pinned.has_value()) << pinned.error().message();
  Status s = pinned->SealPrivateCopy();
  EXPECT_EQ(s.code(), StatusCode::kIo);
  EXPECT_NE(s.message().find("memory available"), std::string::npos) << s.message();
  EXPECT_FALSE(pinned->sealed());
}

// The sealed copy cannot be written, shrunk, grown or unsealed by anyone holding its descriptor
// (a model worker inherits it).
TEST(PinnedFileTest, SealedCopyRefusesWritesResizingAndUnsealing) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "model.gguf").string();
  ASSERT_TRUE(core::WriteFileAtomic(path, "checked bytes").ok());
  auto pinned = core::PinnedFile::Open(path);
  ASSERT_TRUE(pinned.has_value());
  ASSERT_TRUE(pinned->SealPrivateCopy().ok());
  // Opened again for writing (as /proc/<pid>/fd/N lets a holder of the descriptor do), it still
  // cannot be changed: the seals hold for every descriptor.
  const int fd = ::open(("/proc/self/fd/" + std::to_string(pinned->fd())).c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(::pwrite(fd, "X", 1, 0), -1);
  EXPECT_EQ(::ftruncate(fd, 1), -1);
  EXPECT_EQ(::ftruncate(fd, 1 << 20), -1);
  EXPECT_EQ(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), MAP_FAILED);
  EXPECT_EQ(::fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), -1);
  const int seals = ::fcntl(fd, F_GET_SEALS);
  ASSERT_NE(seals, -1) << "not a sealable memory file";
  const int wanted = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  EXPECT_EQ(seals & wanted, wanted);
  ::close(fd);
  char buf[32] = {};
  ASSERT_EQ(::pread(pinned->fd(), buf, sizeof(buf), 0), 13);
  EXPECT_EQ(std::string(buf, 13), "checked bytes");
  // The file at the path is still watched: a change to it is reported.
  EXPECT_TRUE(pinned->Unchanged().ok());
  ASSERT_TRUE(core::WriteFileAtomic(path, "tampered bytes").ok());
  EXPECT_EQ(pinned->Unchanged().code(), StatusCode::kPermissionDenied);
}

// Attack: a FIFO planted as the model: refused at once, not a hang on open.
TEST(PinnedFileTest, FifoOrFolderIsRefusedAtOnce) {
  testing::TempDir dir;
  const std::string fifo = (dir.path() / "model.gguf").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto pinned = core::PinnedFile::Open(fifo);
  ASSERT_FALSE(pinned.has_value());
  EXPECT_EQ(pinned.error().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(core::PinnedFile::Open(dir.path().string()).has_value());
  EXPECT_EQ(core::PinnedFile::Open((dir.path() / "absent").string()).error().code(),
            StatusCode::kNotFound);
}

// Attack: in a shared folder another user plants the temporary name as a link to a file of ours;
// the write must not follow it (and so must not truncate the victim).
TEST(FileTest, WriteFileAtomicDoesNotFollowAPlantedTemporaryName) {
  testing::TempDir dir;
  const std::string victim = (dir.path() / "victim").string();
  ASSERT_TRUE(core::WriteFileAtomic(victim, "precious").ok());
  const std::string out = (dir.path() / "out.json").string();
  for (int attempt = 0; attempt < 4; ++attempt) {
    const std::string planted =
        out + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(attempt);
    ASSERT_EQ(::symlink(victim.c_str(), planted.c_str()), 0);
  }
  ASSERT_TRUE(core::WriteFileAtomic(out, "fresh").ok());
  EXPECT_EQ(*core::ReadSmallFile(victim), "precious");
  EXPECT_EQ(*core::ReadSmallFile(out), "fresh");
}

// Writes `bytes` into the write end of a new pipe from a thread; the read end is returned.
class PipeWriter {
 public:
  explicit PipeWriter(std::string bytes) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    read_fd_ = fds[0];
    writer_ = std::thread([fd = fds[1], bytes = std::move(bytes)] {
      std::size_t done = 0;
      while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n <= 0) break;  // the reader stopped at its cap and closed the pipe
        done += static_cast<std::size_t>(n);
      }
      ::close(fd);
    });
  }
  ~PipeWriter() {
    ::close(read_fd_);
    writer_.join();
  }
  int read_fd() const { return read_fd_; }

 private:
  int read_fd_ = -1;
  std::thread writer_;
};

TEST(FileTest, ReadAllBoundedAcceptsExactlyTheLimit) {
  PipeWriter pipe(std::string(100000, 'x'));
  auto read = core::ReadAllBounded(pipe.read_fd(), 100000);
  ASSERT_TRUE(read.has_value()) << read.error().ToString();
  EXPECT_EQ(read->size(), 100000u);
}

TEST(FileTest, ReadAllBoundedRefusesOneBytePastTheLimit) {
  PipeWriter pipe(std::string(100001, 'x'));
  auto read = core::ReadAllBounded(pipe.read_fd(), 100000);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code(), StatusCode::kLimitExceeded);
}

TEST(FileTest, ReadAllBoundedWithZeroLimitReadsEmptyInput) {
  PipeWriter empty("");
  auto read = core::ReadAllBounded(empty.read_fd(), 0);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(*read, "");
  PipeWriter one("x");
  EXPECT_EQ(core::ReadAllBounded(one.read_fd(), 0).error().code(), StatusCode::kLimitExceeded);
}

// A FIFO without a writer is refused at once: the size check and the read share one descriptor
// opened without blocking, so ReadSmallFile neither hangs nor reads a stream it did not size.
TEST(FileTest, ReadSmallFileRefusesAFifoWithoutHanging) {
  testing::TempDir dir;
  const auto fifo = (dir.path() / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto read = core::ReadSmallFile(fifo);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(core::MappedFile::Open(fifo).error().code(), StatusCode::kInvalidArgument);
}

TEST(FileTest, TextInputReadsAPipe) {
  PipeWriter pipe("line one\nline two\n");
  auto input = core::TextInput::FromFd(pipe.read_fd(), "the pipe", 1 << 20);
  ASSERT_TRUE(input.has_value()) << input.error().ToString();
  EXPECT_EQ(input->text(), "line one\nline two\n");
}

TEST(FileTest, TextInputRefusesAPipePastTheCapWithAClearError) {
  PipeWriter pipe(std::string(5000, 'y'));
  auto input = core::TextInput::FromFd(pipe.read_fd(), "the pipe", 4096);
  ASSERT_FALSE(input.has_value());
  EXPECT_EQ(input.error().code(), StatusCode::kLimitExceeded);
  EXPECT_NE(input.error().message().find("the pipe is larger than the limit of 4096 bytes"),
            std::string::npos)
      << input.error().message();
}

TEST(FileTest, TextInputMapsARegularFileAndCapsItToo) {
  testing::TempDir dir;
  const auto p = (dir.path() / "t.txt").string();
  { std::ofstream(p) << "some text"; }
  auto input = core::TextInput::Open(p, 9);
  ASSERT_TRUE(input.has_value()) << input.error().ToString();
  EXPECT_EQ(input->text(), "some text");
  EXPECT_EQ(core::TextInput::Open(p, 8).error().code(), StatusCode::kLimitExceeded);

  const auto empty = (dir.path() / "empty.txt").string();
  { std::ofstream(empty) << ""; }
  auto e = core::TextInput::Open(empty, 8);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->text(), "");

  EXPECT_EQ(core::TextInput::Open(dir.path().string(), 8).error().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(core::TextInput::Open((dir.path() / "nope").string(), 8).error().code(),
            StatusCode::kNotFound);
}

// A named FIFO waits for its writer (as `-f <(cmd)` needs) and is then read like a pipe.
TEST(FileTest, TextInputOpensANamedFifo) {
  testing::TempDir dir;
  const auto fifo = (dir.path() / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "from a fifo", 11), 11);
    ::close(fd);
  });
  auto input = core::TextInput::Open(fifo, 1024);
  writer.join();
  ASSERT_TRUE(input.has_value()) << input.error().ToString();
  EXPECT_EQ(input->text(), "from a fifo");
}

}  // namespace
}  // namespace airlock

namespace airlock::core {
namespace {

TEST(TerminalSafeTest, AnsiEscapesAndNewlinesCannotReachTheTerminal) {
  // A key or file name that would clear the screen, move the cursor and forge a table row.
  std::string hostile = "ci\x1b[2J\x1b[1;1Hadmin\nrow\r\x07\x7f";
  std::string safe = TerminalSafe(hostile);
  EXPECT_EQ(safe, "ci\\x1b[2J\\x1b[1;1Hadmin\\nrow\\r\\x07\\x7f");
  for (char c : safe) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f);
  EXPECT_TRUE(HasUnsafeTerminalText(hostile));
}

TEST(TerminalSafeTest, C1ControlsBidiOverridesAndInvalidUtf8AreEscaped) {
  EXPECT_EQ(TerminalSafe("a\xc2\x9b"
                         "31mb"),
            "a\\u009b31mb");                                   // C1 CSI
  EXPECT_EQ(TerminalSafe("x\xe2\x80\xaeyz"), "x\\u202eyz");    // right-to-left override
  EXPECT_EQ(TerminalSafe("\xff\xc0\xaf"), "\\xff\\xc0\\xaf");  // invalid, overlong
  EXPECT_EQ(TerminalSafe("back\\slash"), "back\\\\slash");
  EXPECT_TRUE(HasUnsafeTerminalText("\xe2\x81\xa6"));  // U+2066 isolate
  EXPECT_TRUE(HasUnsafeTerminalText("\xed\xa0\x80"));  // surrogate
}

TEST(TerminalSafeTest, ProseKeepsLinesTabsAndBackslashesButNotEscapes) {
  // Generated text: code with "\\n" and real newlines stays readable, a token holding an OSC
  // sequence (set the window title) or a carriage return does not act.
  EXPECT_EQ(TerminalSafeText("printf(\"a\\n\");\n\tx\x1b]0;pwned\x07\rover"),
            "printf(\"a\\n\");\n\tx\\x1b]0;pwned\\x07\\rover");
  EXPECT_EQ(TerminalSafeText("\xc2\x9b"), "\\u009b");
}

TEST(TerminalSafeTest, PrintableUtf8PassesUnchanged) {
  std::string text = "modèle Qwen2.5 — 模型 🙂 model.safetensors";
  EXPECT_EQ(TerminalSafe(text), text);
  EXPECT_FALSE(HasUnsafeTerminalText(text));
  EXPECT_FALSE(HasUnsafeTerminalText(""));
}

}  // namespace
}  // namespace airlock::core

namespace airlock::core {
namespace {

// One encoder serves signing (DSSE, Sigstore bundles) and the audit log's signed notes.
TEST(Base64Test, EncodesTheRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode(std::string("\xff\xfe\x00\x80", 4)), "//4AgA==");
}

}  // namespace
}  // namespace airlock::core
