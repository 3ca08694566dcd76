// The sandbox module in a real child process: each test forks, the child applies the sandbox and
// then attempts what a parser exploit would, and reports through its exit status. No mock of the
// kernel: seccomp and Landlock decide.
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>
#include <vector>

#include "core/file.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using airlock::sandbox::Policy;

constexpr int kApplyFailed = 100;

// Runs `body` in a forked child after applying `policy`; returns the child's exit code (the
// body's result), kApplyFailed when Apply refused, or -signal when the child was killed.
int InSandbox(const Policy& policy, const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    auto applied = airlock::sandbox::Apply(policy);
    if (!applied.has_value()) ::_exit(kApplyFailed);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

// 0 when `rc` failed with `want`, 1 when it succeeded, 2 when it failed with another errno.
int FailedWith(long rc, int want) {
  if (rc >= 0) return 1;
  return errno == want ? 0 : 2;
}

bool HasLandlock() { return airlock::sandbox::LandlockAbi() > 0; }

void WriteText(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

TEST(Sandbox, ReportsTheLandlockAbi) {
  const int abi = airlock::sandbox::LandlockAbi();
  EXPECT_GE(abi, 0);
  std::printf("Landlock ABI of this kernel: %d\n", abi);
}

// Attack (red team): sandboxed code pushes `id > file\n` into the terminal it inherited with
// TIOCSTI, and the user's shell runs it outside the sandbox. The filter answers EPERM before the
// kernel looks (a kernel that has legacy TIOCSTI off says EIO instead).
TEST(Sandbox, ExploitCannotTypeIntoItsTerminal) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) GTEST_SKIP() << "no pseudo-terminal here";
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const std::string terminal_path = ::ptsname(master);
  // In a child of its own session whose controlling terminal is the pty (as a command started
  // from a shell): 0 when TIOCSTI worked, else its errno; 200 + n when setup step n failed.
  auto attempt = [&](bool sandboxed, unsigned long request) {
    pid_t pid = ::fork();
    if (pid == 0) {
      if (::setsid() < 0) ::_exit(201);
      int terminal = ::open(terminal_path.c_str(), O_RDWR);  // becomes the controlling terminal
      if (terminal < 0) ::_exit(202);
      if (sandboxed && !airlock::sandbox::Apply({}).has_value()) ::_exit(203);
      char byte = 0;
      ::_exit(::ioctl(terminal, request, &byte) == 0 ? 0 : errno);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
  };
  const int unconfined = attempt(false, TIOCSTI);
  if (unconfined == EPERM)
    GTEST_SKIP() << "the kernel already refuses TIOCSTI here with EPERM; nothing to tell apart";
  EXPECT_EQ(attempt(true, TIOCSTI), EPERM) << "unconfined the same call gave " << unconfined;
  EXPECT_EQ(attempt(true, TIOCLINUX), EPERM);
  ::close(master);
}

// Attack (red team): the worker finds the gateway with getppid() and lowers its limits
// (prlimit: CPU time 1 s, 3 open files) or its priority, or signals it: the gateway hangs or
// dies. Every call that reaches another process by pid is refused; on itself they still work.
TEST(Sandbox, ExploitCannotReachItsParentByPid) {
  EXPECT_EQ(InSandbox({},
                      [] {
                        struct rlimit limit {
                          1, 1
                        };
                        return FailedWith(::prlimit(::getppid(), RLIMIT_CPU, &limit, nullptr),
                                          EPERM);
                      }),
            0);
  EXPECT_EQ(InSandbox({},
                      [] {
                        struct rlimit limit;
                        return FailedWith(::prlimit(::getppid(), RLIMIT_NOFILE, nullptr, &limit),
                                          EPERM);
                      }),
            0);
  EXPECT_EQ(
      InSandbox({}, [] { return FailedWith(::setpriority(PRIO_PROCESS, ::getppid(), 19), EPERM); }),
      0);
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::setpriority(PRIO_USER, 0, 19), EPERM); }), 0);
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::kill(::getppid(), SIGKILL), EPERM); }), 0);
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::kill(0, SIGKILL), EPERM); }), 0);
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::kill(-1, SIGKILL), EPERM); }), 0);
  EXPECT_EQ(InSandbox({},
                      [] {
                        return FailedWith(::syscall(SYS_tgkill, ::getppid(), ::getppid(), SIGKILL),
                                          EPERM);
                      }),
            0);
  EXPECT_EQ(
      InSandbox({}, [] { return FailedWith(::syscall(SYS_pidfd_open, ::getppid(), 0), EPERM); }),
      0);
  EXPECT_EQ(InSandbox({},
                      [] {
                        cpu_set_t set;
                        CPU_ZERO(&set);
                        CPU_SET(0, &set);
                        return FailedWith(::sched_setaffinity(::getppid(), sizeof set, &set),
                                          EPERM);
                      }),
            0);
  // On itself: limits, priority and signals (raise, abort) keep working.
  EXPECT_EQ(InSandbox({},
                      [] {
                        struct rlimit limit;
                        if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1;
                        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 2;
                        // One step nicer than now: allowed without privileges, also when the
                        // test itself runs under `nice`.
                        errno = 0;
                        const int nice_now = ::getpriority(PRIO_PROCESS, 0);
                        if (errno != 0) return 3;
                        if (::setpriority(PRIO_PROCESS, 0, std::min(nice_now + 1, 19)) != 0)
                          return 3;
                        if (::kill(::getpid(), 0) != 0) return 4;
                        ::signal(SIGUSR1, SIG_IGN);
                        if (::raise(SIGUSR1) != 0) return 5;
                        return 0;
                      }),
            0);
}

