#include "sandbox/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <thread>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AIRLOCK_SANDBOX_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define AIRLOCK_SANDBOX_ASAN 1
#endif
#ifdef AIRLOCK_SANDBOX_ASAN
#include <sanitizer/lsan_interface.h>
#endif

namespace airlock::sandbox {
namespace {

// Debian 12's linux/landlock.h stops at ABI 2; the later access rights and attributes are part of
// the kernel's stable ABI, so they are spelled out here (values from the kernel's UAPI header).
constexpr std::uint64_t kFsTruncate = 1ULL << 14;  // ABI 3
constexpr std::uint64_t kFsIoctlDev = 1ULL << 15;  // ABI 5
constexpr std::uint64_t kNetBindTcp = 1ULL << 0;   // ABI 4
constexpr std::uint64_t kNetConnectTcp = 1ULL << 1;
constexpr std::uint64_t kScopeAbstractUnixSocket = 1ULL << 0;  // ABI 6
constexpr std::uint64_t kScopeSignal = 1ULL << 1;

// struct landlock_ruleset_attr as of ABI 6; the size passed tells the kernel which fields exist.
struct RulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;
  std::uint64_t scoped;
};

constexpr std::uint64_t kFsAbi1 =
    LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
    LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
    LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
    LANDLOCK_ACCESS_FS_MAKE_SYM;
// Rights that Landlock accepts on a rule for a file (not a folder).
constexpr std::uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                      LANDLOCK_ACCESS_FS_READ_FILE | kFsTruncate | kFsIoctlDev;
constexpr std::uint64_t kRead = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
constexpr std::uint64_t kWriteInFolder = LANDLOCK_ACCESS_FS_WRITE_FILE |
                                         LANDLOCK_ACCESS_FS_MAKE_REG |
                                         LANDLOCK_ACCESS_FS_REMOVE_FILE | kFsTruncate;

std::uint64_t HandledFs(int abi) {
  std::uint64_t fs = kFsAbi1;
  if (abi >= 2) fs |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) fs |= kFsTruncate;
  if (abi >= 5) fs |= kFsIoctlDev;
  return fs;
}

// Read-only system paths a running process may still open after start-up: libraries loaded late
// (libgcc_s for unwinding, NSS, gconv), locale and timezone data, ICU data when it is a file, the
// OpenSSL configuration read on first use, CPU topology for the thread count, its own /proc, the
// memory headroom (core::AvailableMemoryBytes: MemAvailable and the cgroup v2 limit and usage,
// checked before a KV cache is allocated).
const char* const kSystemReadPaths[] = {
    "/usr/lib",
    "/lib",
    "/lib64",
    "/usr/lib64",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/usr/share/locale",
    "/usr/lib/locale",
    "/usr/share/icu",
    "/etc/ssl/openssl.cnf",
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory.current",
    "/sys/devices/system/cpu",
};

int ThreadCount() {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

long LandlockCreateRuleset(const RulesetAttr* attr, std::size_t size, std::uint32_t flags) {
  return ::syscall(SYS_landlock_create_ruleset, attr, size, flags);
}

class Ruleset {
 public:
  Ruleset(int fd, std::uint64_t handled) : fd_(fd), handled_(handled) {}
  ~Ruleset() { ::close(fd_); }
  int fd() const { return fd_; }

  // Grants `rights` beneath `path` (only the file rights when it is a file). A path that does not
  // exist is skipped: the command's own open of it then fails with ENOENT as it would anyway.
  Status Allow(const std::string& path, std::uint64_t rights) {
    int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR || errno == EACCES) return Status::Ok();
      return IoError("sandbox: cannot open " + path + ": " + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return IoError("sandbox: cannot stat " + path + ": " + std::strerror(err));
    }
    if (!S_ISDIR(st.st_mode)) rights &= kFileRights;
    rights &= handled_;
    struct landlock_path_beneath_attr rule {};
    rule.allowed_access = rights;
    rule.parent_fd = fd;
    long rc = rights == 0
                  ? 0
                  : ::syscall(SYS_landlock_add_rule, fd_, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
    int err = errno;
    ::close(fd);
    // EBADFD: the path names no file system object (an anonymous pipe or socket, as /dev/stdin
    // does under a shell pipe). Landlock does not restrict such files; the command reaches it
    // through the descriptor it inherited, so it needs no rule.
    if (rc != 0 && err == EBADFD) return Status::Ok();
    if (rc != 0) return IoError("sandbox: landlock rule for " + path + ": " + std::strerror(err));
    return Status::Ok();
  }

 private:
  int fd_;
  std::uint64_t handled_;
};

std::string FolderOf(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec).lexically_normal();
  if (p.has_filename()) return p.parent_path().string();
  return p.parent_path().parent_path().string();  // "dir/" names the folder itself
}

