#pragma once

// What every coromesh service is configured with, and the one call a service's main()
// makes to get it:
//
//   int main(int argc, char** argv) {
//     int max_operand = 1'000'000;
//     auto config = coromesh::config::service_config_or_exit(argc, argv, {
//         .defaults = {.name = "add"},
//         .description = "Adds two integers.",
//         .declare_extra = [&](coromesh::config::OptionSet& options) {
//           options.add_integer(max_operand, {.flag = "max-operand", .env = {"ADD_MAX_OPERAND"},
//                                             .help = "Largest accepted operand."}, 0,
//                                             1'000'000'000);
//         }});
//     ...
//   }
//
// Settings, flags and environment variables are listed by `--help`; the sources and
// their precedence are described in option_set.hpp. The Nomad port label (default
// "http") lets NOMAD_PORT_<label> fill --port and NOMAD_IP_<label> fill --bind when a
// service runs under Nomad.
//
// Threads: parse once, at start-up; the resulting ServiceConfig is a plain value.

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/config/address.hpp"
#include "coromesh/config/environment.hpp"
#include "coromesh/config/option_set.hpp"
#include "coromesh/log/logger.hpp"

namespace coromesh::config {

// The limits that keep a slow or hostile client from holding resources.
struct HttpServerLimits {
  std::uint64_t max_header_bytes = 8 * 1024;
  std::uint64_t max_body_bytes = 1024 * 1024;
  std::chrono::nanoseconds header_read_timeout = std::chrono::seconds(10);
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);
  std::uint32_t max_connections = 10'000;
};

// How a service takes part in the Consul Connect mesh.
//   sidecar  the default: plain HTTP on loopback, a sidecar (coromesh-sidecar, or
//            `consul connect proxy`) owns the public mTLS port and the upstream listeners
//   native   Consul's Connect.Native: the service serves its port with Connect mTLS
//            itself (leaf and roots from Consul, peers authorized by intentions) and its
//            typed clients dial other services' Connect endpoints directly; /health and
//            /metrics move to a plain loopback admin port (--admin-port)
enum class MeshMode : std::uint8_t { sidecar, native };
std::string_view to_string(MeshMode mode) noexcept;
bool parse_mesh_mode(std::string_view text, MeshMode& out) noexcept;

// Cores of this machine, clamped to the 1..256 --threads accepts.
unsigned default_io_threads() noexcept;

struct ServiceConfig {
  std::string name{};         // Consul service name; required (DNS label)
  std::string instance_id{};  // empty: instance_id_for(bound port)
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;           // 0: the kernel picks a free port
  std::string advertise_address{};  // empty: advertised_address()
  unsigned io_threads = default_io_threads();
  Address consul{"127.0.0.1", 8500};
  bool consul_register = true;
  std::string consul_token{};  // secret: never printed
  // A file holding the token, re-read when it changes; replaces consul_token when set
  // (parse_service_config keeps only the one given with the higher precedence).
  std::string consul_token_file{};
  std::vector<std::string> tags{};
  // Where this service reaches the operations it calls: operation name -> the local
  // listener of its sidecar's upstream (or, without a mesh, the callee itself).
  // An operation without an entry whose declaration names its service (served_by) finds
  // that service in Consul (service/discovered_upstream.hpp).
  std::map<std::string, Address> upstreams{};
  MeshMode mesh = MeshMode::sidecar;
  std::uint16_t admin_port = 0;  // native mode: /health and /metrics in plain HTTP, loopback
  // How calls to a service found in Consul (served_by) spread over its instances:
  // round_robin, least_request or p2c_ewma (connect/load_balancer.hpp).
  std::string balance = "round_robin";
  log::Level log_level = log::Level::info;
  HttpServerLimits http{};
  std::chrono::nanoseconds check_interval = std::chrono::seconds(10);  // Consul HTTP check
  std::chrono::nanoseconds consul_resync_interval = std::chrono::seconds(5);
  std::chrono::nanoseconds shutdown_grace = std::chrono::seconds(10);
  std::string nomad_port_label = "http";

  // The Consul service ID: instance_id, or "<name>-<port>" with the port actually
  // bound (which differs from `port` when that is 0).
  std::string instance_id_for(std::uint16_t bound_port) const;
  // The address to register in Consul: advertise_address, else bind_address, else ""
  // when bound to a wildcard (0.0.0.0, ::), which tells Consul to use its node's address.
  std::string advertised_address() const;
};

struct ServiceConfigOptions {
  ServiceConfig defaults{};   // e.g. {.name = "add"}: the values a service starts from
  std::string description{};  // under "Usage:" in --help
  // Declares the service's own settings, bound to the service's own variables.
  std::function<void(OptionSet&)> declare_extra{};
  // --name, --upstreams, --mesh and --admin-port: what a service is called and how it
  // joins the mesh. false leaves them undeclared, for the mesh's plumbing (coromesh-sidecar,
  // named after the service it fronts, its upstreams its own repeatable --upstream): its
  // --help does not offer them, a --name it would ignore is refused, a misspelt --upstream
  // is not taken for --upstreams, and COROMESH_MESH=native in its environment cannot turn
  // its plain-HTTP admin port into an mTLS one.
  bool mesh_settings = true;
};

// "add=127.0.0.1:9191,sub=127.0.0.1:9192" -> {add: ..., sub: ...}; throws InvalidValue.
std::map<std::string, Address> parse_upstreams(std::string_view text);

// Declares the common settings on `options`, bound to `config` (whose values are the
// defaults); for callers that build their own OptionSet. `mesh_settings` as in
// ServiceConfigOptions.
void declare_service_settings(OptionSet& options, ServiceConfig& config, bool mesh_settings = true);

// The parsed configuration, or nullopt when --help was given (the help text was then
// written to `help_out`). Throws ConfigError on any bad value.
std::optional<ServiceConfig> parse_service_config(int argc, const char* const* argv,
                                                  const Environment& env,
                                                  const ServiceConfigOptions& options,
                                                  std::ostream& help_out);

// For main(): the real environment; --help prints to stdout and exits 0; a
// configuration error prints its one line to stderr and exits 2.
ServiceConfig service_config_or_exit(int argc, const char* const* argv,
                                     const ServiceConfigOptions& options = {});

}  // namespace coromesh::config
