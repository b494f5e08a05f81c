#pragma once

// One upstream: a loopback listener whose connections are carried over mTLS to an
// endpoint of the upstream service (its sidecars, or Connect-native instances).
//
// Endpoints come from an EndpointWatch (/v1/health/connect/<service>?passing, blocking
// queries) and are chosen per connection by a LoadBalancer (--balance). Per connection:
// pick an endpoint; TCP connect and TLS handshake with our own leaf under
// --connect-timeout; the peer must chain to the roots and name the upstream service
// (spiffe://…/svc/<service>); on any failure the endpoint's failure is reported to the
// balancer (outlier ejection) and another endpoint is tried, up to --upstream-attempts.
// Then the two pumps.
//
// Ownership: shared. Each connection coroutine and the watch coroutine hold the
// listener, so stop() (an upstream removed from the registration) closes the acceptor
// and the watch while connections already open finish on their own.
//
// Threads: start() and stop() on the consul executor (where the acceptor and the watch
// live); connections run on the pool's io threads.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <optional>

#include "coromesh/connect/endpoint_watch.hpp"
#include "coromesh/connect/load_balancer.hpp"
#include "coromesh/runtime/io_pool.hpp"
#include "pump.hpp"
#include "sidecar_context.hpp"

namespace coromesh::sidecar {

class UpstreamListener : public std::enable_shared_from_this<UpstreamListener> {
 public:
  UpstreamListener(SidecarContext& context, UpstreamSpec spec);
  ~UpstreamListener();

  // Binds the loopback port (throws if it cannot), starts the watch and accepting.
  void start(runtime::IoPool& pool);
  void stop();

  const UpstreamSpec& spec() const noexcept { return spec_; }
  std::uint16_t port() const noexcept { return port_; }
  // Endpoints in the latest answer (the coromesh_sidecar_upstream_endpoints gauge).
  std::size_t endpoint_count() const;

 private:
  // A verified mTLS connection to one endpoint, with the pick that chose it.
  struct Connected;

  boost::asio::awaitable<void> accept_loop(runtime::IoPool& pool);
  boost::asio::awaitable<void> serve(TcpSocket client);
  boost::asio::awaitable<std::optional<Connected>> connect_upstream(TcpSocket& client);
  boost::asio::awaitable<connect::EndpointWatch::Snapshot> endpoints();

  SidecarContext& context_;
  UpstreamSpec spec_;
  ListenerMetrics metrics_;
  connect::EndpointWatch watch_;
  connect::LoadBalancer balancer_;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  boost::asio::cancellation_signal stop_watch_;
  std::uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace coromesh::sidecar