Status ApplyLandlock(const Policy& policy, int abi, Applied* applied) {
  RulesetAttr attr{};
  attr.handled_access_fs = HandledFs(abi);
  std::size_t attr_size = sizeof(std::uint64_t);
  if (abi >= 4) {
    attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
    attr_size = 2 * sizeof(std::uint64_t);
    applied->network_rules = true;
  }
  if (abi >= 6) {
    attr.scoped = kScopeAbstractUnixSocket | kScopeSignal;
    attr_size = sizeof(RulesetAttr);
  }
  long fd = LandlockCreateRuleset(&attr, attr_size, 0);
  if (fd < 0)
    return IoError(std::string("sandbox: landlock_create_ruleset: ") + std::strerror(errno));
  Ruleset rules(static_cast<int>(fd), attr.handled_access_fs);
  for (const char* p : kSystemReadPaths) AIRLOCK_TRY(rules.Allow(p, kRead));
  // The program's own file: sanitizers and unwinders read it to symbolize.
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) AIRLOCK_TRY(rules.Allow(self.string(), LANDLOCK_ACCESS_FS_READ_FILE));
  AIRLOCK_TRY(
      rules.Allow("/dev/null", LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE));
  for (const std::string& p : policy.read_paths) {
    if (!p.empty()) AIRLOCK_TRY(rules.Allow(p, kRead));
  }
  for (const std::string& p : policy.write_paths) {
    if (p.empty()) continue;
    // An output that already exists and is not a regular file (-o /dev/stdout, a FIFO, a tty) is
    // written in place, never replaced: grant that file alone, not its folder (/dev).
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
      AIRLOCK_TRY(rules.Allow(p, kWriteInFolder));
      continue;
    }
    AIRLOCK_TRY(rules.Allow(FolderOf(p), kWriteInFolder));
  }
  if (::syscall(SYS_landlock_restrict_self, rules.fd(), 0) != 0)
    return IoError(std::string("sandbox: landlock_restrict_self: ") + std::strerror(errno));
  return Status::Ok();
}

// As root, keeps only the capabilities that let it read and write files other users own (the
// inputs and outputs, which Landlock confines): no CAP_SYS_RESOURCE, CAP_SYS_NICE, CAP_KILL,
// CAP_SYS_ADMIN... that a parser exploit could turn on other processes. Exec is refused, so the
// bounding and ambient sets do not matter.
Status DropCapabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0)
    return Unavailable(std::string("sandbox: capget: ") + std::strerror(errno));
  const std::uint64_t keep =
      (std::uint64_t{1} << CAP_DAC_OVERRIDE) | (std::uint64_t{1} << CAP_DAC_READ_SEARCH);
  for (int i = 0; i < 2; ++i) {
    const auto mask = static_cast<std::uint32_t>(keep >> (32 * i));
    data[i].effective &= mask;
    data[i].permitted &= mask;
    data[i].inheritable = 0;
  }
  if (::syscall(SYS_capset, &header, data) != 0)
    return Unavailable(std::string("sandbox: capset: ") + std::strerror(errno));
  return Status::Ok();
}

