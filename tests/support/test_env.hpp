#pragma once

// Small building blocks shared by the fixtures: a temporary directory, a free
// loopback port, polling with a deadline, and where the project's tools live.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace coromesh::testing {

// A fresh directory under $TMPDIR, removed (recursively) by the destructor unless
// COROMESH_KEEP_TEST_DIRS is set, which helps when a test fails.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "coromesh");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago, claimed (claim_port) so that no
// other test process is handed it for kPortReservation.
std::uint16_t free_port();
// `count` distinct such ports: all are held open while the next is picked, so the
// kernel cannot hand out the same one twice.
std::vector<std::uint16_t> free_ports(std::size_t count);

// How long a port free_port() handed out stays reserved for the test that asked for it:
// time to start the process that binds it.
inline constexpr std::chrono::minutes kPortReservation{2};
// Claims `port` among every test process on the machine: the probe's socket is closed
// before the test's server binds the port, and in that gap a test running in parallel
// (ctest -j) could probe the same free port and be handed it too. False when another
// test (or this one) claimed it less than kPortReservation ago.
bool claim_port(std::uint16_t port);

// Polls `done` every `interval` until it returns true or `timeout` passes.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(50));

// The whole of a file ("" when it cannot be read), e.g. a child's log.
std::string read_file(const std::filesystem::path& path);

// The repository's root, baked in at build time.
std::filesystem::path source_dir();
// Directory with the project's binaries (build/bin).
std::filesystem::path binary_dir();

// Locates the `consul` binary: $COROMESH_CONSUL, then ops/.tools/bin/consul, then
// PATH. Throws std::runtime_error telling the user to run ./ops/setup.sh.
std::filesystem::path consul_binary();
// Locates `prometheus`: $COROMESH_PROMETHEUS, then ops/.tools/bin/prometheus, then
// PATH. Throws like consul_binary().
std::filesystem::path prometheus_binary();

}  // namespace coromesh::testing
