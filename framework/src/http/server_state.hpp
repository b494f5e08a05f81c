#pragma once

// Internal: the state shared by the acceptor, the connections and the Server facade.
// Held by shared_ptr so a connection coroutine that outlives a drain cannot touch
// freed memory.

#include <atomic>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "coromesh/http/server.hpp"

namespace coromesh::http::detail {

// One open connection. Touched only on its own io_context's thread, except the
// registry links which are guarded by State::mutex.
struct Connection {
  explicit Connection(boost::asio::ip::tcp::socket s)
      : socket(std::move(s)), watchdog(socket.get_executor()) {}

  // The read or write under way must finish by `deadline`. Setting it is a plain store:
  // the watchdog (Server::State::watch) wakes up periodically and closes the socket once
  // the deadline has passed, so a request costs no timer operations (a per-operation
  // timer was a measurable share of each request).
  void expires_after(std::chrono::steady_clock::duration timeout) {
    deadline = std::chrono::steady_clock::now() + timeout;
  }
  // The same, from a clock reading the caller already has.
  void expires_at(std::chrono::steady_clock::time_point at) { deadline = at; }
  // No deadline: while a handler runs, the connection waits for our answer, not for the
  // client, so no read timeout applies (the handler's own QoS and deadline bound it).
  void expires_never() { deadline = std::chrono::steady_clock::time_point::max(); }

  // The connection's socket, plain or under TLS: a TLS stream (detail::TlsServerStream)
  // lives in the connection's coroutine and refers to this socket, so the watchdog and
  // a drain reach either kind the same way.
  boost::asio::ip::tcp::socket socket;
  boost::asio::steady_timer watchdog;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool busy = false;             // a request is being read, handled or answered
  bool reading_request = false;  // part of a request has arrived, the rest is awaited
  bool closing = false;          // close after the current response
  // Every request is answered with this, and the connection closed: 503 shutting_down
  // on a connection accepted during a drain, a refused peer's answer (PeerVerdict).
  std::optional<PeerVerdict::Answer> canned_answer;
  // The drain interrupted it: mid-request when its grace ran out, or mid-handshake (a TLS
  // handshake is not waited for: stop_accepting already ends one that is not receiving).
  bool cut_off = false;
  bool handshaking = false;  // its TLS handshake is in progress
  // Its peer's authorization (ServerTls::authorize_peer) is awaited: a wait on no socket,
  // which only the drain's last step (the terminal cancellation) ends; that step then
  // sets `cut_off`.
  bool authorizing = false;
  bool timed_out = false;     // closed by the watchdog: the deadline passed
  bool tls = false;           // served over TLS: a drain closes it with close_notify
  std::string peer_identity;  // over TLS, what the peer check named the client
  // Terminal cancellation of the connection's coroutine, handler included: the last
  // step of a drain whose grace period ran out.
  boost::asio::cancellation_signal cancel;
  // The watch on the client while a handler runs (hang_up_watch.hpp).
  boost::asio::cancellation_signal stop_watching;  // ends its pending wait
  std::uint64_t watch_generation = 0;              // the request the pending wait is for
  bool watching = false;  // its wait is pending, for the handler running now
  // A handler runs: the watchdog starts the watch at its next wake-up.
  bool handler_running = false;
  // The client pipelines: a request of its arrived while an earlier one was handled. Its
  // end of stream is a half-close behind its requests, not a hang-up (only a reset is).
  bool pipelining = false;
  // The client hung up while this request's handler ran: the handler was cancelled (the
  // drain's path, `cancel`), its answer is not wanted, and it is counted 499.
  bool hung_up = false;
  std::list<std::shared_ptr<Connection>>::iterator registry_position;
};

// TLS over the connection's socket, which the Connection keeps owning.
using TlsServerStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>;

}  // namespace coromesh::http::detail

namespace coromesh::http {

// A drain also waits until no connection has arrived for this long.
inline constexpr std::chrono::milliseconds kDrainQuietPeriod{200};
// At most this many connections are taken from the backlog per trip through the
// io_context's queue (the accept loop's batch).
inline constexpr std::size_t kAcceptBatch = 64;

struct Server::State : std::enable_shared_from_this<Server::State> {
  State(runtime::IoPool& p, const Router& r, ServerLimits l, ServerObserver* o)
      : pool(p), router(r), limits(l), observer(o), acceptor(p.context(0)) {}

  runtime::IoPool& pool;
  const Router& router;
  ServerLimits limits;
  ServerObserver* observer;
  boost::asio::ip::tcp::acceptor acceptor;
  std::optional<ServerTls> tls;  // set before start(), read-only afterwards

  std::mutex mutex;
  std::list<std::shared_ptr<detail::Connection>> connections;
  // The drain's last step has closed every connection (under `mutex`): one whose accept
  // completes after it is closed at once, as nothing else would close it.
  bool closed = false;
  std::atomic<std::size_t> connection_count{0};
  std::atomic<std::size_t> in_flight{0};
  std::atomic<bool> draining{false};
  // steady_clock ticks of the last accepted connection, for the drain's quiet period.
  std::atomic<std::chrono::steady_clock::rep> last_accept{0};

  boost::asio::awaitable<void> accept_loop();
  // Registers an accepted connection and starts serving it (or refuses it over the
  // connection limit).
  void admit(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> serve(std::shared_ptr<detail::Connection> connection);
  // The request loop over `stream`: tcp::socket or TlsServerStream (connection.cpp).
  // `shared` is serve()'s, which outlives the loop; the hang-up watch holds a copy.
  template <class Stream>
  boost::asio::awaitable<void> serve_requests(const std::shared_ptr<detail::Connection>& shared,
                                              Stream& stream);
  // Handshake, peer check, request loop, close_notify (server_tls.cpp).
  boost::asio::awaitable<void> serve_tls(const std::shared_ptr<detail::Connection>& shared);
  void record_handshake(TlsHandshakeResult result, std::string_view reason,
                        const std::string& peer_address);
  boost::asio::awaitable<void> watch(std::shared_ptr<detail::Connection> connection);
  // How often a connection's watchdog wakes up: a quarter of the shortest timeout, so
  // a timeout is enforced within 25% of its value.
  std::chrono::steady_clock::duration watchdog_period() const;
  boost::asio::awaitable<Response> dispatch(Request& request);
  void close_all(bool only_idle);

  // Handshake outcomes. The counters are bumped on io threads; by_reason and the log
  // throttle (one line per reason per kTlsLogPeriod) are under tls_mutex, taken only
  // for handshakes that did not end `accepted`.
  std::atomic<std::uint64_t> tls_accepted{0};
  std::atomic<std::uint64_t> tls_refused{0};
  std::atomic<std::uint64_t> tls_failed{0};
  std::atomic<std::uint64_t> tls_timed_out{0};
  struct ReasonLog {
    std::uint64_t count = 0;
    std::uint64_t unlogged = 0;
    std::chrono::steady_clock::time_point last_logged{};
  };
  mutable std::mutex tls_mutex;
  std::map<std::string, ReasonLog, std::less<>> tls_reasons;
};

}  // namespace coromesh::http
