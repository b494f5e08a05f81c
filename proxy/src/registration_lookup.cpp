#include "registration_lookup.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <vector>

#include "coromesh/config/error.hpp"
#include "coromesh/consul/error.hpp"
#include "coromesh/consul/http_agent_client.hpp"
#include "coromesh/consul/token_source.hpp"
#include "coromesh/http/client.hpp"

namespace coromesh::sidecar {

namespace asio = boost::asio;

namespace {

// IDs of the agent's connect-proxies in front of `service_id` (GET /v1/agent/services).
asio::awaitable<std::vector<std::string>> proxies_for(const config::ServiceConfig& config,
                                                      const std::string& service_id) {
  http::Client client(co_await asio::this_coro::executor);
  http::Request request(http::Verb::get, "/v1/agent/services", 11);
  consul::TokenSource token(config.consul_token, config.consul_token_file);
  if (const auto secret = token.current(); !secret.empty()) {
    request.set("X-Consul-Token", secret);
  }
  const auto response =
      co_await client.send({config.consul.host, config.consul.port}, std::move(request),
                           std::chrono::steady_clock::now() + std::chrono::seconds(5));
  if (response.result_int() != 200) {
    // Consul's reason (e.g. the permission a token lacks) names no secret.
    throw consul::ConsulError("GET /v1/agent/services", static_cast<int>(response.result_int()),
                              response.body());
  }
  std::vector<std::string> ids;
  const auto services = boost::json::parse(response.body());
  for (const auto& [id, service] : services.as_object()) {
    const auto& object = service.as_object();
    const auto* kind = object.if_contains("Kind");
    const auto* proxy = object.if_contains("Proxy");
    if (kind == nullptr || !kind->is_string() || kind->get_string() != "connect-proxy" ||
        proxy == nullptr || !proxy->is_object()) {
      continue;
    }
    const auto* destination = proxy->get_object().if_contains("DestinationServiceID");
    if (destination != nullptr && destination->is_string() &&
        destination->get_string() == service_id) {
      ids.emplace_back(id);
    }
  }
  co_return ids;
}

asio::awaitable<consul::AgentService> lookup(const config::ServiceConfig& config,
                                             const std::string& service_id,
                                             const std::string& proxy_id) {
  consul::HttpAgentClient agent(co_await asio::this_coro::executor,
                                {.address = config.consul.to_string(),
                                 .token = config.consul_token,
                                 .token_file = config.consul_token_file});
  if (auto named = co_await agent.agent_service(proxy_id)) {
    co_return *named;
  }
  const auto ids = co_await proxies_for(config, service_id);
  if (ids.size() != 1) {
    std::string listed;
    for (const auto& id : ids) {
      listed += (listed.empty() ? "" : ", ") + id;
    }
    throw config::ConfigError("-sidecar-for: the agent at " + config.consul.to_string() +
                              (ids.empty() ? " holds no connect-proxy for " + service_id +
                                                 " (looked for " + proxy_id + " too)"
                                           : " holds several connect-proxies for " + service_id +
                                                 " (" + listed + "); pick one with --instance-id"));
  }
  auto found = co_await agent.agent_service(ids.front());
  if (!found) {
    throw config::ConfigError("-sidecar-for: " + ids.front() + " left the agent meanwhile");
  }
  co_return *found;
}

}  // namespace

consul::AgentService find_proxy_registration(const config::ServiceConfig& config,
                                             const std::string& service_id,
                                             const std::string& proxy_id) {
  asio::io_context io;
  auto answer = asio::co_spawn(io, lookup(config, service_id, proxy_id), asio::use_future);
  io.run();
  try {
    return answer.get();
  } catch (const config::ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw config::ConfigError("-sidecar-for: cannot read the registration of " + service_id +
                              " from " + config.consul.to_string() + ": " + e.what());
  }
}

}  // namespace coromesh::sidecar
