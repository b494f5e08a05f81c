#include "sidecar_settings.hpp"

#include "coromesh/config/error.hpp"
#include "coromesh/config/values.hpp"

namespace coromesh::sidecar {

std::string_view to_string(ListenerMode mode) noexcept {
  return mode == ListenerMode::http ? "http" : "tcp";
}

namespace {

ListenerMode parse_mode(std::string_view text) {
  if (text == "tcp") {
    return ListenerMode::tcp;
  }
  if (text == "http") {
    return ListenerMode::http;
  }
  throw config::InvalidValue("mode '" + std::string(text) + "' is not tcp or http");
}

// "HOST:PORT", or ":PORT" for every interface (the spelling of Consul's -listen).
config::Address parse_listen(std::string_view text) {
  if (text.starts_with(':')) {
    return config::parse_address("0.0.0.0" + std::string(text));
  }
  return config::parse_address(text);
}

}  // namespace

UpstreamSpec parse_upstream(std::string_view text) {
  const auto first = text.find(':');
  if (first == std::string_view::npos || first == 0) {
    throw config::InvalidValue("'" + std::string(text) + "' is not NAME:PORT[:MODE]");
  }
  UpstreamSpec spec;
  spec.service = std::string(text.substr(0, first));
  auto rest = text.substr(first + 1);
  if (const auto second = rest.find(':'); second != std::string_view::npos) {
    spec.mode = parse_mode(rest.substr(second + 1));
    rest = rest.substr(0, second);
  }
  spec.port = static_cast<std::uint16_t>(config::parse_integer(rest, 1, 65535));
  return spec;
}

RouteTimeout parse_route_timeout(std::string_view text) {
  const auto equals = text.rfind('=');
  if (equals == std::string_view::npos || equals == 0 || !text.starts_with('/')) {
    throw config::InvalidValue("'" + std::string(text) + "' is not /PATH-PREFIX=DURATION");
  }
  const auto timeout = config::parse_duration(text.substr(equals + 1));
  if (timeout <= std::chrono::nanoseconds::zero()) {
    throw config::InvalidValue("'" + std::string(text) + "': the timeout must be positive");
  }
  return {.prefix = std::string(text.substr(0, equals)), .timeout = timeout};
}

std::chrono::nanoseconds SidecarSettings::timeout_for(std::string_view path) const {
  const RouteTimeout* best = nullptr;
  for (const auto& route : route_timeouts) {
    if (path.starts_with(route.prefix) &&
        (best == nullptr || route.prefix.size() > best->prefix.size())) {
      best = &route;
    }
  }
  return best != nullptr ? best->timeout : http_timeout;
}

UpstreamSpec upstream_from(const consul::ProxyUpstream& upstream) {
  UpstreamSpec spec;
  spec.service = upstream.destination_name;
  if (!upstream.local_bind_address.empty()) {
    spec.bind_address = upstream.local_bind_address;
  }
  spec.port = upstream.local_bind_port;
  spec.mode = upstream.protocol == "http" ? ListenerMode::http : ListenerMode::tcp;
  return spec;
}

consul::ProxyUpstream to_proxy_upstream(const UpstreamSpec& spec) {
  return {.destination_name = spec.service,
          .local_bind_address = spec.bind_address,
          .local_bind_port = spec.port,
          .protocol = spec.mode == ListenerMode::http ? "http" : ""};
}

std::string SidecarSettings::proxy_id() const {
  if (!instance_id.empty()) {
    return instance_id;
  }
  return (sidecar_for.empty() ? (service_id.empty() ? service : service_id) : sidecar_for) +
         "-sidecar-proxy";
}

std::string SidecarSettings::proxy_name() const {
  return service + "-sidecar-proxy";
}

void declare_sidecar_settings(config::OptionSet& options, SidecarSettings& s) {
  options.add_string(s.sidecar_for,
                     {.flag = "sidecar-for",
                      .help = "Follow the connect-proxy registration of this service ID (as "
                              "`consul connect proxy -sidecar-for`); excludes --service."});
  options.add_string(s.service, {.flag = "service",
                                 .help = "Name of the service this sidecar fronts (standalone "
                                         "form)."});
  options.add_string(s.service_id, {.flag = "service-id",
                                    .help = "Consul ID of that service's instance: the proxy's "
                                            "health then follows it (alias check)."});
  options.add({.flag = "service-addr", .help = "Where the local service listens."}, "<host:port>",
              "", [&s](std::string_view v) { s.service_address = config::parse_address(v); });
  options.add({.flag = "listen", .help = "The public mTLS listener (HOST:PORT or :PORT)."},
              "<host:port>", "", [&s](std::string_view v) { s.listen = parse_listen(v); });
  options.add_bool(s.register_proxy,
                   {.flag = "register",
                    .help = "Register this sidecar in Consul as the connect-proxy of --service."});
  options.add({.flag = "upstream",
               .help = "An upstream listener on 127.0.0.1:PORT reaching service NAME; "
                       "repeatable, in a --config file too (one line each): the command "
                       "line's are added to the file's.",
               .repeatable = true},
              "<name:port[:tcp|http]>", "",
              [&s](std::string_view v) { s.upstreams.push_back(parse_upstream(v)); });
  options.add_duration(s.handshake_timeout,
                       {.flag = "handshake-timeout",
                        .help = "Deadline of each TLS handshake; also how long a connection "
                                "or request arriving at start-up waits for the sidecar's first "
                                "leaf certificate and endpoints."},
                       std::chrono::milliseconds(10), std::chrono::minutes(1));
  options.add_integer(s.max_pending_handshakes,
                      {.flag = "max-pending-handshakes",
                       .help = "TLS handshakes in flight at the public port; past this the "
                               "oldest is closed (counted as handshake_shed), so stalled "
                               "handshakes cannot hold memory or lock real peers out."},
                      1, 1'000'000);
  options.add_duration(s.connect_timeout,
                       {.flag = "connect-timeout",
                        .help = "Deadline of each TCP connect to an upstream endpoint or the "
                                "local service (the TLS handshake has --handshake-timeout)."},
                       std::chrono::milliseconds(10), std::chrono::minutes(1));
  options.add_duration(s.idle_timeout,
                       {.flag = "idle-timeout",
                        .help = "A proxied connection with no bytes either way this long is "
                                "closed."},
                       std::chrono::milliseconds(100), std::chrono::hours(24));
  options.add_duration(s.registration_poll,
                       {.flag = "registration-poll",
                        .help = "-sidecar-for: how often the registration is re-read when the "
                                "agent cannot hold a blocking query on it (it is followed with "
                                "blocking queries otherwise), and the pause after a failed "
                                "read."},
                       std::chrono::milliseconds(100), std::chrono::minutes(10));
  options.add_duration(s.http_timeout,
                       {.flag = "http-timeout",
                        .help = "http mode: deadline of one request, retries included "
                                "(x-coromesh-deadline-ms shortens it)."},
                       std::chrono::milliseconds(10), std::chrono::hours(1));
  options.add({.flag = "protocol",
               .help = "What the public listener carries: tcp (bytes) or http (HTTP/1.1: "
                       "pooled connections to the local service, per-request metrics and "
                       "timeouts, the caller's SPIFFE ID in x-coromesh-peer)."},
              "<tcp|http>", "tcp", [&s](std::string_view v) { s.inbound_mode = parse_mode(v); });
  options.add({.flag = "route-timeout",
               .help = "http mode: requests whose path starts with PREFIX get this whole "
                       "budget instead of --http-timeout (504 past it); repeatable (the "
                       "command line's added to a --config file's), the longest prefix "
                       "wins.",
               .repeatable = true},
              "<prefix=duration>", "",
              [&s](std::string_view v) { s.route_timeouts.push_back(parse_route_timeout(v)); });
  options.add_integer(s.upstream_attempts,
                      {.flag = "upstream-attempts",
                       .help = "Endpoints tried per upstream connection before giving up."},
                      1, 16);
}

config::ServiceConfigOptions sidecar_config_options(SidecarSettings& settings) {
  return {
      .defaults = {.name = "coromesh-sidecar"},
      .description =
          "Consul Connect sidecar proxy: a public mTLS listener in front of a "
          "local service, and loopback listeners for its upstreams. Its own "
          "HTTP port (--port) serves /metrics and /health.",
      .declare_extra =
          [&settings](config::OptionSet& options) { declare_sidecar_settings(options, settings); },
      .mesh_settings = false};
}

void validate(const SidecarSettings& s, bool self_registration) {
  if (!s.sidecar_for.empty()) {
    if (!s.service.empty() || s.register_proxy || !s.upstreams.empty() || s.listen.port != 0 ||
        s.inbound_mode != ListenerMode::tcp) {
      throw config::ConfigError(
          "-sidecar-for: takes everything from the registration; drop --service, --listen, "
          "--register, --upstream and --protocol (Proxy.Config.protocol sets it)");
    }
    return;
  }
  if (s.service.empty()) {
    throw config::ConfigError("--service: required (or -sidecar-for <service-id>)");
  }
  // Without --listen the sidecar only serves upstreams, as `consul connect proxy
  // -service a -upstream b:9191` does: nothing to register, no local service to reach.
  if (s.listen.port != 0 && s.service_address.port == 0) {
    throw config::ConfigError("--service-addr: required with --listen");
  }
  if (s.register_proxy && !self_registration) {
    throw config::ConfigError(
        "--register and --no-consul-register contradict each other (--register is what "
        "registers the standalone sidecar; leave it out to register nothing)");
  }
  if (s.register_proxy && s.listen.port == 0) {
    throw config::ConfigError("--register: needs --listen (the public port to register)");
  }
  for (auto it = s.route_timeouts.begin(); it != s.route_timeouts.end(); ++it) {
    for (auto other = s.route_timeouts.begin(); other != it; ++other) {
      // A config file's route and a flag's for the same prefix: neither may quietly win
      // (the command line adds to the file; it does not replace its routes).
      if (other->prefix == it->prefix) {
        throw config::ConfigError("--route-timeout: the prefix " + it->prefix +
                                  " is given twice (one timeout per prefix)");
      }
    }
  }
  for (auto it = s.upstreams.begin(); it != s.upstreams.end(); ++it) {
    for (auto other = s.upstreams.begin(); other != it; ++other) {
      // Consul refuses a registration naming one destination twice, and two listeners
      // cannot share a port.
      if (other->service == it->service || other->port == it->port) {
        throw config::ConfigError("--upstream: " + it->service + ":" + std::to_string(it->port) +
                                  " repeats " + other->service + ":" + std::to_string(other->port) +
                                  " (one listener per upstream service and port)");
      }
    }
  }
}

}  // namespace coromesh::sidecar

