#pragma once

// A child process started for a test (a Consul agent, Prometheus, a service binary),
// with its stdout and stderr captured to a log file. The destructor stops it.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace coromesh::testing {

class ChildProcess {
 public:
  // Starts `argv[0]` (an absolute path or a name looked up on PATH). Throws
  // std::runtime_error naming the program if it cannot be started.
  ChildProcess(std::vector<std::string> argv, std::filesystem::path log_file,
               std::vector<std::string> extra_env = {});
  ~ChildProcess();

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  bool running();
  void signal(int signo) const;
  // Sends SIGTERM, waits up to `grace`, then SIGKILL. Returns the exit status as
  // waitpid reports it, or nullopt if the process was already reaped.
  std::optional<int> stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // Waits for the process to exit by itself; nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  const std::filesystem::path& log_file() const noexcept { return log_file_; }
  std::string log_tail(std::size_t max_bytes = 4000) const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path log_file_;
};

// Finds an executable: an absolute/relative path is taken as is, a bare name is
// searched on PATH. Returns an empty path when not found.
std::filesystem::path find_executable(const std::string& name);

// `argv` followed by each of `defaults` ("--flag=value") that `args` does not give
// itself (as --flag, -flag, --flag=..., -flag=... or --no-flag), then by `args`: a
// fixture's default gives way to a test's own value, since coromesh binaries refuse a
// flag given twice.
std::vector<std::string> with_default_flags(std::vector<std::string> argv,
                                            const std::vector<std::string>& defaults,
                                            const std::vector<std::string>& args);

}  // namespace coromesh::testing
