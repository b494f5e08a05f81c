#pragma once

// What a coromesh-sidecar is told to do, from flags (and the environment or config file,
// as every coromesh setting): either
//
//   -sidecar-for <service-id>                 read the connect-proxy registration of that
//                                             instance from the local agent and follow it
//   --service NAME --service-addr HOST:PORT   the standalone form: the public listener,
//     --listen HOST:PORT [--register]         the local service it fronts, and (with
//     [--upstream NAME:PORT[:tcp|http]]...    --register) its own connect-proxy registration;
//                                             without --listen: upstreams only
//
// Plain values, parsed and validated once at start-up (one thread).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/config/address.hpp"
#include "coromesh/config/option_set.hpp"
#include "coromesh/config/service_config.hpp"
#include "coromesh/connect/load_balancer.hpp"
#include "coromesh/consul/types.hpp"

namespace coromesh::sidecar {

enum class ListenerMode : std::uint8_t { tcp, http };
std::string_view to_string(ListenerMode mode) noexcept;

// One upstream: a loopback listener at bind_address:port reaching `service`.
struct UpstreamSpec {
  std::string service;
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;
  ListenerMode mode = ListenerMode::tcp;

  friend bool operator==(const UpstreamSpec&, const UpstreamSpec&) = default;
};

// "NAME:PORT" or "NAME:PORT:MODE" (mode tcp or http). Throws config::InvalidValue.
UpstreamSpec parse_upstream(std::string_view text);

// http mode: requests whose path starts with `prefix` get `timeout` as their whole
// budget (retries included) instead of --http-timeout; the longest prefix wins.
struct RouteTimeout {
  std::string prefix;
  std::chrono::nanoseconds timeout{};

  friend bool operator==(const RouteTimeout&, const RouteTimeout&) = default;
};
// "PREFIX=DURATION", e.g. "/api/v1/slow=200ms". Throws config::InvalidValue.
RouteTimeout parse_route_timeout(std::string_view text);
// From a connect-proxy registration's Upstreams[] (protocol "http" is http mode).
UpstreamSpec upstream_from(const consul::ProxyUpstream& upstream);
consul::ProxyUpstream to_proxy_upstream(const UpstreamSpec& spec);

struct SidecarSettings {
  std::string sidecar_for;  // the service ID whose connect-proxy registration to follow

  std::string service;                     // the destination service's name (standalone form)
  std::string service_id;                  // its instance ID; empty: not known (no alias check)
  std::string instance_id;                 // the proxy's own ID (--instance-id); empty: derived
  config::Address service_address{"", 0};  // the local service
  config::Address listen{"", 0};           // the public mTLS listener
  // How the public listener treats what it carries (--protocol, or Proxy.Config.protocol
  // of a -sidecar-for registration).
  ListenerMode inbound_mode = ListenerMode::tcp;
  bool register_proxy = false;
  std::vector<UpstreamSpec> upstreams;

  std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(5);
  // TLS handshakes in flight at the public port (each ~51 KiB of OpenSSL state until it
  // ends): past this the oldest is shed (handshake_limit.hpp). ~52 MiB at the default;
  // a real peer's handshake takes milliseconds, so only floods come near it.
  std::uint32_t max_pending_handshakes = 1024;
  // A TCP connect to an upstream endpoint or the local service. Loopback or a LAN answers
  // a SYN in well under a millisecond, whatever the peer's load; no answer in 250 ms means
  // a black-holed endpoint (or an overflowing accept queue), and another endpoint is
  // tried within the request's budget (the frontend's calls have 1 s per attempt).
  std::chrono::nanoseconds connect_timeout = std::chrono::milliseconds(250);
  // How long a connection or request arriving in the first moments after start-up waits
  // for what only Consul can give: the first leaf certificate, the first endpoints. The
  // handshake's deadline, not the connect timeout: a connect is a round trip on the
  // network, these are answers from the agent, and failing early would blame (and eject)
  // healthy endpoints for the sidecar's own missing certificate.
  std::chrono::nanoseconds startup_patience() const noexcept { return handshake_timeout; }
  std::chrono::nanoseconds idle_timeout = std::chrono::minutes(10);
  // http mode: how often each connection's watch wakes up (http_exchange.hpp), which is
  // how soon a client's hang-up mid-request is noticed (within one or two periods) and
  // its forward abandoned. A quarter of the handshake timeout, as the framework's server
  // wakes its connections every quarter of its shortest read timeout.
  std::chrono::nanoseconds hang_up_period() const noexcept {
    return std::max<std::chrono::nanoseconds>(std::min(idle_timeout, handshake_timeout) / 4,
                                              std::chrono::milliseconds(10));
  }
  std::chrono::nanoseconds registration_poll = std::chrono::seconds(2);  // -sidecar-for
  connect::BalancePolicy balance = connect::BalancePolicy::round_robin;
  std::uint32_t upstream_attempts = 3;  // endpoints tried per upstream connection (or request)
  // http mode: the whole of one request through an upstream, retries included (an
  // incoming x-coromesh-deadline-ms shortens it).
  std::chrono::nanoseconds http_timeout = std::chrono::seconds(30);
  std::vector<RouteTimeout> route_timeouts;  // http mode, inbound and upstreams
  // -sidecar-for: the admin port from Proxy.Config.coromesh_admin_port (0: not set).
  std::uint16_t admin_port_from_registration = 0;

  // http mode: the budget of a request for `path` (its route's timeout, else http_timeout).
  std::chrono::nanoseconds timeout_for(std::string_view path) const;

  // The connect-proxy's own service ID and name.
  std::string proxy_id() const;
  std::string proxy_name() const;
};

// Declares every sidecar flag on `options`, bound to `settings`.
void declare_sidecar_settings(config::OptionSet& options, SidecarSettings& settings);

// What coromesh-sidecar's main() parses its configuration with: the framework's common
// settings (its own --port is the admin port) without a service's mesh settings
// (--upstreams, --mesh, --admin-port: ServiceConfigOptions::mesh_settings says why),
// and the sidecar's flags bound to `settings`, which must outlive the parse.
config::ServiceConfigOptions sidecar_config_options(SidecarSettings& settings);

// Checks the combination after parsing; throws config::ConfigError naming the setting.
// `self_registration` is the framework's --consul-register (false: --no-consul-register),
// which --register would silently override in the standalone form.
void validate(const SidecarSettings& settings, bool self_registration = true);

}  // namespace coromesh::sidecar

namespace coromesh::sidecar {

// -sidecar-for: fills the destination, local service, public listener (address, port,
// Proxy.Config.protocol), upstreams and Proxy.Config.coromesh_admin_port from the
// connect-proxy registration the agent holds. Throws config::ConfigError when it is not a
// usable connect-proxy registration.
void apply_registration(const consul::AgentService& registration, SidecarSettings& settings);

}  // namespace coromesh::sidecar