// As root, the sandboxed process keeps only the file capabilities (Landlock confines files):
// none that reach other processes or the system.
TEST(Sandbox, RootKeepsOnlyFileCapabilities) {
  if (::geteuid() != 0) GTEST_SKIP() << "not root: no capabilities to drop";
  EXPECT_EQ(InSandbox({},
                      [] {
                        __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
                        __user_cap_data_struct data[2]{};
                        if (::syscall(SYS_capget, &header, data) != 0) return 1;
                        const std::uint64_t effective =
                            data[0].effective | (std::uint64_t{data[1].effective} << 32);
                        const std::uint64_t allowed = (std::uint64_t{1} << CAP_DAC_OVERRIDE) |
                                                      (std::uint64_t{1} << CAP_DAC_READ_SEARCH);
                        return (effective & ~allowed) == 0 ? 0 : 2;
                      }),
            0);
}

TEST(Sandbox, ExploitCannotOpenASocket) {
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::socket(AF_INET, SOCK_STREAM, 0), EPERM); }), 0);
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::socket(AF_UNIX, SOCK_STREAM, 0), EPERM); }), 0);
  EXPECT_EQ(InSandbox({},
                      [] {
                        int sv[2];
                        return FailedWith(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), EPERM);
                      }),
            0);
}

TEST(Sandbox, ExploitCannotExecAProgram) {
  EXPECT_EQ(InSandbox({},
                      [] {
                        char arg0[] = "true";
                        char* argv[] = {arg0, nullptr};
                        char* envp[] = {nullptr};
                        return FailedWith(::execve("/bin/true", argv, envp), EPERM);
                      }),
            0);
  EXPECT_EQ(InSandbox({},
                      [] {
                        char arg0[] = "sh";
                        char arg1[] = "-c";
                        char arg2[] = "exit 0";
                        char* argv[] = {arg0, arg1, arg2, nullptr};
                        char* envp[] = {nullptr};
                        return FailedWith(
                            ::syscall(SYS_execveat, AT_FDCWD, "/bin/sh", argv, envp, 0), EPERM);
                      }),
            0);
}

