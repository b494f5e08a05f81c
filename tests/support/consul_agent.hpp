#pragma once

// A real `consul agent -dev` for tests, on free loopback ports in a temporary
// directory. The constructor returns once the agent has elected itself leader; the
// destructor stops it. If the binary is missing or the agent does not come up, the
// constructor throws with the reason and the tail of the agent's log — tests fail
// loudly, they never skip.

#include <cstdint>
#include <memory>
#include <string>

#include "child_process.hpp"
#include "http_fetch.hpp"
#include "test_env.hpp"

namespace coromesh::testing {

struct ConsulPorts {
  std::uint16_t http = 0;
  std::uint16_t dns = 0;
  std::uint16_t serf_lan = 0;
  std::uint16_t serf_wan = 0;
  std::uint16_t server = 0;
  std::uint16_t grpc = 0;
  std::uint16_t grpc_tls = 0;
};

class ConsulAgent {
 public:
  ConsulAgent();
  ~ConsulAgent();
  ConsulAgent(const ConsulAgent&) = delete;
  ConsulAgent& operator=(const ConsulAgent&) = delete;

  const ConsulPorts& ports() const noexcept { return ports_; }
  std::uint16_t http_port() const noexcept { return ports_.http; }
  std::string http_address() const { return "127.0.0.1:" + std::to_string(ports_.http); }

  // Stops the agent (its dev-mode state is lost, as after a crash) and starts a new
  // one on the same ports; for tests of re-registration.
  void restart();
  void stop();
  bool running() const noexcept { return process_ != nullptr; }

  // Calls the agent's HTTP API, e.g. api("GET", "/v1/health/service/web").
  FetchResult api(const std::string& method, const std::string& path,
                  const std::string& body = {}) const;

 private:
  void start();

  TempDir dir_{"coromesh-consul"};
  ConsulPorts ports_;
  std::unique_ptr<ChildProcess> process_;
  int generation_ = 0;
};

}  // namespace coromesh::testing
