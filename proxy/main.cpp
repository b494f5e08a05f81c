// coromesh-sidecar: a Consul Connect sidecar proxy on coroutines (see src/sidecar.hpp).
//
//   coromesh-sidecar -sidecar-for web-1
//   coromesh-sidecar --service web --service-addr 127.0.0.1:8080 --listen :21000 --register \
//                    --upstream db:9191
//
// Its own HTTP port (--port) is the admin port: /metrics, /health.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <csignal>
#include <iostream>

#include "coromesh/config/service_config.hpp"
#include "coromesh/consul/http_agent_client.hpp"
#include "coromesh/service/service.hpp"
#include "src/sidecar.hpp"

namespace {

// -sidecar-for: the registration, read once before anything starts (its ports decide
// what to bind). Throws ConfigError with what went wrong.
coromesh::consul::AgentService read_registration(const coromesh::config::ServiceConfig& config,
                                                 const std::string& proxy_id) {
  boost::asio::io_context io;
  coromesh::consul::HttpAgentClient agent(
      io.get_executor(), {.address = config.consul.to_string(), .token = config.consul_token});
  auto answer = boost::asio::co_spawn(io, agent.agent_service(proxy_id), boost::asio::use_future);
  io.run();
  try {
    auto registration = answer.get();
    if (!registration) {
      throw coromesh::config::ConfigError("-sidecar-for: the agent at " +
                                          config.consul.to_string() + " holds no service " +
                                          proxy_id);
    }
    return *registration;
  } catch (const coromesh::config::ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw coromesh::config::ConfigError("-sidecar-for: cannot read " + proxy_id + " from " +
                                        config.consul.to_string() + ": " + e.what());
  }
}

}  // namespace

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
      sidecar::apply_registration(read_registration(config, settings.proxy_id()), settings);
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
