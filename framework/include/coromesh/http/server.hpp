#pragma once

// The HTTP/1.1 server: one coroutine per connection, keep-alive, and the limits that
// keep hostile or slow clients from hurting anyone else:
//   header larger than max_header_bytes       -> 431, connection closed
//   body larger than max_body_bytes           -> 413, connection closed
//   malformed request                         -> 400, connection closed
//   Transfer-Encoding not ending in chunked   -> 400, connection closed (RFC 9112 §6.3)
//   header not complete within header_timeout -> 408, connection closed (slowloris)
//   body not complete within body_timeout     -> 408, connection closed
// (408 only once a request has begun and only over plain TCP; otherwise just closed.)
//   idle keep-alive longer than idle_timeout  -> connection closed
//   response not written within write_timeout -> connection closed
// The read timeouts apply only while the server waits for the client: never while a
// handler runs (its QoS policies and deadline bound it) nor while the answer is written.
//   client hangs up while the handler runs    -> handler cancelled, nothing sent, 499
// Once a request has been read whole and its handler runs into the connection watchdog's
// next wake-up (a quarter of the shortest read timeout, handshake timeout included: 2.5 s
// by default), the connection watches its TCP socket (without reading it, under TLS too)
// until the handler ends. A handler answered sooner is not watched, so a fast request
// pays nothing for this; a client gone by then is sent its answer, counted by that
// write. A reset, or an end of stream from a
// client that has not pipelined (a close, or a half-close: Go and nginx take it the same
// way; a pipelining client's end of stream is a half-close behind its requests, which
// are all answered), is the client hanging up: the connection's cancellation signal emits
// terminal cancellation, as a drain's last step does, so whatever the handler awaits
// ends with operation_aborted (a declared operation's QoS chain counts `cancelled`).
// A handler that ignores it runs to its end; its answer is dropped, counted 499 still.
// A request that arrives meanwhile (pipelined) leaves the handler alone.
//   more than max_connections open            -> 503, connection closed
//   unknown path -> 404; known path, other method -> 405 with `Allow`
//   a handler's answer with CR, LF or NUL in a field -> 500 (never sent: response splitting)
//   a handler's answer with an interim (1xx) status  -> 500 (it is never a final answer)
//   a handler's 204 or 304 -> sent without content whatever its body, and a 204 without
//   Content-Length (RFC 9110 §6.4.1, §8.6): no stray bytes ahead of the next answer
//   any other answer is framed by its body's own length, whatever Content-Length or
//   Transfer-Encoding the handler left in it
// With enable_tls() every connection first completes a TLS handshake within
// ServerTls::handshake_timeout and passes the peer check; the limits above apply alike
// (over max_connections a TLS connection is closed, not answered: it cannot read HTTP).
// Errors are JSON {"error": "<code>", "reason": "<text>"}. HEAD is served by GET
// routes without a body; `Expect: 100-continue` is answered before the body is read.
//
// Threading: the acceptor runs on the pool's first io_context; each accepted
// connection is handed to the next io_context round-robin and stays there. All public
// methods are thread-safe.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "coromesh/http/router.hpp"
#include "coromesh/http/tls.hpp"
#include "coromesh/runtime/io_pool.hpp"

namespace coromesh::http {

struct ServerLimits {
  std::size_t max_header_bytes = 8 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;
  std::chrono::milliseconds header_timeout{10'000};  // first byte to end of header
  std::chrono::milliseconds body_timeout{30'000};
  std::chrono::milliseconds idle_timeout{60'000};  // between keep-alive requests
  std::chrono::milliseconds write_timeout{30'000};
  std::size_t max_connections = 10'000;
};

// The status reported for a request whose client went away (closed or reset the
// connection, or did not take the answer within write_timeout) before the answer was
// delivered: nginx's "client closed request". Never sent on the wire. A client gone while
// the handler ran has had the handler cancelled, and is sent nothing at all.
inline constexpr unsigned kClientClosedRequest = 499;

// Told about every request that reached routing; `route` is null for 404/405 and for
// requests whose header was refused (those are reported with operation "unmatched"),
// a connection refused over max_connections included (503, though no request was read).
// A request refused for its body (413, bad chunked framing, 408 while the body arrived)
// after a header that named a route is reported with that route.
// `status` is what the exchange came to: the answer's status when it was delivered,
// kClientClosedRequest when the client was gone, 503 when a drain cut the request off,
// 408 when the request began but did not arrive within the header or body timeout
// (answered 408 over plain TCP; over TLS the connection is only closed).
// Called on the connection's io thread: implementations must be thread-safe.
class ServerObserver {
 public:
  virtual ~ServerObserver() = default;
  virtual void request_started(const Route* route) = 0;
  virtual void request_finished(const Route* route, unsigned status,
                                std::chrono::steady_clock::duration elapsed) = 0;
  // Each TLS handshake's end; `reason` is empty for `accepted`, else short and of bounded
  // variety (OpenSSL's reason, or the peer check's). Optional for plain-TCP servers.
  virtual void tls_handshake_finished(TlsHandshakeResult /*result*/, std::string_view /*reason*/) {}
};

// How a server's TLS handshakes ended since it started (see TlsHandshakeResult).
struct TlsCounters {
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;
  std::uint64_t failed = 0;
  std::uint64_t timed_out = 0;
  // Every handshake that did not end `accepted`, by reason.
  std::map<std::string, std::uint64_t, std::less<>> by_reason;
};

class Server {
 public:
  // `router` and `observer` must outlive every connection, not only the server: its
  // connections' coroutines go on using them after ~Server (which only closes the
  // acceptor) until the pool is joined and its abandoned work destroyed.
  Server(runtime::IoPool& pool, const Router& router, ServerLimits limits = {},
         ServerObserver* observer = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens; port 0 lets the kernel pick. Throws std::system_error naming
  // the address when the bind fails.
  void listen(const std::string& address, std::uint16_t port);
  std::uint16_t port() const noexcept;

  // Serves every connection over TLS from now on; call before start(). Throws
  // std::invalid_argument when tls.context is empty.
  void enable_tls(ServerTls tls);

  // Spawns the accept loop on the pool (the pool may already be running or not).
  void start();

  // Shutdown phase 1: idle keep-alive connections close now, busy ones after their
  // current response (sent with `Connection: close`); requests on connections
  // accepted from now on are answered 503 `shutting_down`.
  void stop_accepting();

  // Shutdown phase 2: waits up to `grace` for in-flight requests to finish, for every
  // connection to close and for new arrivals (answered 503) to stop for 200 ms, then
  // closes the listening socket and every remaining connection, cancelling the
  // handlers still running. Returns how many requests were cut off.
  boost::asio::awaitable<std::size_t> drain(std::chrono::milliseconds grace);

  std::size_t active_connections() const noexcept;
  std::size_t in_flight() const noexcept;
  TlsCounters tls_counters() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace coromesh::http
