#pragma once

// The HTTP/1.1 side of an http-mode listener, shared by the public listener (over TLS)
// and the upstream listeners (plain loopback TCP): requests read one at a time from the
// client and each answered with what `forward` makes of it.
//
//   co_await serve_http_exchanges(client, idle, hang_up_period, [&](http::Request request) {
//     return forward(std::move(request));  // awaitable<http::Response>
//   });
//
// Returns when the client closes, idles for `idle` between requests, sends something
// that is not HTTP (closed without an answer: there is no one to tell), sends a request
// that cannot be passed on (answered by refusal_of, then closed), or asks to close; or
// when `control->close_after` (if given) is true once `forward` has answered: that answer
// is sent with `Connection: close` and is the last one (set while the answer is being
// written, the connection ends once it is); or when drain_exchanges() finds it waiting
// for a request; or when the client hangs up while `forward` runs (see below). Headers
// are limited to kHeaderLimit (as a whole, however they arrive) and bodies to kBodyLimit.
//
// A client that hangs up (closes or resets the connection) while its request is being
// forwarded is not waited for: `forward` is cancelled (terminal cancellation, as a drain's
// cut-off: the http::Client closes the connection it was using, never pools it, and
// nothing is retried), `control->hung_up` (if set) is called, and the exchanges end. As in
// the framework's server (http/hang_up_watch.hpp), the watch costs a request nothing: the
// connection's one timer wakes every `hang_up_period`, and only a forward still running at
// a wake-up has the client looked at (http::peer_sign) and, while it runs on, its socket
// waited on for readability. Not a hang-up: a pipelined next request (bytes behind the
// request, or ahead of a half-close), or over TLS the close_notify alone.
//
// Threads: on the client's executor; `client`, `forward` and `control` must outlive the
// call.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>

#include "coromesh/http/flat_write.hpp"
#include "coromesh/http/framing.hpp"
#include "coromesh/http/message.hpp"
#include "coromesh/http/peer_sign.hpp"
#include "coromesh/qos/deadline.hpp"
#include "coromesh/qos/reason.hpp"

