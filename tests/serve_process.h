// A child `airlock` process (AIRLOCK_EXE) that a test talks to over loopback: most often
// `airlock serve`, also `airlock audit witness`. The constructor starts it and reads the first
// line of its stdout, which for both is the "listening on http://HOST:PORT" line, and takes the
// port from it (0 when the child printed no such line: it failed to start). The child is stopped
// and reaped when the object goes; every wait is bounded.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace airlock::testing {

// A wait status as a shell reads it: the exit code, or 128 + the signal that killed the process
// (WEXITSTATUS alone reads 0 for a process killed by a signal).
inline int ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

struct ServeProcessOptions {
  // Where the child's stderr goes (created or truncated); empty: the test's own stderr.
  std::string stderr_path = {};
  // NAME=VALUE pairs added to the child's environment. "{SERVE_PID}" in one becomes the child's
  // process id (which it keeps after exec), so a test hook can name the gateway process.
  std::vector<std::string> env = {};
  // The child's working folder; empty: the test's.
  std::string working_dir = {};
  // The signal the destructor stops the child with (SIGTERM drains and flushes the audit log).
  int stop_signal = SIGKILL;
};

class ServeProcess {
 public:
  // Runs AIRLOCK_EXE with `args` (after the program name), e.g. {"serve", "--config", c, ...}.
  explicit ServeProcess(std::vector<std::string> args, ServeProcessOptions options = {})
      : options_(std::move(options)) {
    args.insert(args.begin(), AIRLOCK_EXE);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    // Close-on-exec: a later child started by the same test does not hold this pipe open.
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      if (!options_.stderr_path.empty()) {
        int err = ::open(options_.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (err >= 0) ::dup2(err, 2);
      }
      if (!options_.working_dir.empty() && ::chdir(options_.working_dir.c_str()) != 0) _exit(126);
      static std::vector<std::string> vars;
      for (std::string e : options_.env) {
        for (auto at = e.find("{SERVE_PID}"); at != std::string::npos; at = e.find("{SERVE_PID}"))
          e.replace(at, 11, std::to_string(::getpid()));
        vars.push_back(e);
      }
      for (auto& e : vars) ::putenv(e.data());
      ::execv(argv[0], argv.data());
      _exit(127);
    }
    ::close(fds[1]);
    if (pid_ < 0) {
      ::close(fds[0]);
      return;
    }
    stdout_ = fds[0];
    first_line_ = ReadLine();
    auto colon = first_line_.rfind(':');
    if (colon != std::string::npos) port_ = std::atoi(first_line_.c_str() + colon + 1);
  }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  ~ServeProcess() { Stop(options_.stop_signal); }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& first_line() const { return first_line_; }

  // The next line the child writes to stdout, without its newline ("" at end of output).
  std::string ReadLine() {
    std::string line;
    char c;
    while (stdout_ >= 0 && line.size() < 512 && ::read(stdout_, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }

  // Sends `sig` and reaps the child (bounded: SIGKILL after ~30 s). Returns the wait status, -1
  // when there was no child.
  int Stop(int sig) {
    if (stdout_ >= 0) ::close(stdout_);
    stdout_ = -1;
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    for (int i = 0; i < 300; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  ServeProcessOptions options_;
  pid_t pid_ = -1;
  int stdout_ = -1;
  int port_ = 0;
  std::string first_line_;
};

// The arguments of `airlock serve --config CONFIG --port 0 EXTRA...` (port 0: the kernel picks a
// free one, which the listening line names).
inline std::vector<std::string> ServeArgs(const std::string& config,
                                          const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"serve", "--config", config, "--port", "0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace airlock::testing
