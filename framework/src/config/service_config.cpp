#include "coromesh/config/service_config.hpp"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "coromesh/connect/load_balancer.hpp"
#include "coromesh/consul/token_source.hpp"

namespace coromesh::config {

std::map<std::string, Address> parse_upstreams(std::string_view text) {
  std::map<std::string, Address> upstreams;
  for (const auto& item : parse_list(text)) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) {
      throw InvalidValue(quote_value(item) + " is not name=host:port");
    }
    const std::string name = item.substr(0, eq);
    if (name.empty() || name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                                               "QRSTUVWXYZ0123456789_-") != std::string::npos) {
      throw InvalidValue(quote_value(name) + " is not an operation name");
    }
    if (upstreams.contains(name)) {
      throw InvalidValue("upstream " + quote_value(name) + " is given twice");
    }
    upstreams.emplace(name, parse_address(std::string_view(item).substr(eq + 1)));
  }
  return upstreams;
}
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// Consul service names end up in DNS (<name>.service.consul): one RFC 1123 label.
void check_service_name(std::string_view name) {
  const bool ok = !name.empty() && name.size() <= 63 && name.front() != '-' && name.back() != '-' &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '-';
                  });
  if (!ok) {
    throw InvalidValue(quote_value(name) +
                       " is not a service name (1-63 letters, digits and inner hyphens)");
  }
}

void check_instance_id(std::string_view id) {
  const bool ok = id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':';
                  });
  if (!ok) {
    throw InvalidValue(quote_value(id) +
                       " is not an instance id (up to 128 letters, digits and - _ . :)");
  }
}

// CONSUL_HTTP_ADDR is often written with a scheme; the agent API here is plain HTTP.
Address parse_consul_address(std::string_view text) {
  if (text.starts_with("http://")) {
    text.remove_prefix(7);
  } else if (text.find("://") != std::string_view::npos) {
    throw InvalidValue(quote_value(text) + " is not supported: only http:// Consul agents are");
  }
  return parse_address(text);
}

// A token and a token file: the one from the higher-precedence source wins (a flag over
// an inherited CONSUL_HTTP_TOKEN); both from the same source is ambiguous. The file must
// hold a usable token now: a typo in its path is a start-up error, not a 403 later.
void choose_token(const OptionSet& set, ServiceConfig& config) {
  if (config.consul_token_file.empty()) {
    return;
  }
  const auto file_source = *set.source_of("consul-token-file");
  const auto token_source = *set.source_of("consul-token");
  if (!config.consul_token.empty()) {
    if (file_source == token_source) {
      throw ConfigError("--consul-token-file (" + std::string(to_string(file_source)) +
                        "): give either a token or a token file, not both");
    }
    if (token_source > file_source) {
      config.consul_token_file.clear();
      return;
    }
    config.consul_token.clear();
  }
  try {
    consul::read_token_file(config.consul_token_file);
  } catch (const std::exception& e) {
    throw ConfigError("--consul-token-file (" + std::string(to_string(file_source)) +
                      "): " + e.what());
  }
}

}  // namespace

unsigned default_io_threads() noexcept {
  return std::clamp(std::thread::hardware_concurrency(), 1U, 256U);
}

std::string ServiceConfig::instance_id_for(std::uint16_t bound_port) const {
  return instance_id.empty() ? name + "-" + std::to_string(bound_port) : instance_id;
}

std::string ServiceConfig::advertised_address() const {
  if (!advertise_address.empty()) {
    return advertise_address;
  }
  return bind_address == "0.0.0.0" || bind_address == "::" ? std::string() : bind_address;
}

