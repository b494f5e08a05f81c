#include "child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace coromesh::testing {

std::vector<std::string> with_default_flags(std::vector<std::string> argv,
                                            const std::vector<std::string>& defaults,
                                            const std::vector<std::string>& args) {
  const auto given = [&args](const std::string& name) {
    for (const std::string& arg : args) {
      for (const std::string& form : {"--" + name, "-" + name, "--no-" + name}) {
        if (arg == form || arg.starts_with(form + "=")) {
          return true;
        }
      }
    }
    return false;
  };
  for (const std::string& flag : defaults) {
    const std::string name = flag.substr(2, flag.find('=') - 2);
    if (!given(name)) {
      argv.push_back(flag);
    }
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::filesystem::path find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return ::access(name.c_str(), X_OK) == 0 ? std::filesystem::path(name)
                                             : std::filesystem::path();
  }
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    auto candidate = std::filesystem::path(dir.empty() ? "." : dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return {};
}

ChildProcess::ChildProcess(std::vector<std::string> argv, std::filesystem::path log_file,
                           std::vector<std::string> extra_env)
    : log_file_(std::move(log_file)) {
  if (argv.empty()) {
    throw std::invalid_argument("ChildProcess: empty argv");
  }
  auto program = find_executable(argv[0]);
  if (program.empty()) {
    throw std::runtime_error("cannot find executable '" + argv[0] + "' (run ./ops/setup.sh)");
  }

  std::vector<char*> cargv;
  for (auto& arg : argv) {
    cargv.push_back(arg.data());
  }
  cargv.push_back(nullptr);

  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    env_storage.emplace_back(*e);
  }
  for (auto& e : extra_env) {
    env_storage.push_back(std::move(e));
  }
  std::vector<char*> cenv;
  for (auto& e : env_storage) {
    cenv.push_back(e.data());
  }
  cenv.push_back(nullptr);

  // Everything the child needs is prepared before fork(): between fork and exec only
  // async-signal-safe calls are allowed (the test process has threads).
  auto working_dir = log_file_.parent_path();
  pid_t parent = ::getpid();
  // PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only safe
  // from the main thread (tests also start processes from short-lived threads).
  bool die_with_parent = ::gettid() == parent;
  pid_ = ::fork();
  if (pid_ < 0) {
    throw std::runtime_error("cannot fork to start '" + program.string() +
                             "': " + std::strerror(errno));
  }
  if (pid_ == 0) {
    // Die with the test: a crashed or killed test must not leave agents behind.
    if (die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) {
        ::_exit(127);
      }
    }
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0 || ::dup2(in, STDIN_FILENO) < 0 || ::dup2(out, STDOUT_FILENO) < 0 ||
        ::dup2(out, STDERR_FILENO) < 0) {
      ::_exit(127);
    }
    // Nothing else of the test's crosses exec: Asio opens sockets without close-on-exec,
    // so a child would otherwise keep the test's listeners open (a "stopped" backend's
    // port still accepting connections, in the kernel, for as long as the child lives).
    if (::close_range(3, ~0U, 0) != 0) {
      for (int fd = 3; fd < 4096; ++fd) {
        ::close(fd);
      }
    }
    // Run in the fixture's own directory: tools such as Consul read files relative
    // to their working directory.
    if (!working_dir.empty() && ::chdir(working_dir.c_str()) != 0) {
      ::_exit(127);
    }
    ::execve(program.c_str(), cargv.data(), cenv.data());
    ::_exit(127);
  }
}

ChildProcess::~ChildProcess() {
  stop(std::chrono::seconds(5));
}

bool ChildProcess::running() {
  if (status_ || pid_ <= 0) {
    return false;
  }
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = status;
    return false;
  }
  return r == 0;
}

void ChildProcess::signal(int signo) const {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, signo);
  }
}

std::optional<int> ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status_;
}

std::optional<int> ChildProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) {
    return std::nullopt;
  }
  if (!running()) {
    return status_;
  }
  ::kill(pid_, SIGTERM);
  if (auto status = wait_exit(grace)) {
    return status;
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  status_ = status;
  return status_;
}

std::string ChildProcess::log_tail(std::size_t max_bytes) const {
  std::ifstream in(log_file_, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > max_bytes) {
    text.erase(0, text.size() - max_bytes);
  }
  return text;
}

}  // namespace coromesh::testing