namespace coromesh::sidecar {

void apply_registration(const consul::AgentService& registration, SidecarSettings& s) {
  const std::string who = "-sidecar-for (" + registration.id + ")";
  if (registration.kind != "connect-proxy" || !registration.proxy) {
    throw config::ConfigError(who + ": the registration is not a connect-proxy");
  }
  const auto& proxy = *registration.proxy;
  if (proxy.destination_service_name.empty() || proxy.local_service_port == 0 ||
      registration.port == 0) {
    throw config::ConfigError(who +
                              ": needs Port, Proxy.DestinationServiceName and LocalServicePort");
  }
  s.service = proxy.destination_service_name;
  s.service_id = proxy.destination_service_id;
  s.service_address = {
      proxy.local_service_address.empty() ? std::string("127.0.0.1") : proxy.local_service_address,
      proxy.local_service_port};
  // As Consul's proxy: the public listener on every interface unless an address is given.
  s.listen = {registration.address.empty() ? std::string("0.0.0.0") : registration.address,
              registration.port};
  s.upstreams.clear();
  for (const auto& upstream : proxy.upstreams) {
    s.upstreams.push_back(upstream_from(upstream));
  }
  // Consul's protocols are tcp, http, http2 and grpc: only http gets the HTTP/1.1-aware
  // listener; the others are carried as bytes, which works for any of them.
  const auto protocol = proxy.config.find("protocol");
  s.inbound_mode = protocol != proxy.config.end() && protocol->second == "http" ? ListenerMode::http
                                                                                : ListenerMode::tcp;
  if (const auto admin = proxy.config.find("coromesh_admin_port"); admin != proxy.config.end()) {
    try {
      s.admin_port_from_registration = config::parse_port(admin->second);
    } catch (const config::InvalidValue& e) {
      throw config::ConfigError(who + ": Proxy.Config.coromesh_admin_port: " + e.what());
    }
  }
}

}  // namespace coromesh::sidecar