Status ApplySeccomp() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return Unavailable("sandbox: seccomp_init failed");
  const std::uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  int rc = 0;
  auto deny = [&](int nr, std::uint32_t action) {
    if (rc == 0) rc = seccomp_rule_add(ctx, action, nr, 0);
  };
  for (int nr : {SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv),
                 SCMP_SYS(process_vm_writev), SCMP_SYS(fork), SCMP_SYS(vfork), SCMP_SYS(unshare),
                 SCMP_SYS(setns), SCMP_SYS(socket), SCMP_SYS(socketpair), SCMP_SYS(io_uring_setup),
                 SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
                 // Administration and kernel attack surface no model reader needs.
                 SCMP_SYS(chroot), SCMP_SYS(pivot_root), SCMP_SYS(mount), SCMP_SYS(umount2),
                 SCMP_SYS(userfaultfd), SCMP_SYS(bpf), SCMP_SYS(perf_event_open), SCMP_SYS(keyctl),
                 SCMP_SYS(add_key), SCMP_SYS(request_key), SCMP_SYS(init_module),
                 SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(kexec_load),
                 SCMP_SYS(kexec_file_load), SCMP_SYS(reboot), SCMP_SYS(swapon), SCMP_SYS(swapoff),
                 SCMP_SYS(acct), SCMP_SYS(open_by_handle_at), SCMP_SYS(name_to_handle_at)}) {
    deny(nr, eperm);
  }
  // Calls that reach another process by pid: the parent (the gateway, the shell) or any other
  // process of the same user. Allowed only on this process (pid 0, or our own pid for the
  // signal calls glibc makes: raise and abort use tgkill(getpid(), ...)). Apply runs before any
  // thread starts, so getpid() is every later thread's tgid. Landlock's signal scoping (ABI 6)
  // refuses kill on its own where the kernel has it; this is the same rule for older kernels
  // and for the calls Landlock does not see (prlimit, setpriority, scheduler, I/O priority).
  const int self = static_cast<int>(::getpid());
  auto deny_if = [&](int nr, scmp_arg_cmp cmp) {
    if (rc == 0) rc = seccomp_rule_add(ctx, eperm, nr, 1, cmp);
  };
  deny_if(SCMP_SYS(prlimit64), SCMP_A0_32(SCMP_CMP_NE, 0));
  deny_if(SCMP_SYS(setpriority), SCMP_A0_32(SCMP_CMP_NE, PRIO_PROCESS));
  deny_if(SCMP_SYS(setpriority), SCMP_A1_32(SCMP_CMP_NE, 0));
  deny_if(SCMP_SYS(ioprio_set), SCMP_A1_32(SCMP_CMP_NE, 0));
  for (int nr :
       {SCMP_SYS(sched_setaffinity), SCMP_SYS(sched_setparam), SCMP_SYS(sched_setscheduler),
        SCMP_SYS(sched_setattr), SCMP_SYS(migrate_pages), SCMP_SYS(move_pages)})
    deny_if(nr, SCMP_A0_32(SCMP_CMP_NE, 0));
  for (int nr :
       {SCMP_SYS(kill), SCMP_SYS(tgkill), SCMP_SYS(rt_sigqueueinfo), SCMP_SYS(rt_tgsigqueueinfo)})
    deny_if(nr, SCMP_A0_32(SCMP_CMP_NE, self));
  for (int nr :
       {SCMP_SYS(tkill), SCMP_SYS(process_madvise), SCMP_SYS(process_mrelease),
        SCMP_SYS(pidfd_open), SCMP_SYS(pidfd_getfd), SCMP_SYS(pidfd_send_signal), SCMP_SYS(kcmp)})
    deny(nr, eperm);
  // Typing into the terminal the process was started from (TIOCSTI) runs commands in the user's
  // shell, outside the sandbox; TIOCLINUX can do the same on a virtual console. Landlock does
  // not cover descriptors opened before it, and the terminal is one of them.
  deny_if(SCMP_SYS(ioctl), SCMP_A1_32(SCMP_CMP_EQ, TIOCSTI));
  deny_if(SCMP_SYS(ioctl), SCMP_A1_32(SCMP_CMP_EQ, TIOCLINUX));
  // A thread shares everything; anything else clone makes is a new process.
  if (rc == 0) {
    rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(clone), 1,
                          SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
  }
  deny(SCMP_SYS(clone3), SCMP_ACT_ERRNO(ENOSYS));
  // Every thread, including any a library started behind our back.
  if (rc == 0) rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
  if (rc == 0) rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) return Unavailable(std::string("sandbox: seccomp filter: ") + std::strerror(-rc));
  return Status::Ok();
}

std::string Outcome(int rc, int err) {
  if (rc >= 0) return "ok";
  const char* name = ::strerrorname_np(err);
  return std::string("errno=") + (name != nullptr ? name : std::to_string(err));
}

}  // namespace

