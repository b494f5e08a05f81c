#pragma once

// The instances of one callee service, found in Consul and balanced per call: what a
// typed client calls through when no --upstreams entry names a fixed address for its
// operation (operation_client.hpp, service.hpp).
//
//   mesh mode   endpoints                                  wire
//   sidecar     /v1/health/service/<service>?passing       plain HTTP to each instance
//   native      /v1/health/connect/<service>?passing       mTLS with this service's leaf;
//               (its sidecars, or its Connect-native        the peer's SPIFFE ID must name
//               instances)                                  <service>
//
// (In sidecar mode a client normally has an --upstreams entry, its sidecar's listener,
// which wins; discovery there is for a mesh without proxies, as in tests and local runs.)
//
// Each attempt of a call picks an endpoint with the Connect module's LoadBalancer (round
// robin unless configured otherwise), skipping the endpoints the call's earlier
// attempts tried, and reports how the attempt went (endpoint_outcome below), which
// drives the balancer's per-endpoint outlier ejection. Endpoints that leave the service
// are forgotten by the balancer at its next pick and by the clients' connection pools
// (OperationTransport closes their idle connections).
//
// Ownership: shared by the typed clients of every operation the service serves, and by
// the watch coroutine (run()) the owning Service spawns on the agent client's executor
// and cancels at shutdown. `consul` must outlive run().
// Threads: run() on the agent client's executor; everything else from any thread.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "coromesh/connect/endpoint_watch.hpp"
#include "coromesh/connect/load_balancer.hpp"
#include "coromesh/http/client.hpp"

namespace coromesh {

struct DiscoveredUpstreamOptions {
  std::string service;
  connect::EndpointKind kind = connect::EndpointKind::plain;
  // Required with EndpointKind::connect (mTLS to every endpoint); null for plain.
  std::shared_ptr<const http::ClientTls> tls;
  connect::LoadBalancerOptions balance{};
};

class DiscoveredUpstream {
 public:
  using Snapshot = connect::EndpointWatch::Snapshot;

  DiscoveredUpstream(consul::AgentClient& consul, DiscoveredUpstreamOptions options);
  DiscoveredUpstream(const DiscoveredUpstream&) = delete;
  DiscoveredUpstream& operator=(const DiscoveredUpstream&) = delete;

  // Watches Consul until cancelled (EndpointWatch::run).
  boost::asio::awaitable<void> run();

  // The latest endpoints; before Consul's first answer, waits for it until `until`.
  // Null when none came in time. Throws operation_aborted when the awaiting coroutine is
  // cancelled or the watch has ended (shutdown).
  boost::asio::awaitable<Snapshot> endpoints(std::chrono::steady_clock::time_point until);
  Snapshot snapshot() const noexcept { return watch_.snapshot(); }

  // An endpoint for one attempt, not one of `tried` if another is available; empty when
  // the snapshot has none.
  connect::Pick pick(const Snapshot& snapshot, std::span<const std::string> tried);

  // Where to send a request for `endpoint`: its address and port, and the mTLS set-up.
  http::Destination destination_of(const connect::Endpoint& endpoint) const;

  const std::string& service() const noexcept { return options_.service; }
  // The mTLS set-up of every endpoint (null for plain ones).
  const std::shared_ptr<const http::ClientTls>& tls() const noexcept { return options_.tls; }
  connect::EndpointKind kind() const noexcept { return options_.kind; }
  std::vector<connect::EndpointStats> endpoint_stats() const { return balancer_.endpoint_stats(); }

 private:
  DiscoveredUpstreamOptions options_;
  connect::EndpointWatch watch_;
  connect::LoadBalancer balancer_;
};

// What a failed attempt says about the endpoint it went to, by the service's fault
// classifier (fault_classifier.hpp):
//
//   fault class                                    outcome
//   caller_error (a 4xx answer), a 429 answer      success: the endpoint did its job
//   (rejected, with its status)                    (a 429: its limit said no, at once)
//   callee_failure (5xx, undecodable 2xx body)     callee_failure
//   timeout                                        callee_failure (it did not answer in time)
//   transport: connect_failed, tls_handshake,      connect_failure (nothing reached it)
//              peer_rejected
//   transport: closed, outcome_unknown             callee_failure (it dropped the call)
//   cancelled before the attempt's deadline,       nullopt: nobody's fault, not recorded
//   any local qos::QosRejected
//   cancelled once the attempt's deadline has      callee_failure: it did not answer in
//   passed (`attempt_deadline_passed`)             time, whoever stopped waiting first
//
// Both failures count toward the endpoint's outlier ejection. The deadline matters because
// the client's own timer and a preemptive timeout's watchdog both end an attempt at its
// deadline: whichever fires first, the endpoint is held to the same timeout.
std::optional<connect::Outcome> endpoint_outcome(const std::exception_ptr& error,
                                                 bool attempt_deadline_passed = false) noexcept;

}  // namespace coromesh