TEST(Sandbox, ExploitCannotStartAProcess) {
  EXPECT_EQ(InSandbox({},
                      [] {
                        pid_t p = ::fork();
                        if (p == 0) ::_exit(0);
                        return FailedWith(p, EPERM);
                      }),
            0);
  // The raw clone a fork is made of, without glibc's wrapper.
  EXPECT_EQ(InSandbox({},
                      [] {
                        long p = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
                        if (p == 0) ::_exit(0);
                        return FailedWith(p, EPERM);
                      }),
            0);
  // clone3 hides its flags from seccomp: refused as if the kernel lacked it.
  EXPECT_EQ(InSandbox({},
                      [] {
                        struct {
                          std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack,
                              stack_size, tls;
                        } args{};
                        args.exit_signal = SIGCHLD;
                        long p = ::syscall(SYS_clone3, &args, sizeof args);
                        if (p == 0) ::_exit(0);
                        return FailedWith(p, ENOSYS);
                      }),
            0);
}

TEST(Sandbox, ExploitCannotPtrace) {
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::ptrace(PTRACE_TRACEME, 0, 0, 0), EPERM); }), 0);
}

TEST(Sandbox, ExploitCannotEscapeThroughIoUringOrNamespaces) {
  EXPECT_EQ(
      InSandbox({}, [] { return FailedWith(::syscall(SYS_io_uring_setup, 8, nullptr), EPERM); }),
      0);
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::unshare(CLONE_NEWUSER), EPERM); }), 0);
}

// Found by an outside attack: these administration calls still worked inside the sandbox.
TEST(Sandbox, ExploitCannotChrootOrUseUserfaultfdOrBpf) {
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::chroot("/tmp"), EPERM); }), 0);
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::syscall(SYS_userfaultfd, 0), EPERM); }), 0);
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::syscall(SYS_bpf, 0, nullptr, 0), EPERM); }), 0);
  EXPECT_EQ(
      InSandbox(
          {},
          [] { return FailedWith(::syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0), EPERM); }),
      0);
}

// Found by an outside attack: `-o /dev/stdout` granted writes in all of /dev. An output that is
// not a regular file is granted alone.
TEST(Sandbox, DeviceOutputGrantsThatFileNotItsFolder) {
  if (!HasLandlock()) GTEST_SKIP() << "this kernel has no Landlock";
  Policy policy;
  policy.write_paths = {"/dev/null"};
  EXPECT_EQ(InSandbox(policy,
                      [] {
                        int fd = ::open("/dev/null", O_WRONLY);
                        if (fd < 0) return 3;
                        ::close(fd);
                        return FailedWith(
                            ::open("/dev/shm/airlock-sandbox-test", O_WRONLY | O_CREAT, 0600),
                            EACCES);
                      }),
            0);
  EXPECT_FALSE(fs::exists("/dev/shm/airlock-sandbox-test"));
}

TEST(Sandbox, ThreadsStillStart) {
  EXPECT_EQ(InSandbox({},
                      [] {
                        std::atomic<int> ran{0};
                        std::vector<std::thread> pool;
                        for (int i = 0; i < 8; ++i) pool.emplace_back([&] { ++ran; });
                        for (auto& t : pool) t.join();
                        return ran == 8 ? 0 : 1;
                      }),
            0);
}

