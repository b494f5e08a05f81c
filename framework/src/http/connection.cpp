// The per-connection coroutine of http::Server: read a request within the limits,
// dispatch it through the router, write the answer, repeat while keep-alive holds.
// The loop is a template over the stream (plain TCP or TLS, see server_tls.cpp), so the
// plain path pays nothing for TLS.

#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <cerrno>
#include <type_traits>

#include "coromesh/http/error.hpp"
#include "coromesh/http/framing.hpp"
#include "coromesh/http/trace_context.hpp"
#include "coromesh/log/logger.hpp"
#include "hang_up_watch.hpp"
#include "server_state.hpp"
#include "wire.hpp"

namespace coromesh::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// For the request loop's own reads and writes: no cancellation slot, so the operation
// does not emplace a cancellation handler in the coroutine's slot and destroy it again
// on completion. Nothing is lost: whatever ends a connection early (a drain, the
// watchdog) cancels or closes the socket, which aborts these operations; the
// connection's cancellation signal is for the handler's own awaits.
auto socket_io() {
  return asio::bind_cancellation_slot(asio::cancellation_slot(), kUseTuple);
}
using framing::has_unframed_transfer_encoding;
using framing::read_rest_of_header;
using framing::RequestParser;

// Sets `id` to the trace id of a valid W3C `traceparent` (00-<32 hex>-<16 hex>-<2 hex>),
// else to a fresh random one so every request can be followed through the logs. The
// string is the connection's, reused from request to request.
void trace_id_for(const Request& request, std::string& id) {
  if (auto trace = trace_id_of(request[kTraceParentHeader])) {
    id.assign(*trace);
  } else {
    assign_random_hex_id(id, 32);
  }
}

// Maps a failure to read a request to the answer the client gets (none when the
// connection is simply gone).
struct ReadFailure {
  Status status;
  const char* code;
  std::string reason;
};

std::optional<ReadFailure> classify_read_error(const beast::error_code& ec,
                                               const ServerLimits& limits) {
  using herr = beast::http::error;
  if (ec == herr::header_limit) {
    return ReadFailure{
        Status::request_header_fields_too_large, "header_too_large",
        "request header exceeds " + std::to_string(limits.max_header_bytes) + " bytes"};
  }
  if (ec == herr::body_limit) {
    return ReadFailure{Status::payload_too_large, "body_too_large",
                       "request body exceeds " + std::to_string(limits.max_body_bytes) + " bytes"};
  }
  if (ec == herr::end_of_stream || ec == herr::partial_message || ec == asio::error::eof ||
      ec == beast::error::timeout || ec == asio::error::operation_aborted ||
      ec == asio::error::connection_reset || ec == asio::error::broken_pipe) {
    return std::nullopt;
  }
  if (ec.category() == beast::http::make_error_code(herr::bad_method).category()) {
    return ReadFailure{Status::bad_request, "malformed_request",
                       "malformed HTTP request: " + ec.message()};
  }
  return std::nullopt;
}

// The route a request was for when its header arrived whole but the request was still
// refused (its body too large or badly framed, or late): counted under that operation
// rather than "unmatched", so that an operator sees which operation is sent oversized
// bodies. Null when the header itself was refused (431, malformed), or names no route.
// (A Content-Length over the limit is refused as the header ends, before the parser calls
// it done; the request line was parsed by then.)
const Route* route_named_by_header(const Router& router, const RequestParser& parser,
                                   const beast::error_code& read_error) {
  if (!parser.is_header_done() && read_error != beast::http::error::body_limit) {
    return nullptr;
  }
  const auto target = std::string_view(parser.get().target());
  return router.match(parser.get().method(), target.substr(0, target.find('?'))).route;
}

// A handler's bug as the client sees it: no internals, the log says more.
Response handler_failed_response(unsigned version) {
  return make_error_response(Status::internal_server_error, "internal",
                             "the handler failed; see the service log", version);
}

// RFC 9112 §2.2: empty lines (CRLF, or a bare LF) received before a request-line are
// ignored; some clients end a POST body with an extra CRLF. Consumes them; true when
// nothing else is in `buffer`. Not a way to hold a connection: the wait for the next
// request keeps its deadline, which counts from the last answer.
bool skip_empty_lines(beast::flat_buffer& buffer) {
  const auto* data = static_cast<const char*>(buffer.data().data());
  const std::size_t size = buffer.size();
  std::size_t skipped = 0;
  while (skipped < size) {
    if (data[skipped] == '\n') {
      skipped += 1;
    } else if (data[skipped] == '\r' && skipped + 1 < size && data[skipped + 1] == '\n') {
      skipped += 2;
    } else {
      break;
    }
  }
  buffer.consume(skipped);
  return skipped > 0 && buffer.size() == 0;
}