void declare_service_settings(OptionSet& options, ServiceConfig& c, bool mesh_settings) {
  if (mesh_settings) {
    // Plumbing names itself from what it serves (the sidecar: <service>-sidecar-proxy):
    // a --name it would take and then ignore is not offered.
    options.add(
        {.flag = "name", .env = {"COROMESH_SERVICE_NAME"}, .help = "Service name in Consul."},
        "<name>", c.name, [&c](std::string_view v) {
          check_service_name(v);
          c.name = v;
        });
  }
  options.add({.flag = "instance-id",
               .env = {"COROMESH_INSTANCE_ID"},
               .help = "Consul service ID of this instance.",
               .default_help = "<name>-<port>"},
              "<id>", c.instance_id, [&c](std::string_view v) {
                check_instance_id(v);
                c.instance_id = v;
              });
  options.add_ip_address(c.bind_address, {.flag = "bind",
                                          .env = {"COROMESH_BIND_ADDRESS"},
                                          .help = "IP address to listen on.",
                                          .nomad = Nomad::ip});
  options.add_port(c.port, {.flag = "port",
                            .env = {"COROMESH_PORT"},
                            .help = "TCP port to listen on; 0 picks a free one.",
                            .nomad = Nomad::port});
  options.add({.flag = "advertise",
               .env = {"COROMESH_ADVERTISE_ADDRESS"},
               .help = "Address registered in Consul.",
               .default_help = "the bind address"},
              "<host>", c.advertise_address, [&c](std::string_view v) {
                c.advertise_address = v.empty() ? std::string() : parse_host(v);
              });
  options.add_integer(c.io_threads,
                      {.flag = "threads",
                       .env = {"COROMESH_THREADS"},
                       .help = "I/O threads.",
                       .default_help = c.io_threads == default_io_threads()
                                           ? std::to_string(c.io_threads) + " (CPU cores)"
                                           : std::string()},
                      1, 256);
  options.add({.flag = "consul",
               .env = {"COROMESH_CONSUL_ADDR", "CONSUL_HTTP_ADDR"},
               .help = "Consul agent HTTP address (http:// optional)."},
              "<host:port>", c.consul.to_string(),
              [&c](std::string_view v) { c.consul = parse_consul_address(v); });
  options.add_bool(c.consul_register, {.flag = "consul-register",
                                       .env = {"COROMESH_CONSUL_REGISTER"},
                                       .help = "Register this instance with Consul."});
  options.add_string(c.consul_token, {.flag = "consul-token",
                                      .env = {"COROMESH_CONSUL_TOKEN", "CONSUL_HTTP_TOKEN"},
                                      .help = "ACL token for the Consul agent.",
                                      .secret = true});
  options.add_string(c.consul_token_file,
                     {.flag = "consul-token-file",
                      .env = {"COROMESH_CONSUL_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE"},
                      .help = "File holding the ACL token, re-read when it changes (rotation)."});
  options.add_list(
      c.tags,
      {.flag = "tags", .env = {"COROMESH_TAGS"}, .help = "Extra Consul tags, comma-separated."});
  options.add(
      {.flag = "log-level", .env = {"COROMESH_LOG_LEVEL"}, .help = "Least severe level logged."},
      "<debug|info|warn|error|off>", std::string(log::to_string(c.log_level)),
      [&c](std::string_view v) {
        if (!log::parse_level(v, c.log_level)) {
          throw InvalidValue(quote_value(v) +
                             " is not a log level (debug, info, warn, error, off)");
        }
      });
  options.add_size(c.http.max_header_bytes,
                   {.flag = "http-max-header-bytes",
                    .env = {"COROMESH_HTTP_MAX_HEADER_BYTES"},
                    .help = "Largest request header block accepted."},
                   1024, 1024 * 1024);
  options.add_size(c.http.max_body_bytes,
                   {.flag = "http-max-body-bytes",
                    .env = {"COROMESH_HTTP_MAX_BODY_BYTES"},
                    .help = "Largest request body accepted."},
                   0, 1024ULL * 1024 * 1024);
  options.add_duration(c.http.header_read_timeout,
                       {.flag = "http-header-timeout",
                        .env = {"COROMESH_HTTP_HEADER_TIMEOUT"},
                        .help = "Time a client has to send a request's headers."},
                       milliseconds(1), hours(1));
  options.add_duration(c.http.idle_timeout,
                       {.flag = "http-idle-timeout",
                        .env = {"COROMESH_HTTP_IDLE_TIMEOUT"},
                        .help = "Keep-alive connections idle this long are closed."},
                       milliseconds(1), hours(24));
  options.add_integer(c.http.max_connections,
                      {.flag = "http-max-connections",
                       .env = {"COROMESH_HTTP_MAX_CONNECTIONS"},
                       .help = "Most connections served at once."},
                      1, 1'000'000);
  options.add_duration(c.check_interval,
                       {.flag = "consul-check-interval",
                        .env = {"COROMESH_CONSUL_CHECK_INTERVAL"},
                        .help = "How often Consul calls the service's /health check."},
                       milliseconds(100), hours(1));
  options.add_duration(c.consul_resync_interval,
                       {.flag = "consul-resync-interval",
                        .env = {"COROMESH_CONSUL_RESYNC_INTERVAL"},
                        .help = "How often the registration is checked and redone if the "
                                "agent lost it (e.g. after an agent restart)."},
                       milliseconds(50), hours(1));
  options.add_duration(c.shutdown_grace,
                       {.flag = "shutdown-grace",
                        .env = {"COROMESH_SHUTDOWN_GRACE"},
                        .help = "Time in-flight requests get to finish on shutdown."},
                       seconds(0), minutes(10));
  options.add(
      {.flag = "nomad-port-label",
       .env = {"COROMESH_NOMAD_PORT_LABEL"},
       .help = "Nomad port label whose NOMAD_PORT_/NOMAD_IP_ variables set --port/--bind."},
      "<label>", c.nomad_port_label, [&c](std::string_view v) {
        // Nomad labels become parts of variable names: letters, digits, '_' and '-'.
        if (v.empty() || v.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                                             "QRSTUVWXYZ0123456789_-") != std::string_view::npos) {
          throw InvalidValue(quote_value(v) + " is not a Nomad port label");
        }
        c.nomad_port_label = v;
      });
  options.add({.flag = "balance",
               .env = {"COROMESH_BALANCE"},
               .help = "How calls to a service found in Consul by name spread over its "
                       "instances."},
              "<round_robin|least_request|p2c_ewma>", c.balance, [&c](std::string_view v) {
                if (auto policy = connect::BalancePolicy::round_robin;
                    !connect::parse_balance_policy(v, policy)) {
                  throw InvalidValue(quote_value(v) +
                                     " is not a balancing policy (round_robin, least_request, "
                                     "p2c_ewma)");
                }
                c.balance = std::string(v);
              });
  if (mesh_settings) {
    options.add(
        {.flag = "upstreams",
         .env = {"COROMESH_UPSTREAMS"},
         .help = "Operations this service calls and where: name=host:port, comma-separated."},
        "<name=host:port,...>", std::string(),
        [&c](std::string_view v) { c.upstreams = parse_upstreams(v); });
    options.add({.flag = "mesh",
                 .env = {"COROMESH_MESH"},
                 .help = "How this service joins the Connect mesh: behind a sidecar (plain HTTP "
                         "on loopback), or native (serves and calls with Connect mTLS itself)."},
                "<sidecar|native>", std::string(to_string(c.mesh)), [&c](std::string_view v) {
                  if (!parse_mesh_mode(v, c.mesh)) {
                    throw InvalidValue(quote_value(v) + " is not a mesh mode (sidecar, native)");
                  }
                });
    options.add_port(c.admin_port,
                     {.flag = "admin-port",
                      .env = {"COROMESH_ADMIN_PORT"},
                      .help = "--mesh=native: the plain-HTTP loopback port of /health and /metrics "
                              "(Consul's check, Prometheus), 0: any free port."});
  }
  options.set_nomad_label(&c.nomad_port_label);
}