TEST(Sandbox, RefusedOnceASecondThreadRuns) {
  // Landlock would bind only the calling thread: fail closed rather than leave one unconfined.
  pid_t pid = ::fork();
  if (pid == 0) {
    std::atomic<bool> stop{false};
    std::thread idle([&] {
      while (!stop) std::this_thread::yield();
    });
    auto applied = airlock::sandbox::Apply({});
    stop = true;
    idle.join();
    ::_exit(!applied.has_value() && applied.error().code() == airlock::StatusCode::kInvalidArgument
                ? 0
                : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Sandbox, ExploitCannotReadOutsideTheInputs) {
  if (!HasLandlock()) GTEST_SKIP() << "this kernel has no Landlock";
  airlock::testing::TempDir dir("sandbox-read");
  fs::create_directories(dir.path() / "model");
  WriteText(dir.path() / "model" / "weights.bin", "weights");
  WriteText(dir.path() / "secret.key", "secret");
  Policy policy;
  policy.read_paths = {(dir.path() / "model").string()};
  const std::string inside = (dir.path() / "model" / "weights.bin").string();
  const std::string outside = (dir.path() / "secret.key").string();
  EXPECT_EQ(InSandbox(policy,
                      [&] {
                        auto mapped = airlock::core::MappedFile::Open(inside);  // mmap still works
                        if (!mapped.has_value() || mapped->size() != 7) return 3;
                        return FailedWith(::open(outside.c_str(), O_RDONLY), EACCES);
                      }),
            0);
  // A file input grants that file, not its folder.
  policy.read_paths = {inside};
  EXPECT_EQ(InSandbox(policy,
                      [&] {
                        const std::string sibling = (dir.path() / "model").string();
                        return FailedWith(::open(sibling.c_str(), O_RDONLY | O_DIRECTORY), EACCES);
                      }),
            0);
  // Nor anything of the user's outside the system paths.
  EXPECT_EQ(InSandbox({}, [] { return FailedWith(::open("/etc/passwd", O_RDONLY), EACCES); }), 0);
}

TEST(Sandbox, ExploitCannotWriteOutsideTheOutputs) {
  if (!HasLandlock()) GTEST_SKIP() << "this kernel has no Landlock";
  airlock::testing::TempDir dir("sandbox-write");
  fs::create_directories(dir.path() / "reports");
  fs::create_directories(dir.path() / "home");
  Policy policy;
  policy.read_paths = {(dir.path() / "home").string()};  // readable is not writable
  policy.write_paths = {(dir.path() / "reports" / "scan.sarif").string()};
  const std::string report = (dir.path() / "reports" / "scan.sarif").string();
  const std::string bashrc = (dir.path() / "home" / ".bashrc").string();
  EXPECT_EQ(InSandbox(policy,
                      [&] {
                        // The legitimate output, written the way the commands write it.
                        if (!airlock::core::WriteFileAtomic(report, "{}").ok()) return 3;
                        return FailedWith(::open(bashrc.c_str(), O_WRONLY | O_CREAT, 0644), EACCES);
                      }),
            0);
  EXPECT_TRUE(fs::exists(report));
  EXPECT_FALSE(fs::exists(bashrc));
  EXPECT_EQ(InSandbox(policy,
                      [&] {
                        const std::string dir_path = (dir.path() / "home" / "x").string();
                        return FailedWith(::mkdir(dir_path.c_str(), 0755), EACCES);
                      }),
            0);
}

TEST(Sandbox, TestHookReportsEachAttempt) {
  if (!HasLandlock()) GTEST_SKIP() << "this kernel has no Landlock";
  airlock::testing::TempDir dir("sandbox-hook");
  const std::string out = (dir.path() / "out.txt").string();
  Policy policy;
  policy.write_paths = {out};
  // The child's lines go back through a pipe.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string spec = "socket,fork,thread,write:" + out + ",read:/etc/passwd";
  int rc = InSandbox(policy, [&] {
    std::string text;
    auto lines = airlock::sandbox::RunTestAttempts(spec);
    for (auto& l : lines) text += l + "\n";
    if (::write(fds[1], text.data(), text.size()) < 0) return 4;
    return 0;
  });
  ::close(fds[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, n);
  ::close(fds[0]);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(got,
            "airlock sandbox test: socket: errno=EPERM\n"
            "airlock sandbox test: fork: errno=EPERM\n"
            "airlock sandbox test: thread: ok\n"
            "airlock sandbox test: write:" +
                out +
                ": ok\n"
                "airlock sandbox test: read:/etc/passwd: errno=EACCES\n");
}

}  // namespace
