#pragma once

// The HTTP/1.1 side of an http-mode listener, shared by the public listener (over TLS)
// and the upstream listeners (plain loopback TCP): requests read one at a time from the
// client and each answered with what `forward` makes of it.
//
//   co_await serve_http_exchanges(client, idle, [&](http::Request request) {
//     return forward(std::move(request));  // awaitable<http::Response>
//   });
//
// Returns when the client closes, idles for `idle` between requests, sends something
// that is not HTTP (closed without an answer: there is no one to tell), sends a request
// that cannot be passed on (answered by refusal_of, then closed), or asks to close; or
// when `*close_after` (if given) is true once `forward` has answered: that answer is sent
// with `Connection: close` and is the last one. Headers are limited to kHeaderLimit (as a
// whole, however they arrive) and bodies to kBodyLimit.
//
// Threads: on the client's executor; `client` and `forward` must outlive the call.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <optional>
#include <string_view>
#include <variant>

#include "coromesh/http/framing.hpp"
#include "coromesh/http/message.hpp"
#include "coromesh/qos/deadline.hpp"

namespace coromesh::sidecar {

inline constexpr std::uint64_t kHeaderLimit = 64 * 1024;
inline constexpr std::uint64_t kBodyLimit = 16 * 1024 * 1024;

// The header carrying the verified caller's SPIFFE ID to the local service.
inline constexpr std::string_view kPeerHeader = "x-coromesh-peer";

// The deadline of a request passed on: `route_timeout` from now, shortened by the
// caller's x-coromesh-deadline-ms when it sent a valid one (an invalid one is ignored,
// as a service ignores it).
qos::Deadline forwarded_deadline(const http::Request& request, qos::Duration route_timeout);

// The public listener's rewrite of a caller's request before it goes to the local
// service: x-coromesh-deadline-ms, when the caller sent one, re-stated as what is left
// of `deadline`; every x-coromesh-peer the caller sent replaced by one naming `peer`
// (only the sidecar says who the caller is); keep-alive, as the local connections are
// pooled whatever the caller does.
void rewrite_inbound_request(http::Request& request, const qos::Deadline& deadline,
                             std::string_view peer);

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

template <class Stream, class Forward>
boost::asio::awaitable<void> serve_http_exchanges(Stream& client, std::chrono::nanoseconds idle,
                                                  Forward forward,
                                                  const bool* close_after = nullptr) {
  namespace asio = boost::asio;
  namespace beast_http = boost::beast::http;
  using namespace asio::experimental::awaitable_operators;
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  boost::beast::flat_buffer buffer;
  asio::steady_timer idle_timer(co_await asio::this_coro::executor);
  for (;;) {
    http::framing::RequestParser parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kBodyLimit);
    idle_timer.expires_after(idle);
    auto read = co_await (http::framing::read_message(client, buffer, parser, kHeaderLimit) ||
                          idle_timer.async_wait(use_tuple));
    if (read.index() == 1) {
      co_return;  // idle: the client's business, nothing to answer
    }
    if (auto refusal = refusal_of(std::get<0>(read), parser)) {
      co_await beast_http::async_write(client, *refusal, use_tuple);
      co_return;  // what follows on the connection cannot be told apart from this request
    }
    if (std::get<0>(read)) {
      co_return;  // closed, or not HTTP: nothing to answer
    }
    http::Request request = parser.release();
    bool keep_alive = request.keep_alive();
    http::Response response = co_await forward(std::move(request));
    keep_alive = keep_alive && (close_after == nullptr || !*close_after);
    response.keep_alive(keep_alive);
    auto [write_error, written] = co_await beast_http::async_write(client, response, use_tuple);
    if (write_error || !keep_alive) {
      co_return;
    }
  }
}

}  // namespace coromesh::sidecar