std::string_view to_string(MeshMode mode) noexcept {
  return mode == MeshMode::native ? "native" : "sidecar";
}

bool parse_mesh_mode(std::string_view text, MeshMode& out) noexcept {
  if (text == "sidecar") {
    out = MeshMode::sidecar;
    return true;
  }
  if (text == "native") {
    out = MeshMode::native;
    return true;
  }
  return false;
}

std::optional<ServiceConfig> parse_service_config(int argc, const char* const* argv,
                                                  const Environment& env,
                                                  const ServiceConfigOptions& options,
                                                  std::ostream& help_out) {
  std::string program = argc > 0 && argv[0] != nullptr ? argv[0] : "service";
  program = program.substr(program.find_last_of('/') + 1);
  ServiceConfig config = options.defaults;
  OptionSet set(program, options.description);
  declare_service_settings(set, config, options.mesh_settings);
  if (options.declare_extra) {
    options.declare_extra(set);
  }
  if (set.parse(argc, argv, env) == ParseStatus::help) {
    help_out << set.help();
    return std::nullopt;
  }
  if (config.name.empty()) {
    throw ConfigError("--name (" + std::string(to_string(*set.source_of("name"))) +
                      "): a service name is required (--name or COROMESH_SERVICE_NAME)");
  }
  choose_token(set, config);
  return config;
}

ServiceConfig service_config_or_exit(int argc, const char* const* argv,
                                     const ServiceConfigOptions& options) {
  try {
    auto config = parse_service_config(argc, argv, Environment::process(), options, std::cout);
    if (!config) {
      std::exit(0);
    }
    return *std::move(config);
  } catch (const ConfigError& e) {
    std::cerr << e.what() << "\n";
    std::exit(2);
  }
}

}  // namespace coromesh::config
