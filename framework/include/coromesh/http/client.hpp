#pragma once

// A coroutine HTTP/1.1 client with a keep-alive connection pool per destination and a
// deadline on every call. Generated client stubs, the Consul agent client and the
// frontend all call through it.
//
// Threading: a Client is bound to one executor (one io_context thread of the pool);
// call it only from coroutines running on that executor. Use one Client per
// io_context, not one shared across threads.
//
// Errors are thrown as ClientError (a std::system_error whose code is a ClientErrc):
// connect_failed, connect_timeout, timeout, bad_response, connection_closed,
// outcome_unknown, and over TLS tls_handshake and peer_rejected (discovery_unavailable and
// identity_unavailable, and no_endpoint, are thrown by the typed clients built on it,
// never by the Client itself). A response with any
// status code, 5xx included, is a successful call: the status is the caller's to judge.
// Interim (1xx) responses before it are skipped, up to 8 (more, or a 101 switching to a
// protocol the client cannot speak, is bad_response); an answer the server sends before
// it has read the whole request (a 413 for an upload) is the call's answer, even when the
// rest of the request could not be written: the response is read while the request is
// written, so a server that answers and then stops reading ends the call at once, and
// such a connection, its request half-sent, is never reused.
// A call can also be cancelled through the awaiting coroutine's cancellation slot (e.g.
// `co_await (client.send(...) || timer.async_wait(...))`); it then ends with
// boost::system::system_error(operation_aborted) and its connection is closed, not pooled.
// Destroy a Client only when none of its calls is in flight.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "coromesh/http/message.hpp"
#include "coromesh/http/tls.hpp"

