#pragma once

// The calculator's binaries (build/bin) as real processes on free loopback ports, not
// registered with Consul: each operator service twice (mod-svc, the Python one, too), and
// frontends whose --upstreams point straight at one instance per operator
// (mod_svc_mesh_test.cpp puts sidecars in between).

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "http_fetch.hpp"
#include "test_env.hpp"

namespace calculator::testing {

using coromesh::testing::FetchResult;

// One running service binary; started by the constructor (which waits for /health and
// throws with the log's tail if it does not come up), stopped by the destructor.
class ServiceProcess {
 public:
  // `binary` is a file in build/bin; `extra_args` follow the common flags (a free
  // --port, no Consul registration, a short shutdown grace).
  ServiceProcess(const std::string& binary, const std::filesystem::path& log_dir,
                 std::vector<std::string> extra_args = {});
  ~ServiceProcess();
  ServiceProcess(const ServiceProcess&) = delete;
  ServiceProcess& operator=(const ServiceProcess&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool running() { return process_->running(); }
  std::string log_tail(std::size_t max_bytes = 4000) const { return process_->log_tail(max_bytes); }
  FetchResult get(const std::string& target) const;
  FetchResult post(const std::string& target, const std::string& body) const;

 private:
  std::string binary_;
  std::uint16_t port_ = 0;
  std::unique_ptr<coromesh::testing::ChildProcess> process_;
};

// Each operation's service is "<op>-svc".
inline constexpr std::array<const char*, 5> kOperations{"add", "sub", "mul", "div", "mod"};

// Two instances of each operator service.
class OperatorInstances {
 public:
  explicit OperatorInstances(const std::filesystem::path& log_dir);
  // Instance `index` (0 or 1) of operation `op` ("add", ...).
  ServiceProcess& instance(const std::string& op, std::size_t index);
  // "add=127.0.0.1:P,...,mod=...": the first instance of each, with `overrides` replacing
  // the address of some operations.
  std::string upstreams(const std::map<std::string, std::string>& overrides = {}) const;

 private:
  std::map<std::string, std::vector<std::unique_ptr<ServiceProcess>>> instances_;
};

// POST /api/v1/compute {"expression": <expression>}, the expression JSON-escaped.
FetchResult compute(const ServiceProcess& frontend, const std::string& expression);

}  // namespace calculator::testing
