#include "test_env.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "child_process.hpp"

namespace coromesh::testing {

TempDir::TempDir(const std::string& prefix) {
  auto base = std::filesystem::temp_directory_path();
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto candidate =
        base / (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 1000000));
    if (std::filesystem::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("TempDir: cannot create a directory under " + base.string());
}

TempDir::~TempDir() {
  if (std::getenv("COROMESH_KEEP_TEST_DIRS") == nullptr) {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
}

namespace {

// Binds a socket to 127.0.0.1:`port` (0: the kernel chooses); returns it and the port,
// or fd -1 when that port is taken.
std::pair<int, std::uint16_t> bind_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    throw std::system_error(errno, std::generic_category(), "free_port: socket");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    if (port != 0 && err == EADDRINUSE) {
      return {-1, port};
    }
    throw std::system_error(err, std::generic_category(), "free_port: bind");
  }
  return {fd, ntohs(addr.sin_port)};
}

}  // namespace

// A claim is a file named after the port, created exclusively; one older than
// kPortReservation is stale and taken over.
bool claim_port(std::uint16_t port) {
  static const auto directory = [] {
    auto path = std::filesystem::temp_directory_path() / "coromesh-test-ports";
    std::error_code ignored;
    std::filesystem::create_directories(path, ignored);
    return path;
  }();
  const auto claim = directory / std::to_string(port);
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = ::open(claim.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    if (errno != EEXIST) {
      return true;  // no claims possible here (read-only /tmp): the probe alone decides
    }
    std::error_code error;
    const auto written = std::filesystem::last_write_time(claim, error);
    if (error) {
      continue;  // removed meanwhile: try to create it again
    }
    if (std::filesystem::file_time_type::clock::now() - written < kPortReservation) {
      return false;
    }
    std::filesystem::remove(claim, error);  // stale: a test long finished held it
  }
  return false;
}

namespace {

// A free port below Linux's ephemeral range (32768-60999): a port the kernel hands out
// for bind(0) is also what it hands out for outgoing connections, so between our probe
// and the server's bind a client socket (the Consul agent's own, another test's) could
// take it. Random, so parallel tests rarely probe the same one, and claimed
// (claim_port) so they never get the same one; the kernel's choice after
// 64 taken tries.
std::pair<int, std::uint16_t> bind_unused() {
  thread_local std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> range(20000, 32000);
  for (int i = 0; i < 64; ++i) {
    auto bound = bind_loopback(static_cast<std::uint16_t>(range(rng)));
    if (bound.first < 0) {
      continue;
    }
    if (claim_port(bound.second)) {
      return bound;
    }
    ::close(bound.first);
  }
  return bind_loopback(0);
}

}  // namespace

std::uint16_t free_port() {
  return free_ports(1).front();
}

std::vector<std::uint16_t> free_ports(std::size_t count) {
  std::vector<int> held;
  std::vector<std::uint16_t> ports;
  try {
    for (std::size_t i = 0; i < count; ++i) {
      auto [fd, port] = bind_unused();
      held.push_back(fd);
      ports.push_back(port);
    }
  } catch (...) {
    for (int fd : held) {
      ::close(fd);
    }
    throw;
  }
  for (int fd : held) {
    ::close(fd);
  }
  return ports;
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(interval);
  }
}

std::filesystem::path source_dir() {
  return COROMESH_SOURCE_DIR;
}
std::filesystem::path binary_dir() {
  return COROMESH_BINARY_DIR;
}

namespace {
std::filesystem::path locate(const char* env_var, const std::filesystem::path& project_copy,
                             const std::string& name) {
  if (const char* explicit_path = std::getenv(env_var); explicit_path && *explicit_path) {
    auto found = find_executable(explicit_path);
    if (found.empty()) {
      throw std::runtime_error(std::string(env_var) + "=" + explicit_path +
                               " is not an executable");
    }
    return found;
  }
  if (!project_copy.empty() && ::access(project_copy.c_str(), X_OK) == 0) {
    return project_copy;
  }
  auto found = find_executable(name);
  if (found.empty()) {
    throw std::runtime_error("'" + name +
                             "' is not installed: run ./ops/setup.sh (it installs every "
                             "tool the tests need)");
  }
  return found;
}
}  // namespace

std::filesystem::path consul_binary() {
  return locate("COROMESH_CONSUL", source_dir() / "ops/.tools/bin/consul", "consul");
}

std::filesystem::path prometheus_binary() {
  // The project's own build (ops/build-prometheus.sh) comes first: Debian's package
  // lacks consul_sd_configs.
  return locate("COROMESH_PROMETHEUS", source_dir() / "ops/.tools/bin/prometheus", "prometheus");
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace coromesh::testing
