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
// Then the two pumps. Each endpoint's last TLS session is kept (connect::TlsSessionCache):
// the next connection to it resumes that session, an abbreviated handshake.
//
// http mode (spec.mode == http, see upstream_http.cpp): the listener speaks HTTP/1.1 to
// the local client and sends each request on its own to an endpoint chosen for it, over
// pooled mTLS connections (one http::Client per io thread); a request that reached no
// service (a connect failure, or an answer marked http::kNotDeliveredHeader by the
// endpoint's sidecar) is retried on another endpoint for any method, 502/503 and lost
// answers only for idempotent ones;
// 5xx answers count toward the endpoint's outlier ejection; x-coromesh-deadline-ms is
// re-encoded per attempt and traceparent passed on unchanged.
//
// Ownership: shared. Each connection coroutine and the watch coroutine hold the
// listener, so stop() closes the acceptor and the watch while the connections already
// open go on; retire() (an upstream removed from the registration) also drains them, as
// a whole sidecar's drain would, and they end on their own: http mode between requests
// at once, after the answer in hand otherwise; tcp mode at its natural end.
//
// Threads: start(), stop() and retire() on the consul executor (where the acceptor and
// the watch live); connections run on the pool's io threads.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <optional>
#include <vector>

#include "coromesh/connect/endpoint_watch.hpp"
#include "coromesh/connect/load_balancer.hpp"
#include "coromesh/connect/tls_session_cache.hpp"
#include "coromesh/http/client.hpp"
#include "coromesh/http/message.hpp"
#include "coromesh/runtime/io_pool.hpp"
#include "http_exchange.hpp"
#include "pump.hpp"
#include "sidecar_context.hpp"

namespace coromesh::sidecar {

class UpstreamListener : public std::enable_shared_from_this<UpstreamListener> {
 public:
  UpstreamListener(SidecarContext& context, UpstreamSpec spec);
  ~UpstreamListener();

  // Binds the loopback port (throws if it cannot), starts the watch and accepting.
  void start(runtime::IoPool& pool);
  // Stops accepting and the watch. Draining the open connections is the caller's (the
  // whole sidecar's drain), or retire()'s.
  void stop();
  // stop(), and drains this listener's own connections (the sidecar's other listeners
  // go on): the upstream is no longer in the registration.
  void retire();

  const UpstreamSpec& spec() const noexcept { return spec_; }
  std::uint16_t port() const noexcept { return port_; }
  // Endpoints in the latest answer (the coromesh_sidecar_upstream_endpoints gauge).
  std::size_t endpoint_count() const;

 private:
  // A verified mTLS connection to one endpoint, with the pick that chose it.
  struct Connected;

  boost::asio::awaitable<void> accept_loop(runtime::IoPool& pool);
  boost::asio::awaitable<void> serve(TcpSocket client, std::size_t thread,
                                     ConnectionRegistry::Admission admission);
  // http mode (upstream_http.cpp): requests of one client connection, on io thread
  // `thread`, until it closes or idles (or a drain ends it through `control`).
  boost::asio::awaitable<void> serve_http(TcpSocket& client, std::size_t thread,
                                          ExchangeControl& control);
  boost::asio::awaitable<http::Response> forward(http::Request request, std::size_t thread);
  boost::asio::awaitable<std::optional<Connected>> connect_upstream(TcpSocket& client);
  // The latest endpoints; before Consul's first answer, waits for it up to the start-up
  // patience or `until` (an http request's deadline), whichever comes first.
  boost::asio::awaitable<connect::EndpointWatch::Snapshot> endpoints(
      std::chrono::steady_clock::time_point until = std::chrono::steady_clock::time_point::max());
  // http mode: the per-thread clients and their mTLS set-up (upstream_http.cpp).
  void start_http(runtime::IoPool& pool);
  // http mode, after an attempt on io thread `thread` that used `used` from `picked_from`:
  // closes that thread's idle connections to endpoints gone from the watch's latest
  // snapshot (including the one the attempt just parked, if its endpoint left while it was
  // out), which would otherwise stay open on a departed instance for the pool's idle
  // timeout. Costs a pointer comparison while the endpoints are unchanged.
  void forget_departed(std::size_t thread, const connect::Endpoint& used,
                       const connect::EndpointWatch::Snapshot& picked_from);

  SidecarContext& context_;
  UpstreamSpec spec_;
  ListenerMetrics metrics_;
  connect::EndpointWatch watch_;
  connect::LoadBalancer balancer_;
  // tcp mode: the last session of each endpoint, for the next connection to resume.
  std::shared_ptr<connect::TlsSessionCache> sessions_ =
      std::make_shared<connect::TlsSessionCache>();
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  boost::asio::cancellation_signal stop_watch_;
  std::uint16_t port_ = 0;
  // Set by stop() (consul executor), read by connections as they begin (io threads): one
  // that begins after a drain has gone through the registry drains itself.
  std::atomic<bool> stopped_ = false;
  // http mode: one pooled client per io thread (index = pool executor), and the mTLS
  // set-up every connection to an endpoint uses.
  std::vector<std::unique_ptr<http::Client>> http_clients_;
  // The snapshot each thread's client last compared its connections against.
  std::vector<connect::EndpointWatch::Snapshot> http_seen_;
  std::shared_ptr<const http::ClientTls> http_tls_;
};

}  // namespace coromesh::sidecar