namespace coromesh::http {

enum class ClientErrc {
  connect_failed = 1,  // resolve or TCP connect failed (refused, unreachable)
  timeout,             // the deadline passed before a complete response arrived
  bad_response,        // the peer sent something that is not a valid HTTP response
  connection_closed,   // the connection broke while sending, or in the middle of the response
  // The whole request was sent, then the peer closed the connection without a byte of
  // response: the server may or may not have processed it. Sending it again is safe only
  // for an idempotent request.
  outcome_unknown,
  // TLS: the handshake failed (no or untrusted certificate on either side, protocol
  // mismatch), or the server ended the session before answering with a TLS alert (as a
  // TLS 1.3 server does when it refuses our certificate), or the handshake outlasted
  // ClientOptions::tls_handshake_timeout. Nothing was processed.
  tls_handshake,
  // TLS: the handshake succeeded but ClientTls::verify_peer refused the server (e.g. its
  // certificate names another service). Nothing was sent.
  peer_rejected,
  // The TCP connect got no answer within ClientOptions::connect_timeout, well before the
  // call's deadline (a black-holed address: SYNs vanish). Nothing was sent: another
  // endpoint may be tried for any method. (When the deadline comes first, it is timeout.)
  connect_timeout,
  // Not the client's own: a typed client calling a service found in Consul has no answer
  // from Consul yet about its instances, so there is no endpoint to call. Nothing was sent
  // and the callee was not involved: the caller's own mesh plumbing is not ready. Counted
  // as a refusal, not as the callee's failure (service/fault_classifier.hpp); answered 503.
  discovery_unavailable,
  // Not the client's own either: a typed client with mTLS (Connect-native) still has no
  // certificate of its own (Consul has not issued this service's leaf yet, or its token
  // may not fetch it) when the call's time to wait for it ran out. No endpoint was picked
  // and nothing was sent: the caller's own identity is not ready, no callee's fault.
  // Counted as a refusal like discovery_unavailable; answered 503.
  identity_unavailable,
  // Not the client's own either: a typed client calling a service found in Consul got
  // Consul's answer, and it lists no passing instance. Nothing was sent. The callee is
  // down: a transport failure (retried, counted by its breaker), answered 503 no_endpoint
  // as the sidecar answers the same cause (Envoy's "no healthy upstream"), not 502 as a
  // refused connect is.
  no_endpoint,
};
const std::error_category& client_category() noexcept;
std::error_code make_error_code(ClientErrc e) noexcept;

// Whether a call that failed with `code` certainly never reached the destination's code:
// no connection came up (connect_failed, connect_timeout) or its TLS handshake failed
// (tls_handshake, peer_rejected), or there was no endpoint to connect to (no_endpoint).
// Nothing was sent, so another endpoint may be tried, or the request sent again, whatever
// its method; the failure is the connect's, not the callee's answer.
bool never_reached(const std::error_code& code) noexcept;

class ClientError : public std::system_error {
 public:
  ClientError(ClientErrc code, const std::string& what)
      : std::system_error(make_error_code(code), what) {}
};

struct ClientOptions {
  std::size_t max_idle_per_destination = 64;  // idle keep-alive connections kept per destination
  std::chrono::milliseconds idle_timeout{30'000};  // an idle pooled connection is closed after this
  std::size_t body_limit = 16 * 1024 * 1024;       // larger response bodies are bad_response
  std::string user_agent = "coromesh";
  // Send an idempotent request (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) again, once, on a
  // fresh connection when a pooled one turns out to be closed before any byte of the
  // response. Never a POST or PATCH: the server may have processed it (RFC 9110 §9.2.2),
  // so the caller gets outcome_unknown. Off for long polls (Consul blocking queries):
  // there the failure is news — the server restarted — and the caller must see it.
  bool retry_closed_pooled_connection = true;
  // Bounds the TCP connect (and name resolution) of a new connection, within the call's
  // deadline. A SYN-ACK comes from the peer's kernel, whatever its load, within one round
  // trip; a second without one is the first SYN retransmission: the address is
  // black-holed (or its listener's accept queue overflows), and failing with
  // connect_timeout lets the caller try another endpoint instead of spending its whole
  // deadline there. Not the TLS handshake, which needs the peer process:
  // tls_handshake_timeout (or the deadline) bounds that.
  std::chrono::milliseconds connect_timeout{1'000};
  // Bounds the TLS handshake of a new connection, within the call's deadline; 0: only the
  // deadline does. The handshake needs the peer's process, not only its kernel: one frozen
  // or deadlocked behind a kernel that still accepts never answers it. Ended by this bound
  // (before the deadline) the call fails with tls_handshake: nothing was sent, and the
  // caller may go elsewhere for any method (the sidecar's --handshake-timeout).
  std::chrono::milliseconds tls_handshake_timeout{0};
  // The request header that tells the callee its remaining budget in whole milliseconds
  // (qos::kDeadlineHeader); empty: none. When a request carries it and the call opens a
  // new connection, the value is lowered by the time that took (the connect and the TLS
  // handshake) before the request is written: the callee is told what is left as the
  // request leaves, not given the set-up's time again. A value that is not a number of
  // milliseconds is left for the callee to refuse.
  std::string_view deadline_header = "x-coromesh-deadline-ms";
};

struct Destination {
  std::string host;  // an IP address or a name resolved on each new connection
  std::uint16_t port = 0;
  // Null: plain TCP. Otherwise every connection to this destination is TLS, set up as
  // described; shared so that copying a Destination per call stays cheap.
  std::shared_ptr<const ClientTls> tls;
};

class Client {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Client(boost::asio::any_io_executor executor, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `request` to `destination` and returns the complete response. Sets Host
  // (if absent), User-Agent and Content-Length. The whole exchange (taking or opening
  // a connection, writing, reading) must finish before `deadline`; a call whose deadline
  // has passed already sends nothing (timeout). An idempotent request
  // on a pooled connection that turns out to be closed by the peer is retried once on a
  // fresh connection when nothing of the response was read (unless
  // options.retry_closed_pooled_connection is off); a non-idempotent one never is.
  // Parameters are taken by value: the coroutine starts lazily and may outlive the
  // caller's temporaries (e.g. when co_spawn'ed).
  boost::asio::awaitable<Response> send(Destination destination, Request request,
                                        Clock::time_point deadline);

  // Convenience: GET `target` with a timeout relative to now.
  boost::asio::awaitable<Response> get(Destination destination, std::string target,
                                       std::chrono::milliseconds timeout);

  // Pool statistics, for tests and metrics.
  std::uint64_t connections_opened() const noexcept;
  std::size_t idle_connections() const noexcept;

  // Closes every idle connection (used at shutdown).
  void close_idle();
  // Closes the idle connections to one destination (with the same TLS set-up), e.g. an
  // endpoint that has left the service: they would otherwise wait out idle_timeout.
  // Connections to it still in a call are parked again after it; call this again then.
  void close_idle_to(const Destination& destination);
  std::size_t idle_connections_to(const Destination& destination) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coromesh::http

template <>
struct std::is_error_code_enum<coromesh::http::ClientErrc> : std::true_type {};