namespace coromesh::sidecar {

inline constexpr std::uint64_t kHeaderLimit = 64 * 1024;
inline constexpr std::uint64_t kBodyLimit = 16 * 1024 * 1024;

// The header carrying the verified caller's SPIFFE ID to the local service.
inline constexpr std::string_view kPeerHeader = "x-coromesh-peer";

// The deadline of a request passed on: `route_timeout` from now, shortened by the
// caller's x-coromesh-deadline-ms when it sent a valid one (an invalid one is ignored,
// as a service ignores it); one parse of the header per request.
struct ForwardedDeadline {
  qos::Deadline deadline;
  // The caller's deadline was spent when the request came ("0" included): the caller has
  // given up, so nothing is tried; it is refused (spent_deadline_refusal).
  bool spent_on_arrival = false;
  // The request carries x-coromesh-deadline-ms (valid or not): it goes on re-stated.
  bool carried = false;
};
ForwardedDeadline forwarded_deadline(const http::Request& request, qos::Duration route_timeout);

// The refusal of a request whose deadline was spent on arrival: the one a coromesh
// service makes of it (Service::serve: a QosRejected deadline_exceeded, answered 504), so
// that the sidecar counts it as the framework classifies it (qos::classify_fault:
// `rejected`, not the callee's `timeout`).
qos::QosRejected spent_deadline_refusal();
// The answer to such a refusal, as a service answers it: its status (504 for a spent
// deadline), {"error": <reason>, "reason": ..., "policy": ...}.
http::Response refusal_response(const qos::QosRejected& refusal, unsigned version);

// The public listener's rewrite of a caller's request before it goes to the local
// service: x-coromesh-deadline-ms, when the caller sent one, re-stated as what is left
// of `forwarded.deadline`; every x-coromesh-peer the caller sent replaced by one naming
// `peer` (only the sidecar says who the caller is); keep-alive, as the local connections
// are pooled whatever the caller does. For a request whose hop-by-hop fields are gone
// (remove_hop_by_hop), as serve_http_exchanges passes it on.
void rewrite_inbound_request(http::Request& request, const ForwardedDeadline& forwarded,
                             std::string_view peer);

// keep-alive for a request or answer whose hop-by-hop fields are gone (remove_hop_by_hop):
// "Connection: keep-alive" for HTTP/1.0; HTTP/1.1 without Connection already is, and
// Beast's keep_alive(true) would still look Connection up twice to change nothing.
template <class Message>
void keep_alive_without_hop_by_hop(Message& message) {
  if (message.version() != 11) {
    message.keep_alive(true);
  }
}

// Removes what is for one hop only (RFC 9110 §7.6.1), before a message received on one
// connection goes on over another: the Connection header, every field it names, and
// Keep-Alive, Proxy-Connection and Upgrade. Each connection's management is this
// sidecar's own (its upstream connections are pooled whatever the caller does), and a
// Connection list is never re-stated: Beast's keep_alive() re-writes it with ", " between
// tokens, which a hostile list ("x,x,...", within the header limit) grows past the 64 KiB
// a field can hold, and that throws.
void remove_hop_by_hop(boost::beast::http::fields& fields);

// RFC 9110 §9.2.2: what may be sent again when the first answer was lost.
bool is_idempotent(http::Verb method) noexcept;

// The path of a request target ("/a/b?x=1" -> "/a/b"), what route timeouts match.
std::string_view target_path(std::string_view target) noexcept;

// The answer to a request that is read (`read_error`) but must not be passed on, after
// which the connection is closed: 431 for a header over kHeaderLimit, 413 for a body
// over kBodyLimit, 400 for a Transfer-Encoding not ending in chunked (RFC 9112 §6.3: its
// length is unknown, so its body would be taken for the next request) and for a TRACE
// with content (RFC 9110 §9.3.8; Beast refuses to send one), 501 for a transfer coding
// other than a lone chunked (e.g. "gzip, chunked": its body cannot be passed on intact).
// Nothing otherwise.
std::optional<http::Response> refusal_of(const boost::beast::error_code& read_error,
                                         const http::framing::RequestParser& parser);

// What the owner of a connection and its exchanges tell each other, on the connection's
// executor: the owner sets `close_after` to make the next answer the last one; the
// exchanges keep `waiting` true while they wait for a request with none in hand.
// The exchanges call `refused` (if set) for each request they answer themselves as
// refusal_of() says (malformed, too large, a framing that cannot be passed on).
// `hung_up` (if set) is called once when the client hung up while a request of its was
// being forwarded (that forward cancelled; no answer is sent).
struct ExchangeControl {
  bool close_after = false;
  bool waiting = false;
  std::function<void()> refused;
  std::function<void()> hung_up;
};

namespace detail {

// Whether an answer to a request (HEAD or not) can have content (RFC 9110 §6.4.1): not a
// 1xx, 204 or 304, nor any answer to HEAD.
inline bool may_have_content(const http::Response& response, bool head) noexcept {
  const auto status = response.result_int();
  return !head && status >= 200 && status != 204 && status != 304;
}

// What the watch of one connection (watch_connection) and its exchanges tell each other,
// on the connection's executor.
struct ConnectionWatch {
  // Since when the exchanges have been waiting for the next request (nothing while one is
  // being answered).
  std::optional<std::chrono::steady_clock::time_point> waiting_since;
  // A request is being forwarded; `forwards` counts them (a wake-up tells its own from
  // the next one).
  bool forwarding = false;
  std::uint64_t forwards = 0;
  // Bytes of a next request had come with this one: the client pipelines, and its
  // half-close is no hang-up.
  bool pipelining = false;
  // Set by the watch as it ends the exchanges for a client that hung up mid-forward.
  bool hung_up = false;
};

// The TCP socket under `stream` (a TLS layer, or the socket itself).
template <class Stream>
boost::asio::ip::tcp::socket& socket_of(Stream& stream) {
  if constexpr (requires { stream.next_layer(); }) {
    return stream.next_layer();
  } else {
    return stream;
  }
}

// Ends a pending read of `stream` with operation_aborted (a read already done is left
// alone: its request is answered).
template <class Stream>
void cancel_pending_read(Stream& stream) {
  boost::system::error_code ignored;
  if constexpr (requires { stream.next_layer(); }) {
    stream.next_layer().cancel(ignored);
  } else {
    stream.cancel(ignored);
  }
}

// Watches, for a forward still running at a wake-up, whether its client hangs up; returns
// true when it has (`watch.hung_up` set), false once that forward is over, the client
// pipelines, or the next wake-up of the connection's watch is due (`next`).
template <class Stream>
boost::asio::awaitable<bool> hung_up_during_forward(Stream& stream, ConnectionWatch& watch,
                                                    boost::asio::steady_timer& timer,
                                                    std::chrono::steady_clock::time_point next) {
  namespace asio = boost::asio;
  using namespace asio::experimental::awaitable_operators;
  constexpr bool tls = requires {
    stream.next_layer();
  };
  auto& socket = socket_of(stream);
  const std::uint64_t forward = watch.forwards;
  // Asked before the wait is queued: nothing runs this io thread's reactor in between, so
  // what arrives from now on wakes the wait (edge-triggered, it would not wake for what
  // arrived before).
  for (;;) {
    switch (http::peer_sign(socket.native_handle(), tls, watch.pipelining)) {
      case http::PeerSign::hung_up:
        watch.hung_up = true;
        co_return true;
      case http::PeerSign::bytes:
        if (!tls) {
          watch.pipelining = true;  // a request behind this one: the client is there
          co_return false;
        }
        break;  // a TLS record: maybe the close_notify before the FIN
      case http::PeerSign::nothing:
        break;
    }
    timer.expires_at(next);
    const auto woke = co_await (
        socket.async_wait(asio::socket_base::wait_read, asio::as_tuple(asio::use_awaitable)) ||
        timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (woke.index() == 1 || std::get<0>(std::get<0>(woke)) || !watch.forwarding ||
        watch.forwards != forward) {
      // The wake-up is due; the socket was cancelled or closed (an idle read's cut-off, a
      // drain); or the answer came meanwhile, and what arrived is for the request loop.
      co_return false;
    }
  }
}

// The connection's one timer: every `hang_up_period` it checks the idle timeout (cancels
// the pending read once the connection has waited `idle` for a request) and, for a forward
// still running, whether its client hangs up. Ends when cancelled, or when the client
// has hung up mid-forward (`watch.hung_up`), which ends the exchanges beside it.
template <class Stream>
boost::asio::awaitable<void> watch_connection(Stream& stream, std::chrono::nanoseconds idle,
                                              std::chrono::nanoseconds hang_up_period,
                                              ConnectionWatch& watch) {
  namespace asio = boost::asio;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto period = std::min(idle, hang_up_period);
  auto next = std::chrono::steady_clock::now() + period;
  for (;;) {
    timer.expires_at(next);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      co_return;  // the exchanges are over
    }
    const auto now = std::chrono::steady_clock::now();
    next = now + period;
    if (watch.waiting_since && now - *watch.waiting_since >= idle) {
      cancel_pending_read(stream);
    } else if (watch.forwarding && !watch.pipelining &&
               co_await hung_up_during_forward(stream, watch, timer, next)) {
      co_return;
    }
  }
}

template <class Stream, class Forward>
boost::asio::awaitable<void> serve_exchanges(Stream& client, Forward& forward,
                                             ExchangeControl* control, ConnectionWatch& watch,
                                             std::exception_ptr& failure) {
  namespace asio = boost::asio;
  namespace beast_http = boost::beast::http;
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  boost::beast::flat_buffer buffer;
  std::string out;  // each answer in one buffer, one write (http/flat_write.hpp)
  // Not thrown on: the idle watch beside this loop ends only when this returns.
  try {
    for (;;) {
      http::framing::RequestParser parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(kBodyLimit);
      watch.waiting_since = std::chrono::steady_clock::now();
      if (control != nullptr) {
        control->waiting = true;
      }
      const auto read_error =
          co_await http::framing::read_message(client, buffer, parser, kHeaderLimit);
      watch.waiting_since.reset();
      if (control != nullptr) {
        control->waiting = false;
      }
      if (auto refusal = refusal_of(read_error, parser)) {
        if (control != nullptr && control->refused) {
          control->refused();
        }
        co_await beast_http::async_write(client, *refusal, use_tuple);
        co_return;  // what follows on the connection cannot be told apart from this request
      }
      if (read_error) {
        co_return;  // closed, idle (the watch cancelled the read), or not HTTP: no answer
      }
      // From the flags the parser set from every Connection line, not a look-up of the first.
      bool keep_alive = parser.keep_alive();
      http::Request request = parser.release();
      remove_hop_by_hop(request);
      const bool head = request.method() == http::Verb::head;
      // For the watch: two stores, no system call (see the top of this file).
      watch.forwarding = true;
      ++watch.forwards;
      watch.pipelining = watch.pipelining || buffer.size() > 0;
      http::Response response = co_await forward(std::move(request));
      watch.forwarding = false;
      remove_hop_by_hop(response);
      keep_alive = keep_alive && (control == nullptr || !control->close_after);
      if (keep_alive) {
        keep_alive_without_hop_by_hop(response);
      } else {
        response.keep_alive(false);
      }
      if (!response.chunked() && !response.has_content_length() &&
          may_have_content(response, head)) {
        // Its upstream framed it by closing (no length, not chunked): here the connection
        // goes on, so the body needs a length of its own.
        response.content_length(response.body().size());
      }
      boost::system::error_code write_error;
      if (response.chunked()) {  // its body is re-encoded in chunks: Beast's serializer does that
        std::tie(write_error, std::ignore) =
            co_await beast_http::async_write(client, response, use_tuple);
      } else {
        out.clear();
        http::append_response_as_is(response, out);
        std::tie(write_error, std::ignore) =
            co_await asio::async_write(client, asio::buffer(out), use_tuple);
      }
      // A drain that came while the answer was being written (drain_exchanges found
      // neither a read to cancel nor an answer still to mark) ends the connection here,
      // rather than leaving it to wait for a request that it would only answer as the last.
      if (write_error || !keep_alive || (control != nullptr && control->close_after)) {
        co_return;
      }
    }
  } catch (...) {
    failure = std::current_exception();
  }
}

}  // namespace detail

template <class Stream, class Forward>
boost::asio::awaitable<void> serve_http_exchanges(Stream& client, std::chrono::nanoseconds idle,
                                                  std::chrono::nanoseconds hang_up_period,
                                                  Forward forward,
                                                  ExchangeControl* control = nullptr) {
  using namespace boost::asio::experimental::awaitable_operators;
  detail::ConnectionWatch watch;
  std::exception_ptr failure;
  co_await (detail::serve_exchanges(client, forward, control, watch, failure) ||
            detail::watch_connection(client, idle, hang_up_period, watch));
  if (watch.hung_up) {
    // The forward's cancellation (its failure) was ours: the client is gone, nobody to tell.
    if (control != nullptr && control->hung_up) {
      control->hung_up();
    }
    co_return;
  }
  if (failure) {
    std::rethrow_exception(failure);
  }
}

// A drain's word to the exchanges served on `client` under `control` (on the connection's
// executor), as the framework's own server drains: the answer in hand, if any, is the
// last one (Connection: close); a connection waiting for its next request is closed now,
// rather than held open until the drain's grace runs out and then cut off, perhaps with
// a request in flight.
template <class Stream>
void drain_exchanges(ExchangeControl& control, Stream& client) {
  control.close_after = true;
  if (control.waiting) {
    detail::cancel_pending_read(client);
  }
}

}  // namespace coromesh::sidecar
