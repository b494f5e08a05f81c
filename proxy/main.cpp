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
#include "coromesh/service/service.hpp"
#include "src/registration_lookup.hpp"
#include "src/sidecar.hpp"

int main(int argc, char** argv) {
  using namespace coromesh;
  // OpenSSL writes TLS records with write(2) on the socket (src/tls_socket.hpp): a peer
  // that has gone must fail that write with EPIPE, not kill the sidecar.
  std::signal(SIGPIPE, SIG_IGN);
  sidecar::SidecarSettings settings;
  auto config = config::service_config_or_exit(
      argc, argv,
      {.defaults = {.name = "coromesh-sidecar"},
       .description = "Consul Connect sidecar proxy: a public mTLS listener in front of a "
                      "local service, and loopback listeners for its upstreams. Its own "
                      "HTTP port (--port) serves /metrics and /health.",
       .declare_extra = [&](config::OptionSet& options) {
         sidecar::declare_sidecar_settings(options, settings);
       }});
  settings.instance_id = config.instance_id;
  try {
    sidecar::validate(settings);
    if (!settings.sidecar_for.empty()) {
      const auto registration =
          sidecar::find_proxy_registration(config, settings.sidecar_for, settings.proxy_id());
      sidecar::apply_registration(registration, settings);
      settings.instance_id = registration.id;  // what the registration watch re-reads
    }
  } catch (const config::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  // A sidecar registers only when asked to (--register); with -sidecar-for the
  // registration is the operator's.
  config.consul_register = settings.register_proxy && settings.sidecar_for.empty();
  config.name = settings.proxy_name();
  try {
    Service service(std::move(config));
    sidecar::Sidecar::install(service, settings);
    return service.run();
  } catch (const std::exception& e) {
    std::cerr << "coromesh-sidecar: " << e.what() << "\n";
    return 1;
  }
}
