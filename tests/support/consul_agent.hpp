#pragma once

// A real `consul agent -dev` for tests, on free loopback ports in a temporary
// directory. The constructor returns once the agent has elected itself leader; the
// destructor stops it. If the binary is missing or the agent does not come up, the
// constructor throws with the reason and the tail of the agent's log — tests fail
// loudly, they never skip.
//
// With ConsulAgentOptions::acl the agent is locked down as production meshes run it: ACLs
// on, default_policy "deny", token persistence, a known initial management token (also the
// agent's own token, for its node's anti-entropy). api() then acts as the operator, with
// that token; consul_acl.hpp creates the least-privilege tokens and intentions.

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

struct ConsulAgentOptions {
  bool acl = false;
  // More agent configuration (HCL), e.g. "limits { http_max_conns_per_client = 8 }" for
  // an agent that answers 429 to a client past its connection limit.
  std::string extra_config;
};

class ConsulAgent {
 public:
  explicit ConsulAgent(ConsulAgentOptions options = {});
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
  // Freezes the agent (SIGSTOP), a hung process: the kernel still accepts connections for
  // it, and nothing reads or answers them. thaw() (SIGCONT) lets it go on; stop() thaws a
  // frozen agent first.
  void freeze();
  void thaw();

  // Calls the agent's HTTP API, e.g. api("GET", "/v1/health/service/web"); with ACLs,
  // as the operator (the management token) unless `token` is given.
  FetchResult api(const std::string& method, const std::string& path, const std::string& body = {},
                  const std::string* token = nullptr) const;

  bool acl() const noexcept { return options_.acl; }
  // The initial management (bootstrap) token; empty without ACLs.
  const std::string& management_token() const noexcept { return management_token_; }
  // The agent's log so far (all of its generations), e.g. to check it holds no secret.
  std::string log_text() const;

 private:
  void start();

  void write_acl_config() const;
  void write_extra_config() const;

  ConsulAgentOptions options_;
  TempDir dir_{"coromesh-consul"};
  std::string management_token_;
  ConsulPorts ports_;
  std::unique_ptr<ChildProcess> process_;
  int generation_ = 0;
};

}  // namespace coromesh::testing
