#pragma once

// Runs build/bin/hello-svc as a child process on a free port, registered with the given
// Consul agent (or not), and waits until it serves /health.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "consul_agent.hpp"
#include "test_env.hpp"

namespace coromesh::testing {

class HelloService {
 public:
  // `consul` null: --consul-register=false.
  explicit HelloService(const ConsulAgent* consul, std::vector<std::string> extra_args = {});
  ~HelloService();

  std::uint16_t port() const noexcept { return port_; }
  std::string instance_id() const { return "hello-" + std::to_string(port_); }
  ChildProcess& process() { return *process_; }
  FetchResult get(const std::string& target) const;

 private:
  TempDir dir_{"coromesh-hello"};
  std::uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace coromesh::testing
