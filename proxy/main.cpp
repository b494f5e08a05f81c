// coromesh-sidecar: a Consul Connect sidecar proxy on coroutines (see src/sidecar.hpp).
//
//   coromesh-sidecar -sidecar-for web-1
//   coromesh-sidecar --service web --service-addr 127.0.0.1:8080 --listen :21000 --register \
//                    --upstream db:9191
//
// Its own HTTP port (--port) is the admin port: /metrics, /health.
#include <csignal>
#include <iostream>

#include "coromesh/config/service_config.hpp"
#include "coromesh/connect/load_balancer.hpp"
#include "coromesh/service/service.hpp"
#include "src/registration_lookup.hpp"
#include "src/sidecar.hpp"

int main(int argc, char** argv) {
  using namespace coromesh;
  // OpenSSL writes TLS records with write(2) on the socket (src/tls_socket.hpp): a peer
  // that has gone must fail that write with EPIPE, not kill the sidecar.
  std::signal(SIGPIPE, SIG_IGN);
  sidecar::SidecarSettings settings;
  auto config =
      config::service_config_or_exit(argc, argv, sidecar::sidecar_config_options(settings));
  settings.instance_id = config.instance_id;
  // --balance is the framework's setting (validated when read): for the sidecar, how each
  // upstream's connections (tcp) or requests (http) spread over its endpoints.
  connect::parse_balance_policy(config.balance, settings.balance);
  std::string admin_name = settings.proxy_name();
  try {
    sidecar::validate(settings, config.consul_register);
    if (!settings.sidecar_for.empty()) {
      const auto registration =
          sidecar::find_proxy_registration(config, settings.sidecar_for, settings.proxy_id());
      sidecar::apply_registration(registration, settings);
      settings.instance_id = registration.id;  // what the registration watch re-reads
      admin_name = registration.name + "-admin";
      if (config.port == 0) {
        config.port = settings.admin_port_from_registration;
      }
    }
  } catch (const config::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  if (settings.sidecar_for.empty()) {
    // Standalone: the service's registration becomes the connect-proxy's (Sidecar::shape),
    // and only when asked to (--register).
    config.consul_register = settings.register_proxy;
    config.name = settings.proxy_name();
  } else {
    // -sidecar-for: the connect-proxy registration is the operator's. What the sidecar
    // registers (unless --no-consul-register) is its admin port, as `<proxy-id>-admin`
    // with the `metrics` tag, so that Prometheus' Consul discovery finds every sidecar.
    config.name = admin_name;
    config.instance_id = settings.proxy_id() + "-admin";
  }
  try {
    Service service(std::move(config));
    sidecar::Sidecar::install(service, settings);
    return service.run();
  } catch (const std::exception& e) {
    std::cerr << "coromesh-sidecar: " << e.what() << "\n";
    return 1;
  }
}