// An HTTP/1.0 client knows no 1xx answers: its expectation is ignored (RFC 9110 §10.1.1).
bool expects_continue(const Request& request) {
  return request.version() >= 11 && beast::iequals(request[Field::expect], "100-continue");
}

// Whether the request loop will refuse `request` before any handler sees it, whatever its
// body: a canned answer (a drain, a refused peer), a target that is not a path, no route.
bool refused_whatever_the_body(const Router& router, const detail::Connection& connection,
                               const Request& request) {
  const auto target = std::string_view(request.target());
  const auto path = target.substr(0, target.find('?'));
  return connection.canned_answer || path.empty() || path.front() != '/' ||
         router.match(request.method(), path).route == nullptr;
}

// True when the client has closed its side of the connection (FIN or reset) while its
// request was being handled, in a way the hang-up watch (hang_up_watch.hpp) did not take
// for a hang-up (a pipelining client's half-close, an end after the handler's last wait,
// a request no handler ran for): the connection is then closed after the answer rather
// than kept for a request that cannot come. Peeks without blocking and without consuming
// pipelined bytes. Asked only of requests that took kHangUpCheckAfter or more: a client
// does not give up on a faster answer, and on a small request the peek was one system call
// in three (benchmarks/suites/http.sh against a raw Beast server, BENCHMARKS.md).
// Over TLS a client that leaves ends its session first: the peek finds its close_notify's
// bytes, never the end behind them, so there the FIN itself is asked for (POLLRDHUP,
// pending bytes or not). A TLS client does not half-close to pipeline.
constexpr std::chrono::milliseconds kHangUpCheckAfter{1};
bool peer_has_closed(tcp::socket& socket, bool tls) {
  if (tls) {
    pollfd watched{socket.native_handle(), POLLRDHUP, 0};
    return ::poll(&watched, 1, 0) > 0 && (watched.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }
  char byte = 0;
  auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) {
    return true;
  }
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// Plain TCP: the answer is sent at once with one non-blocking send(). A small answer
// nearly always fits the socket's send buffer, and then it costs no reactor operation
// and no trip through the io_context's queue (async_write always posts its completion,
// even when its first send wrote everything). Returns how much was sent; what did not
// fit (the client reads slowly) is left to async_write. `ec` is set only for a real
// failure, not for a full send buffer. The socket is in non-blocking mode (serve()).
//
// The trade, measured side by side with hello-svc under wrk (one thread): the read
// that follows now comes sooner, before the client has had time to send its next
// request, so Asio's speculative recv() fails more often (1.7 recvfrom per request at
// 1,000 connections instead of 1.1); yet CPU per request fell (0.99-1.02 -> 0.65-0.79
// s per 100k at 1,000 connections, 0.41-0.44 -> 0.37-0.41 at 100). Giving the delay
// back with a posted yield before the read, or with one async_write_some instead of
// the inline send, restored 1.0-1.1 recvfrom per request but cost more CPU than the
// failed reads: a trip through the queue costs more than a recv() that finds nothing.
std::size_t send_without_waiting(tcp::socket& socket, std::string_view bytes,
                                 boost::system::error_code& ec) {
  auto n = socket.write_some(asio::buffer(bytes), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    ec = {};
  }
  return n;
}

}  // namespace

namespace {

template <class F>
struct ScopeExit {
  F on_exit;
  ~ScopeExit() { on_exit(); }
};
template <class F>
ScopeExit(F) -> ScopeExit<F>;

}  // namespace

asio::awaitable<void> Server::State::serve(std::shared_ptr<detail::Connection> connection) {
  auto self = shared_from_this();
  // Ends the connection however serve() exits, exception included.
  ScopeExit cleanup{[this, &connection] {
    boost::system::error_code ignored;
    connection->socket.shutdown(tcp::socket::shutdown_send, ignored);
    connection->socket.close(ignored);
    connection->watchdog.cancel();
    {
      std::lock_guard lock(mutex);
      connections.erase(connection->registry_position);
    }
    --connection_count;
    if (connection->busy) {
      --in_flight;
    }
  }};
  // A drain's terminal cancellation must surface as error codes we handle, not as an
  // exception thrown by the next co_await.
  co_await asio::this_coro::throw_if_cancelled(false);
  if (tls) {
    co_await serve_tls(connection);
  } else {
    // For send_without_waiting; Asio's asynchronous operations are unaffected.
    boost::system::error_code ignored;
    connection->socket.non_blocking(true, ignored);
    co_await serve_requests(connection, connection->socket);
  }
}

