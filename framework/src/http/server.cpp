#include "coromesh/http/server.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <stdexcept>
#include <system_error>

#include "coromesh/http/error.hpp"
#include "coromesh/log/logger.hpp"
#include "hang_up_watch.hpp"
#include "server_state.hpp"

namespace coromesh::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Server::Server(runtime::IoPool& pool, const Router& router, ServerLimits limits,
               ServerObserver* observer)
    : state_(std::make_shared<State>(pool, router, limits, observer)) {}

Server::~Server() {
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
}

void Server::listen(const std::string& address, std::uint16_t port) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address, ec);
  if (ec) {
    throw std::system_error(ec, "listen: '" + address + "' is not an IP address");
  }
  tcp::endpoint endpoint(ip, port);
  auto& acceptor = state_->acceptor;
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint, ec);
  if (ec) {
    throw std::system_error(ec, "listen on " + address + ":" + std::to_string(port));
  }
  acceptor.listen(asio::socket_base::max_listen_connections);
  log::info("http.listen", {{"address", address}, {"port", this->port()}});
}

std::uint16_t Server::port() const noexcept {
  boost::system::error_code ec;
  auto endpoint = state_->acceptor.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

void Server::enable_tls(ServerTls tls) {
  if (!tls.context) {
    throw std::invalid_argument("http::Server::enable_tls: a context provider is required");
  }
  state_->tls = std::move(tls);
}

void Server::start() {
  runtime::spawn(state_->acceptor.get_executor(), state_->accept_loop(), "http.accept");
}

void Server::stop_accepting() {
  // The listening socket stays open until the drain ends: a connection that is
  // already in the kernel's backlog gets a clear 503 "shutting_down" instead of a
  // reset, and a client or sidecar can retry it elsewhere.
  state_->draining = true;
  state_->close_all(/*only_idle=*/true);
}

asio::awaitable<std::size_t> Server::drain(std::chrono::milliseconds grace) {
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + grace;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  // Done when nothing is in flight, every connection has closed, and no client has
  // connected for a quiet period: closing the listener earlier would reset connections
  // still in the kernel's backlog, which clients that have not yet seen a 503 (or the
  // deregistration) keep making.
  auto busy = [&] {
    auto since_accept = Clock::now().time_since_epoch() -
                        Clock::duration(state_->last_accept.load(std::memory_order_relaxed));
    return state_->in_flight.load() > 0 || state_->connection_count.load() > 0 ||
           since_accept < kDrainQuietPeriod;
  };
  while (busy() && Clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(asio::use_awaitable);
  }
  std::size_t cut_off = state_->in_flight.load();
  if (cut_off > 0) {
    log::warn("http.drain.cut_off", {{"requests", cut_off}, {"grace", grace}});
  }
  asio::post(state_->acceptor.get_executor(), [state = state_] {
    boost::system::error_code ignored;
    state->acceptor.close(ignored);
  });
  state_->close_all(/*only_idle=*/false);
  co_return cut_off;
}

std::size_t Server::active_connections() const noexcept {
  return state_->connection_count.load();
}
std::size_t Server::in_flight() const noexcept {
  return state_->in_flight.load();
}

TlsCounters Server::tls_counters() const {
  TlsCounters counters;
  counters.accepted = state_->tls_accepted.load();
  counters.refused = state_->tls_refused.load();
  counters.failed = state_->tls_failed.load();
  counters.timed_out = state_->tls_timed_out.load();
  std::lock_guard lock(state_->tls_mutex);
  for (const auto& [reason, log] : state_->tls_reasons) {
    counters.by_reason.emplace(reason, log.count);
  }
  return counters;
}

namespace {

// True when the peer has sent bytes that nobody has read yet (a request, for an idle
// connection). Peeks without blocking or consuming.
bool has_pending_bytes(tcp::socket& socket) {
  char byte = 0;
  return ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

}  // namespace

void Server::State::close_all(bool only_idle) {
  std::lock_guard lock(mutex);
  closed = closed || !only_idle;
  for (const auto& connection : connections) {
    // Each connection is closed on its own thread, where its coroutine runs.
    asio::post(connection->socket.get_executor(), [connection, only_idle] {
      connection->closing = true;
      const bool interrupted =
          !only_idle || (!connection->busy && !has_pending_bytes(connection->socket));
      if (interrupted && (connection->busy || connection->handshaking ||
                          (connection->authorizing && !only_idle))) {
        // Whatever this request, handshake or authorization now fails with is the drain's
        // doing. Not an authorization's at the drain's start: waking the socket does not
        // touch it, and it goes on (only the terminal cancellation below ends it).
        connection->cut_off = true;
      }
      boost::system::error_code ignored;
      if (!only_idle) {
        connection->socket.shutdown(tcp::socket::shutdown_both, ignored);
        connection->socket.cancel(ignored);
      } else if (interrupted) {
        // An idle connection is only woken up: its coroutine then closes it (a TLS one with
        // close_notify, bounded by the watchdog). Not shut down: a request whose read has
        // completed but whose coroutine has not run yet would find its answer's write
        // refused. One whose bytes have arrived but are not read yet is left alone: it is in
        // flight, and is answered with Connection: close (`closing`).
        connection->socket.cancel(ignored);
      }
      if (!only_idle) {
        connection->cancel.emit(asio::cancellation_type::terminal);
      }
    });
  }
}

namespace {

// A whole `Connection: close` answer with a JSON error body, for the cases where the
// server answers without a request to answer (over the limit, too slow).
std::string canned_answer(std::string_view status_line, std::string_view body) {
  return "HTTP/1.1 " + std::string(status_line) +
         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

// Non-blocking best effort: a few hundred bytes fit any socket's send buffer that is not
// full, and a client that cannot take them is not worth a timer.
void write_without_waiting(tcp::socket& socket, std::string_view bytes) {
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(bytes), ignored);
}

// Sent to a connection over the max_connections limit; it gets an answer instead of
// a silent reset, and costs us one short write.
asio::awaitable<void> reject_over_limit(tcp::socket socket) {
  static const std::string kResponse = canned_answer(
      "503 Service Unavailable", R"({"error":"overloaded","reason":"too many open connections"})");
  write_without_waiting(socket, kResponse);
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  co_return;
}

// Sent to a plain-TCP client whose request began but did not arrive within the header or
// body timeout (RFC 9110 §15.5.9), just before the connection is closed: a slow but
// honest client learns why. A TLS connection is only closed (no plain bytes on it).
const std::string& request_timeout_answer() {
  static const std::string kResponse =
      canned_answer("408 Request Timeout",
                    R"({"error":"request_timeout","reason":"the request did not arrive in time"})");
  return kResponse;
}

}  // namespace

asio::awaitable<void> Server::State::accept_loop() {
  auto self = shared_from_this();
  asio::steady_timer backoff(acceptor.get_executor());
  // The batch below takes the connections already waiting with plain non-blocking
  // accepts; the asynchronous accept is unaffected by this flag.
  boost::system::error_code ignored;
  acceptor.non_blocking(true, ignored);
  while (acceptor.is_open()) {
    auto [ec, socket] =
        co_await acceptor.async_accept(pool.next_executor(), asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      break;
    }
    if (ec) {
      // EMFILE and friends: pause instead of spinning on a failing accept.
      log::warn("http.accept.error", {{"error", ec.message()}});
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    admit(std::move(socket));
    // Take every connection already in the backlog now: one per asynchronous accept
    // would cost a trip through the io_context's whole queue each, and a burst of 1,000
    // connections was then accepted over seconds while the first ones were served
    // (wrk timeouts at 1,000 connections, BENCHMARKS.md). A failure here (would_block,
    // EMFILE) ends the batch; the next asynchronous accept reports a real one.
    for (std::size_t i = 1; i < kAcceptBatch && acceptor.is_open(); ++i) {
      boost::system::error_code batch_error;
      auto more = acceptor.accept(pool.next_executor(), batch_error);
      if (batch_error) {
        break;
      }
      admit(std::move(more));
    }
  }
}

void Server::State::admit(tcp::socket socket) {
  last_accept.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                    std::memory_order_relaxed);
  auto executor = socket.get_executor();
  if (connection_count.load() >= limits.max_connections) {
    // Refused for our own want of capacity: counted as the 503 it is (no request was read,
    // so under no route), or an overload would never show in the request metrics.
    if (observer) {
      observer->request_started(nullptr);
      observer->request_finished(nullptr, static_cast<unsigned>(Status::service_unavailable),
                                 std::chrono::steady_clock::duration::zero());
    }
    if (tls) {
      // A TLS client could not read a plain answer: closing is all it can get.
      boost::system::error_code ignored;
      socket.close(ignored);
    } else {
      runtime::spawn(executor, reject_over_limit(std::move(socket)), "http.reject");
    }
    return;
  }
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  auto connection = std::make_shared<detail::Connection>(std::move(socket));
  if (draining.load()) {
    connection->canned_answer = PeerVerdict::Answer{
        503, "shutting_down", "the service is shutting down; retry another instance"};
  }
  connection->tls = tls.has_value();
  {
    std::lock_guard lock(mutex);
    if (closed) {
      // Its accept completed after the drain's last step (the listener's close is posted
      // behind it): closed here, or it would live on until its own timeout.
      connection->socket.close(ignored);
      return;
    }
    connections.push_front(connection);
    connection->registry_position = connections.begin();
  }
  ++connection_count;
  runtime::spawn(executor, watch(connection), "http.connection.watchdog");
  auto slot = connection->cancel.slot();
  asio::co_spawn(
      executor, serve(std::move(connection)),
      asio::bind_cancellation_slot(slot, runtime::LogEscapedException{"http.connection"}));
}

std::chrono::steady_clock::duration Server::State::watchdog_period() const {
  auto shortest = std::min(
      {limits.header_timeout, limits.body_timeout, limits.idle_timeout, limits.write_timeout});
  if (tls) {
    shortest = std::min(shortest, tls->handshake_timeout);
  }
  return std::max<std::chrono::steady_clock::duration>(shortest / 4, std::chrono::milliseconds(10));
}

asio::awaitable<void> Server::State::watch(std::shared_ptr<detail::Connection> connection) {
  auto self = shared_from_this();
  auto period = watchdog_period();
  while (connection->socket.is_open()) {
    auto now = std::chrono::steady_clock::now();
    if (now >= connection->deadline) {
      // Closing aborts the pending read or write; serve() sees it and ends.
      connection->timed_out = true;
      if (connection->reading_request && !connection->tls) {
        write_without_waiting(connection->socket, request_timeout_answer());
      }
      boost::system::error_code ignored;
      connection->socket.shutdown(tcp::socket::shutdown_both, ignored);
      connection->socket.close(ignored);
      break;
    }
    if (connection->handler_running && !connection->watching && !connection->hung_up) {
      // A handler is running at this wake-up: watch its client for a hang-up from now on
      // (hang_up_watch.hpp). Started here rather than with every handler, so that a
      // request answered between two wake-ups, nearly all of them, costs no poll(), no
      // reactor wait and no cancellation: with every handler that was about a fifth more
      // CPU per request for hello-svc. A hang-up is so seen within a period or two.
      detail::start_hang_up_watch(connection);
    }
    connection->watchdog.expires_at(std::min(connection->deadline, now + period));
    co_await connection->watchdog.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace coromesh::http
