#include "coromesh/service/discovered_upstream.hpp"

#include <boost/asio/awaitable.hpp>
#include <stdexcept>

#include "coromesh/qos/reason.hpp"
#include "coromesh/service/fault_classifier.hpp"

namespace coromesh {

namespace asio = boost::asio;

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
  co_return co_await watch_.ready_until(until);
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

std::optional<connect::Outcome> endpoint_outcome(const std::exception_ptr& error,
                                                 bool attempt_deadline_passed) noexcept {
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
      // Nothing sent (a refused connect...) is the connect's failure; a lost answer the
      // callee's.
      return fault.not_delivered ? connect::Outcome::connect_failure
                                 : connect::Outcome::callee_failure;
    case qos::FaultClass::cancelled:
      // Once the attempt's deadline has passed, whoever stopped waiting (our preemptive
      // timeout's watchdog, a moment before the client's own timer) the endpoint had not
      // answered in time: its timeout, as the client's timer would have said.
      return attempt_deadline_passed ? std::optional(connect::Outcome::callee_failure)
                                     : std::nullopt;
    case qos::FaultClass::rejected:
      // A callee's 429 (a status): it answered, at once, and its limit is no sign of a
      // bad instance (Envoy's outlier detection counts no 4xx either). Any other refusal
      // is ours: the endpoint was not involved.
      return fault.status != 0 ? std::optional(connect::Outcome::success) : std::nullopt;
  }
  return std::nullopt;
}

}  // namespace coromesh
