#pragma once

// The public mTLS listener: accepts a Connect client, checks who it is, and pipes it to
// the local service.
//
// Per connection (one coroutine on one io thread, owning both streams):
//   1. TLS handshake as server with the current leaf and roots (TLS 1.2 minimum), under
//      --handshake-timeout, begun at the client's first byte; at most
//      --max-pending-handshakes in flight, the oldest shed past that (handshake_limit.hpp);
//   2. the peer's chain (OpenSSL, against every root), SPIFFE ID and trust domain
//      (connect::verify_peer);
//   3. authorization: may that service call ours? (connect::Authorizer, on the agent's
//      executor);
//   4. tcp mode: a connection to the local service under --connect-timeout, then the
//      two pumps;
//      http mode (--protocol http, Proxy.Config.protocol = "http"; inbound_http.cpp):
//      HTTP/1.1 requests read one at a time and each sent to the local service over a
//      pooled connection (one http::Client per io thread), under its route's timeout
//      (--route-timeout, else --http-timeout, shortened by x-coromesh-deadline-ms). The
//      verified caller's SPIFFE ID is passed in `x-coromesh-peer`, and any copy of that
//      header the caller sent is removed first, so it cannot be forged. Failures are
//      answered 504 (timeout), 503 (the local service refuses connections) or 502 (its
//      answer was lost or malformed), never retried: the local service is the only one.
// A peer refused at 1–3 is closed, logged (`sidecar.inbound.refused`, rate-limited per
// reason) and counted in coromesh_sidecar_handshakes_total{result="refused",reason}; the
// listener keeps serving everyone else. In http mode a peer refused at 3 (verified, but
// the intentions deny it) is first told why: its first request is answered 403
// `unauthorized` with Consul's reason (503 `authorization_unavailable` when the agent
// could not decide), as Envoy's L7 RBAC filter answers; tcp mode has no protocol to say
// it in, and only closes, as Consul's and Envoy's L4 proxies do. http mode also asks
// again on an open connection, at most once per kReauthorizeInterval (as Envoy's HTTP
// RBAC filter judges every request): a removed allow refuses the next requests, with the
// same answer, rather than only the next connections; tcp mode cannot (a byte stream
// cannot be refused halfway), and checks at connection set-up only, as Consul's proxy.
//
// Threads: start() before the pool runs; stop() on the consul executor (where the
// acceptor lives). Accepted connections are spread over the pool's io threads.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "coromesh/connect/spiffe_id.hpp"
#include "coromesh/http/client.hpp"
#include "coromesh/http/tls.hpp"
#include "coromesh/runtime/io_pool.hpp"
#include "handshake_limit.hpp"
#include "http_exchange.hpp"
#include "pump.hpp"
#include "sidecar_context.hpp"

namespace coromesh::sidecar {

struct InboundTarget {
  std::string service;                   // the destination: what authorization asks about
  boost::asio::ip::tcp::endpoint local;  // the local service
  ListenerMode mode = ListenerMode::tcp;
};

class InboundListener {
 public:
  InboundListener(SidecarContext& context, config::Address listen, InboundTarget target);

  // Binds the public port (throws if it cannot) and starts accepting.
  void start(runtime::IoPool& pool);
  std::uint16_t port() const noexcept { return port_; }
  // Closes the acceptor: no new connections; open ones go on.
  void stop();

 private:
  boost::asio::awaitable<void> accept_loop(runtime::IoPool& pool);
  boost::asio::awaitable<void> serve(TcpSocket socket, std::size_t thread,
                                     ConnectionRegistry::Admission admission);
  // tcp mode: the local connection and the pumps.
  boost::asio::awaitable<void> pipe_to_local(TlsStream& tls, TcpSocket& local);
  // http mode (inbound_http.cpp): requests of one verified caller until it closes (or a
  // drain ends it through `control`).
  boost::asio::awaitable<void> serve_http(TlsStream& tls, connect::SpiffeId peer,
                                          std::string peer_serial, std::size_t thread,
                                          ExchangeControl& control);
  // http mode, a refused peer: reads its first request and answers it with `answer`.
  boost::asio::awaitable<void> answer_refused(TlsStream& tls, http::PeerVerdict::Answer answer);
  boost::asio::awaitable<http::Response> forward_local(http::Request request,
                                                       const std::string& peer, std::size_t thread);
  void refuse(std::string_view reason, std::string_view detail, const std::string& peer);

  SidecarContext& context_;
  config::Address listen_;
  InboundTarget target_;
  // target_.local's address in words, the http mode's destination: formatted once, not
  // per request.
  std::string local_host_;
  ListenerMetrics metrics_;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  HandshakeLimit handshakes_;  // --max-pending-handshakes
  std::uint16_t port_ = 0;
  // http mode: one pooled client to the local service per io thread (index = executor).
  std::vector<std::unique_ptr<http::Client>> local_clients_;
};

// The resolved endpoint of `address` (an IP literal, or a name resolved once now).
boost::asio::ip::tcp::endpoint resolve_now(const config::Address& address);

}  // namespace coromesh::sidecar
