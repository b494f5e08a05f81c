#include "coromesh/service/discovered_upstream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <stdexcept>

#include "coromesh/qos/reason.hpp"
#include "coromesh/service/fault_classifier.hpp"

namespace coromesh {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

DiscoveredUpstream::DiscoveredUpstream(consul::AgentClient& consul,
                                       DiscoveredUpstreamOptions options)
    : options_(std::move(options)),
      watch_(consul, options_.service, {}, options_.kind),
      balancer_(options_.balance) {
  if (options_.kind == connect::EndpointKind::connect && !options_.tls) {
    throw std::invalid_argument("DiscoveredUpstream(" + options_.service +
                                "): Connect endpoints need the mTLS set-up");
  }
}

asio::awaitable<void> DiscoveredUpstream::run() {
  co_await watch_.run();
}

asio::awaitable<DiscoveredUpstream::Snapshot> DiscoveredUpstream::endpoints(
    std::chrono::steady_clock::time_point until) {
  if (auto now = watch_.snapshot()) {
    co_return now;
  }
  // The first moments after start-up: Consul has not answered yet.
  asio::steady_timer give_up(co_await asio::this_coro::executor, until);
  auto first = co_await (watch_.ready() || give_up.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (first.index() == 0) {
    co_return std::get<0>(std::move(first));
  }
  // The timer also ends, aborted, when the caller cancels the wait: that is no answer
  // from Consul in time (a refusal upstream) but the caller's cancellation.
  if (const auto [ec] = std::get<1>(first); ec == asio::error::operation_aborted) {
    throw boost::system::system_error(ec);
  }
  co_return nullptr;
}

connect::Pick DiscoveredUpstream::pick(const Snapshot& snapshot,
                                       std::span<const std::string> tried) {
  auto chosen = balancer_.pick(snapshot, tried);
  if (!chosen && !tried.empty()) {
    // Every endpoint has been tried by this call: one of them again beats giving up
    // (a single-instance service still gets its retries).
    chosen = balancer_.pick(snapshot);
  }
  return chosen;
}

http::Destination DiscoveredUpstream::destination_of(const connect::Endpoint& endpoint) const {
  return http::Destination{endpoint.address, endpoint.port, options_.tls};
}

std::optional<connect::Outcome> endpoint_outcome(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const qos::QosRejected&) {
    // Our own policy said no (a spent deadline, say): the endpoint was not involved.
    return std::nullopt;
  } catch (...) {
  }
  const auto fault = classify_service_fault(error);
  switch (fault.kind) {
    case qos::FaultClass::caller_error:
      return connect::Outcome::success;
    case qos::FaultClass::callee_failure:
    case qos::FaultClass::timeout:
      return connect::Outcome::callee_failure;
    case qos::FaultClass::transport:
      try {
        std::rethrow_exception(error);
      } catch (const http::ClientError& e) {
        const auto code = e.code();
        if (code == http::ClientErrc::connect_failed || code == http::ClientErrc::connect_timeout ||
            code == http::ClientErrc::tls_handshake || code == http::ClientErrc::peer_rejected) {
          return connect::Outcome::connect_failure;
        }
      } catch (...) {
      }
      return connect::Outcome::callee_failure;
    case qos::FaultClass::cancelled:
    case qos::FaultClass::rejected:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace coromesh