int LandlockAbi() {
  long abi = LandlockCreateRuleset(nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi > 0 ? static_cast<int>(abi) : 0;
}

Result<Applied> Apply(const Policy& policy) {
  const int threads = ThreadCount();
  if (threads != 1) {
    return InvalidArgument("sandbox: must be applied before any thread starts (" +
                           std::to_string(threads) + " threads run)");
  }
#ifdef AIRLOCK_SANDBOX_ASAN
  // LeakSanitizer's exit-time check stops the world from a process it clones and ptraces, which
  // the filter forbids: check for leaks now, once, instead (sanitizer builds only).
  __lsan_do_leak_check();
#endif
  Applied applied;
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return Unavailable(std::string("sandbox: PR_SET_NO_NEW_PRIVS: ") + std::strerror(errno));
  applied.landlock_abi = LandlockAbi();
  if (applied.landlock_abi == 0) {
    applied.warnings.push_back(
        "this kernel has no Landlock (or it is disabled): file system access is NOT restricted; "
        "only no-new-privs and the seccomp filter apply");
  } else {
    AIRLOCK_TRY(ApplyLandlock(policy, applied.landlock_abi, &applied));
    if (applied.landlock_abi < 4) {
      applied.warnings.push_back("Landlock ABI " + std::to_string(applied.landlock_abi) +
                                 " has no network rules (ABI 4+): only the seccomp filter "
                                 "refuses sockets");
    }
    if (applied.landlock_abi < 3) {
      applied.warnings.push_back("Landlock ABI " + std::to_string(applied.landlock_abi) +
                                 " cannot refuse truncating files outside the outputs");
    }
  }
  AIRLOCK_TRY(DropCapabilities());
  AIRLOCK_TRY(ApplySeccomp());
  return applied;
}

std::vector<std::string> RunTestAttempts(std::string_view spec) {
  std::vector<std::string> lines;
  while (!spec.empty()) {
    std::size_t comma = spec.find(',');
    std::string item(spec.substr(0, comma));
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    if (item.empty()) continue;
    std::string outcome;
    errno = 0;
    if (item == "socket") {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      outcome = Outcome(fd, errno);
      if (fd >= 0) ::close(fd);
    } else if (item == "exec") {
      // Succeeding replaces this process: the missing report line then fails the test.
      char arg0[] = "true";
      char* argv[] = {arg0, nullptr};
      char* envp[] = {nullptr};
      int rc = ::execve("/bin/true", argv, envp);
      outcome = Outcome(rc, errno);
    } else if (item == "fork") {
      pid_t pid = ::fork();
      if (pid == 0) ::_exit(0);
      outcome = Outcome(pid, errno);
      if (pid > 0) ::waitpid(pid, nullptr, 0);
    } else if (item == "thread") {
      try {
        std::thread t([] {});
        t.join();
        outcome = "ok";
      } catch (const std::system_error& e) {
        outcome = Outcome(-1, e.code().value());
      }
    } else if (item == "tiocsti") {
      // Pushes a byte into the input of the terminal on stdin/stdout/stderr, or of /dev/tty.
      char byte = ' ';
      int rc = -1, err = ENOTTY;
      for (int fd : {0, 1, 2}) {
        rc = ::ioctl(fd, TIOCSTI, &byte);
        err = errno;
        if (rc == 0 || err != ENOTTY) break;
      }
      outcome = Outcome(rc, err);
    } else if (item == "prlimit-parent") {
      struct rlimit limit;
      int rc = ::prlimit(::getppid(), RLIMIT_NOFILE, nullptr, &limit);
      outcome = Outcome(rc, errno);
    } else if (item == "renice-parent") {
      int rc = ::setpriority(PRIO_PROCESS, static_cast<id_t>(::getppid()), 19);
      outcome = Outcome(rc, errno);
    } else if (item == "signal-parent") {
      int rc = ::kill(::getppid(), 0);
      outcome = Outcome(rc, errno);
    } else if (item.starts_with("write:")) {
      int fd = ::open(item.c_str() + 6, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      int err = errno;
      if (fd >= 0) {
        static constexpr char kMarker[] = "airlock sandbox test\n";
        if (::write(fd, kMarker, sizeof kMarker - 1) < 0) err = errno;
        ::close(fd);
      }
      outcome = Outcome(fd, err);
    } else if (item.starts_with("read:")) {
      int fd = ::open(item.c_str() + 5, O_RDONLY | O_CLOEXEC);
      int err = errno;
      char byte;
      if (fd >= 0 && ::read(fd, &byte, 1) < 0) err = errno;
      if (fd >= 0) ::close(fd);
      outcome = Outcome(fd, err);
    } else {
      outcome = "unknown attempt";
    }
    lines.push_back("airlock sandbox test: " + item + ": " + outcome);
  }
  return lines;
}

}  // namespace airlock::sandbox
