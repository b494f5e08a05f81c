// The Sidecar component's side of Consul's registration (see sidecar.hpp): the
// registration it shapes for itself (--register, or the admin port's with -sidecar-for),
// and the operator's connect-proxy registration it follows with -sidecar-for.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "coromesh/consul/agent_client.hpp"
#include "coromesh/log/logger.hpp"
#include "sidecar.hpp"

namespace coromesh::sidecar {

namespace asio = boost::asio;

asio::awaitable<void> Sidecar::follow_registration() {
  const std::string id = settings_.proxy_id();
  asio::steady_timer pause(co_await asio::this_coro::executor);
  std::string hash;  // of the registration last applied; empty: ask for it at once
  for (;;) {
    std::optional<consul::HashQueryResult<std::optional<consul::AgentService>>> answer;
    std::string error;
    try {
      answer = co_await context_.consul.agent_service_blocking(
          id, {.hash = hash, .wait = std::chrono::minutes(5)});
    } catch (const std::exception& e) {
      error = e.what();
    }
    const auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) {
      co_return;  // stop_accepting()
    }
    bool wait_before_next = true;  // no answer to block on: pause, then ask again
    if (!answer) {
      log::write_limited(log::Level::warn, "sidecar.registration_unreadable", id,
                         {{"id", id}, {"error", error}});
      hash.clear();
    } else if (!answer->value || !answer->value->proxy) {
      log::write_limited(log::Level::warn, "sidecar.registration_missing", id, {{"id", id}});
      hash.clear();
    } else {
      apply_registration_change(*answer->value);
      // An agent that sends no content hash cannot hold the query: poll it instead.
      wait_before_next = answer->hash.empty();
      hash = answer->hash;
    }
    if (wait_before_next) {
      pause.expires_after(settings_.registration_poll);
      auto [ec] = co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return;
      }
    }
  }
}

void Sidecar::apply_registration_change(const consul::AgentService& registration) {
  std::vector<UpstreamSpec> wanted;
  for (const auto& upstream : registration.proxy->upstreams) {
    wanted.push_back(upstream_from(upstream));
  }
  apply_upstreams(wanted, true);
  // The public listener is bound once: a new port or protocol needs a restart.
  SidecarSettings now = settings_;
  try {
    apply_registration(registration, now);
  } catch (const std::exception& e) {
    log::write_limited(log::Level::warn, "sidecar.registration_unusable", registration.id,
                       {{"id", registration.id}, {"error", e.what()}});
    return;
  }
  if (now.listen != settings_.listen || now.inbound_mode != settings_.inbound_mode ||
      now.service_address != settings_.service_address) {
    log::write_limited(
        log::Level::warn, "sidecar.restart_needed", registration.id,
        {{"id", registration.id}, {"reason", "the public listener or the local service changed"}});
  }
}

void Sidecar::shape(consul::ServiceRegistration& registration) const {
  const auto& s = settings_;
  if (!s.sidecar_for.empty()) {
    // The admin port's own registration (main.cpp): the service's, as built, plus which
    // connect-proxy it serves the metrics of.
    registration.meta["proxy_id"] = s.proxy_id();
    return;
  }
  const auto admin_check = registration.check;  // the admin port's /health
  registration.id = s.proxy_id();
  registration.name = s.proxy_name();
  registration.kind = "connect-proxy";
  registration.port = public_port();
  if (s.listen.host != "0.0.0.0" && s.listen.host != "::") {
    registration.address = s.listen.host;
  }
  consul::ProxyConfig proxy{.destination_service_name = s.service,
                            .destination_service_id = s.service_id,
                            .local_service_address = s.service_address.host,
                            .local_service_port = s.service_address.port,
                            .upstreams = {}};
  for (const auto& upstream : s.upstreams) {
    proxy.upstreams.push_back(to_proxy_upstream(upstream));
  }
  if (s.inbound_mode == ListenerMode::http) {
    proxy.config["protocol"] = "http";  // as Consul spells it, for whoever reads the catalog
  }
  registration.proxy = std::move(proxy);
  const auto interval = admin_check && std::holds_alternative<consul::HttpCheck>(*admin_check)
                            ? std::get<consul::HttpCheck>(*admin_check).interval
                            : std::chrono::milliseconds(10'000);
  const std::string host = registration.address.empty() ? "127.0.0.1" : registration.address;
  registration.check =
      consul::TcpCheck{.address = host + ":" + std::to_string(public_port()),
                       .interval = interval,
                       .timeout = std::min(interval, std::chrono::milliseconds(5000))};
  registration.extra_checks.clear();
  if (admin_check) {
    registration.extra_checks.push_back(*admin_check);
  }
  // The local service's port, always: an alias check alone stays passing once its service
  // has left the catalog (Consul reads "No checks found." as healthy), e.g. a SIGKILLed
  // instance whose registration the agent reaped.
  registration.extra_checks.push_back(
      consul::TcpCheck{.address = s.service_address.to_string(),
                       .interval = interval,
                       .timeout = std::min(interval, std::chrono::milliseconds(5000))});
  if (!s.service_id.empty()) {
    registration.extra_checks.push_back(consul::AliasCheck{.service_id = s.service_id});
  }
}

}  // namespace coromesh::sidecar