template <class Stream>
asio::awaitable<void> Server::State::serve_requests(
    const std::shared_ptr<detail::Connection>& shared, Stream& stream) {
  detail::Connection& connection = *shared;
  using Clock = std::chrono::steady_clock;
  std::string out;       // the serialized response, reused across requests
  std::string trace_id;  // likewise
  // The buffer may hold at most one full request plus a little pipelined data.
  beast::flat_buffer buffer(limits.max_header_bytes + limits.max_body_bytes + 16 * 1024);
  std::size_t served = 0;
  // When the previous answer went out (or the connection opened): the idle timeout
  // counts from there. Reused rather than read again, as are the other clock readings
  // below: three per request instead of five.
  auto last_answered = Clock::now();

  while (!connection.closing) {
    // Wait for the first byte of the next request: the idle (keep-alive) timeout
    // applies here, the much shorter header timeout only once a request has begun.
    if (buffer.size() == 0) {
      connection.expires_at(last_answered +
                            (served == 0 ? limits.header_timeout : limits.idle_timeout));
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), socket_io());
      if (ec) {
        break;
      }
      buffer.commit(n);
    }
    if (skip_empty_lines(buffer)) {
      continue;  // only empty lines so far: still waiting for a request, as before
    }
    connection.busy = true;
    connection.reading_request = true;
    ++in_flight;
    const auto started = Clock::now();

    RequestParser parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    parser.body_limit(limits.max_body_bytes);
    // The header first, alone (eager off), so that its size is known: see
    // read_rest_of_header. Most requests arrive whole in one read: they are parsed in
    // place, skipping the asynchronous read machinery; only a partial request goes back
    // to the socket.
    parser.eager(false);
    beast::error_code read_error;
    const auto header_taken = parser.put(buffer.data(), read_error);
    buffer.consume(header_taken);
    if (read_error == beast::http::error::need_more) {
      read_error = {};
    }
    if (!read_error && !parser.is_header_done()) {
      connection.expires_after(limits.header_timeout);
      read_error = co_await read_rest_of_header(stream, buffer, parser, header_taken,
                                                limits.max_header_bytes);
    }
    if (!read_error && !parser.is_done() && buffer.size() > 0) {
      parser.eager(true);  // the body, or as much of it as has arrived
      buffer.consume(parser.put(buffer.data(), read_error));
      if (read_error == beast::http::error::need_more) {
        read_error = {};
      }
    }
    // The client waits for 100 Continue before it sends the body: a request refused
    // whatever its body is answered at once instead (RFC 9110 §10.1.1), and the connection
    // closed after the answer, since the body it did not ask for may still follow.
    bool body_unread = false;
    if (!read_error && !parser.is_done()) {
      if (expects_continue(parser.get())) {
        if (refused_whatever_the_body(router, connection, parser.get())) {
          body_unread = true;
        } else {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          connection.expires_after(limits.write_timeout);
          auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(kContinue), kUseTuple);
          read_error = wec;
        }
      }
      if (!read_error && !body_unread) {
        connection.expires_after(limits.body_timeout);
        auto [bec, bn] = co_await beast::http::async_read(stream, buffer, parser, kUseTuple);
        read_error = bec;
      }
    }

    // From here until the answer is written the client has nothing to send: the read
    // timeouts no longer apply, and a slow handler is bounded by its own QoS and deadline.
    connection.expires_never();
    connection.reading_request = false;

    Response response;
    const Route* route = nullptr;
    bool keep_alive = false;
    bool head = false;
    std::optional<ReadFailure> failure;
    if (read_error) {
      failure = classify_read_error(read_error, limits);
      if (!failure) {
        if (connection.timed_out) {
          // The request had begun and stopped arriving: the watchdog has answered it 408
          // (or, over TLS, closed it). Refused before routing like a 431 or a 413, so
          // counted and logged like them, or slowloris would never show in the metrics.
          log::info("http.request.rejected", {{"code", "request_timeout"},
                                              {"reason", "the request did not arrive in time"}});
          if (observer) {
            route = route_named_by_header(router, parser, read_error);
            observer->request_started(route);
            observer->request_finished(route, static_cast<unsigned>(Status::request_timeout),
                                       Clock::now() - started);
          }
        }
        break;  // the cleanup counts the request out
      }
    } else if (has_unframed_transfer_encoding(parser)) {
      failure = ReadFailure{Status::bad_request, "malformed_request",
                            "Transfer-Encoding must end in chunked"};
    } else if (framing::has_coding_besides_chunked(parser)) {
      // De-chunked, the body is still gzip (or another coding): a handler would take it
      // for the plain body.
      failure = ReadFailure{Status::not_implemented, "unsupported_transfer_coding",
                            "only the chunked transfer coding is supported"};
    }
    if (failure) {
      log::info("http.request.rejected", {{"code", failure->code}, {"reason", failure->reason}});
      response = make_error_response(failure->status, failure->code, failure->reason, 11, false);
      if (observer) {
        route = route_named_by_header(router, parser, read_error);
        observer->request_started(route);
      }
    } else {
      // Read in place: the parser outlives the handler, and moving the message out
      // cost a move of every field per request.
      const Request& request = parser.get();
      auto target = std::string_view(request.target());
      auto query_at = target.find('?');
      auto path = target.substr(0, query_at);
      trace_id_for(request, trace_id);
      auto match = router.match(request.method(), path);
      route = match.route;
      if (observer) {
        observer->request_started(route);
      }
      if (const auto& canned = connection.canned_answer) {
        response = make_error_response(static_cast<Status>(canned->status), canned->code,
                                       canned->reason, request.version(), false);
      } else if (path.empty() || path.front() != '/') {
        response = make_error_response(Status::bad_request, "malformed_request",
                                       "request target must be an absolute path", request.version(),
                                       false);
      } else if (!route && match.allow.empty()) {
        response = make_error_response(Status::not_found, "not_found",
                                       "no route for " + std::string(path), request.version());
      } else if (!route) {
        response = make_error_response(
            Status::method_not_allowed, "method_not_allowed",
            std::string(request.method_string()) + " is not allowed on " + std::string(path),
            request.version());
        response.set(Field::allow, match.allow);
      } else {
        RequestContext context{
            request,
            path,
            query_at == std::string_view::npos ? std::string_view{} : target.substr(query_at + 1),
            std::move(match.params),
            trace_id,
            route,
            connection.peer_identity};
        // From here the client may be watched for a hang-up: the request, body included,
        // has been read, and whatever arrives now is its hang-up or its next request. The
        // watchdog starts the watch once the handler has run one watchdog period
        // (hang_up_watch.hpp): a handler that answers sooner costs the watch nothing.
        connection.pipelining = connection.pipelining || buffer.size() > 0;
        connection.handler_running = true;
        try {
          response = co_await route->handler(context);
        } catch (const HttpError& e) {
          response = make_error_response(e.status(), e.code(), e.reason(), request.version());
        } catch (const std::exception& e) {
          const auto* system = dynamic_cast<const boost::system::system_error*>(&e);
          if (system && system->code() == asio::error::operation_aborted &&
              (connection.cut_off || connection.hung_up)) {
            // Cancelled by a drain whose grace ran out, or because the client hung up:
            // expected, not a handler bug. Only `cut_off` and `hung_up` say so: `closing` is
            // set from the drain's start, and a handler whose own operation was aborted
            // otherwise has failed like any other.
            log::info("http.request.cancelled",
                      {{"operation", route->operation},
                       {"trace_id", trace_id},
                       {"cause", connection.cut_off ? "drain" : "client_closed"}});
          } else {
            log::error(
                "http.handler.exception",
                {{"operation", route->operation}, {"trace_id", trace_id}, {"error", e.what()}});
          }
          response = handler_failed_response(request.version());
        } catch (...) {
          // Not a std::exception (a library's own type, a thrown int): still the handler's
          // failure. Escaping, it would end the connection unanswered, and the observer
          // would never hear the request finish (its in-flight gauge would stay up).
          log::error("http.handler.exception", {{"operation", route->operation},
                                                {"trace_id", trace_id},
                                                {"error", "not a std::exception"}});
          response = handler_failed_response(request.version());
        }
        connection.handler_running = false;
        detail::stop_hang_up_watch(connection);
        // A handler ran: whatever it answers, the request reached this service. Only a
        // sidecar's own answer may say otherwise (error.hpp), or a caller would send a
        // POST that ran here to another instance.
        response.erase(kNotDeliveredHeader);
        if (detail::has_unsafe_field(response)) {
          // Typically a request's bytes echoed into a header: sent, the client would write
          // the rest of our answer. A handler bug, answered as one.
          log::error("http.handler.unsafe_header",
                     {{"operation", route->operation}, {"trace_id", trace_id}});
          response = handler_failed_response(request.version());
        } else if (response.result_int() < 200) {
          // An interim status is never a final answer: sent as one, the client would wait
          // on for the real answer.
          log::error("http.handler.informational_answer", {{"operation", route->operation},
                                                           {"trace_id", trace_id},
                                                           {"status", response.result_int()}});
          response = handler_failed_response(request.version());
        }
      }
      // The handler's wish is read before the answer takes the request's version: an
      // answer built as HTTP/1.1 without a Connection field means keep-alive, but the same
      // answer as HTTP/1.0 would read as close, and HTTP/1.0 keep-alive never held.
      const bool handler_keeps_alive = response.keep_alive();
      response.version(request.version());
      // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; the
      // connection is closed after it, whatever it asked.
      const bool faulty_framing =
          request.version() < 11 && request.find(Field::transfer_encoding) != request.end();
      keep_alive = request.keep_alive() && handler_keeps_alive && !faulty_framing && !body_unread &&
                   !connection.closing && !draining.load(std::memory_order_relaxed);
      // Answered without its body, but with the length a GET would be told.
      head = request.method() == Verb::head;
      if (log::enabled(log::Level::debug)) {
        log::debug("http.request", {{"method", std::string(request.method_string())},
                                    {"path", path},
                                    {"status", response.result_int()},
                                    {"trace_id", trace_id}});
      }
    }
    // A client that hung up while the handler ran (the watch saw it and cancelled the
    // handler, hang_up_watch.hpp) is sent nothing: whatever the handler came to, even an
    // answer from one that ignored its cancellation, is dropped, and counted 499 as the QoS
    // chain counts it `cancelled`. One whose FIN the watch did not take for a hang-up (a
    // pipelining client's half-close, or one that came after the handler's last wait) is
    // sent the answer the handler completed for it, with the connection closed after it,
    // and counted by what became of that write, as the QoS chain counted the call. Not
    // asked while pipelined requests wait in the buffer: the FIN then only follows them,
    // and they are still answered.
    const auto handled = Clock::now();
    const bool hung_up = connection.hung_up;
    connection.hung_up = false;
    const bool peer_closed = !hung_up && buffer.size() == 0 &&
                             handled - started >= kHangUpCheckAfter &&
                             peer_has_closed(connection.socket, connection.tls);
    keep_alive = keep_alive && !hung_up && !peer_closed;
    response.keep_alive(keep_alive);
    out.clear();
    if (!hung_up) {  // else nothing is sent
      detail::append_response(response, out, head);
    }
    connection.expires_at(handled + limits.write_timeout);
    boost::system::error_code wec;
    std::size_t sent = 0;
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
      // Requests pipelined in one read are thus answered without the coroutine
      // suspending in between; the other connections wait at most for one read's
      // worth (4 KiB of requests), as the next read always goes through the queue.
      sent = send_without_waiting(stream, out, wec);
    }
    if (sent < out.size() && !wec) {
      auto [ec, n] = co_await asio::async_write(stream, asio::buffer(out) + sent, socket_io());
      wec = ec;
    }
    last_answered = Clock::now();
    if (observer) {
      // Counted as what happened to the exchange: the handler's status only when the
      // answer was delivered to a client still there.
      unsigned status = response.result_int();
      if (connection.cut_off) {
        status = static_cast<unsigned>(Status::service_unavailable);
      } else if (hung_up || wec) {
        status = kClientClosedRequest;
      }
      observer->request_finished(route, status, last_answered - started);
    }
    --in_flight;
    connection.busy = false;
    ++served;
    if (wec || !keep_alive) {
      break;
    }
  }
}

// The two streams a connection is served over: plain TCP, and TLS on top of it.
template asio::awaitable<void> Server::State::serve_requests(
    const std::shared_ptr<detail::Connection>&, tcp::socket&);
template asio::awaitable<void> Server::State::serve_requests(
    const std::shared_ptr<detail::Connection>&, detail::TlsServerStream&);

}  // namespace coromesh::http
