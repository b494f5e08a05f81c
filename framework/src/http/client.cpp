#include "coromesh/http/client.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "client_exchange.hpp"
#include "client_pool.hpp"
#include "client_tls.hpp"
#include "coromesh/http/flat_write.hpp"
#include "coromesh/http/framing.hpp"
#include "coromesh/http/resolve.hpp"
#include "tls_support.hpp"

namespace coromesh::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using boost::system::error_code;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

class ClientCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "coromesh.http.client"; }
  std::string message(int value) const override {
    switch (static_cast<ClientErrc>(value)) {
      case ClientErrc::connect_failed:
        return "connect failed";
      case ClientErrc::timeout:
        return "timed out";
      case ClientErrc::bad_response:
        return "bad response";
      case ClientErrc::connection_closed:
        return "connection closed";
      case ClientErrc::outcome_unknown:
        return "connection closed after the request was sent; it may or may not have been "
               "processed";
      case ClientErrc::tls_handshake:
        return "TLS handshake failed";
      case ClientErrc::peer_rejected:
        return "TLS peer rejected";
      case ClientErrc::connect_timeout:
        return "connect timed out";
      case ClientErrc::discovery_unavailable:
        return "no answer from service discovery yet";
      case ClientErrc::identity_unavailable:
        return "no certificate of the caller's own yet";
      case ClientErrc::no_endpoint:
        return "no passing instance to call";
    }
    return "unknown client error";
  }
};

// "host:port", with IPv6 literals in brackets: the pool key and the name in messages.
// Per call: appended into one string sized once, not concatenated through temporaries.
std::string describe(const Destination& destination) {
  const bool ipv6 = destination.host.find(':') != std::string::npos;
  char port[8];
  const auto [port_end, ec] = std::to_chars(port, port + sizeof(port), destination.port);
  std::string label;
  label.reserve(destination.host.size() + 3 + static_cast<std::size_t>(port_end - port));
  if (ipv6) {
    label += '[';
  }
  label += destination.host;
  if (ipv6) {
    label += ']';
  }
  label += ':';
  label.append(port, port_end);
  return label;
}

// TLS connections are pooled apart from plain ones, and per TLS configuration.
std::string pool_key_of(const Destination& destination, const std::string& label) {
  if (!destination.tls) {
    return label;
  }
  const auto& tls = *destination.tls;
  const std::string& configuration = tls.pool_key.empty() ? tls.server_name : tls.pool_key;
  std::string key;
  key.reserve(label.size() + 5 + configuration.size());
  key += label;
  key += " tls:";
  key += configuration;
  return key;
}

std::string elapsed_ms(Client::Clock::time_point start) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Client::Clock::now() - start);
  return std::to_string(ms.count()) + "ms";
}

// A caller that cancels the call (say, a `||` with its own timer) sees the cancellation,
// not a ClientError: it asked for it.
void throw_if_aborted(const error_code& ec) {
  if (ec == asio::error::operation_aborted) {
    throw boost::system::system_error(ec);
  }
}

// Peer gone before a single byte of the response: on a pooled connection this is the
// race with the server's idle close, and the request can go out again on a new one.
bool closed_before_response(const error_code& ec) {
  return ec == beast::http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == asio::ssl::error::stream_truncated;
}

// Methods whose request may be sent twice with the effect of once (RFC 9110 §9.2.2).
bool is_idempotent(Verb method) {
  switch (method) {
    case Verb::get:
    case Verb::head:
    case Verb::put:
    case Verb::delete_:
    case Verb::options:
    case Verb::trace:
      return true;
    default:
      return false;
  }
}

// Anything Beast's parser rejects, except the peer closing the stream, which is not
// the response's fault.
bool is_parse_error(const error_code& ec) {
  static const auto& category = make_error_code(beast::http::error::bad_version).category();
  return ec.category() == category && ec != beast::http::error::end_of_stream &&
         ec != beast::http::error::partial_message;
}

struct Attempt {
  std::optional<Response> response;
  bool reusable = false;  // the connection may carry another request
  // The connection died before a byte of the response: on a pooled connection, likely the
  // race with the server's idle close. Whether sending again is safe depends on the method.
  bool closed_before_response = false;
  ClientErrc errc{};
  std::string error;
};

}  // namespace

const std::error_category& client_category() noexcept {
  static const ClientCategory category;
  return category;
}

std::error_code make_error_code(ClientErrc e) noexcept {
  return {static_cast<int>(e), client_category()};
}

bool never_reached(const std::error_code& code) noexcept {
  return code == ClientErrc::connect_failed || code == ClientErrc::connect_timeout ||
         code == ClientErrc::tls_handshake || code == ClientErrc::peer_rejected ||
         code == ClientErrc::no_endpoint;
}

struct Client::Impl {
  Impl(asio::any_io_executor ex, ClientOptions opts)
      : executor(std::move(ex)),
        options(std::move(opts)),
        pool(options.max_idle_per_destination, options.idle_timeout) {}

  asio::awaitable<detail::ClientConnection> connect(const Destination& destination,
                                                    const std::string& label,
                                                    Clock::time_point deadline,
                                                    Clock::time_point start);
  // Stream: beast::tcp_stream or ClientConnection::Tls. `reused`: the connection carried
  // an exchange before this one (its handshake is long done).
  template <class Stream>
  asio::awaitable<Attempt> exchange(Stream& stream, detail::ClientConnection& connection,
                                    Request& request, const std::string& label, bool reused,
                                    Clock::time_point deadline, Clock::time_point start);

  asio::any_io_executor executor;
  ClientOptions options;
  detail::ClientPool pool;
  std::uint64_t opened = 0;
};

asio::awaitable<detail::ClientConnection> Client::Impl::connect(const Destination& destination,
                                                                const std::string& label,
                                                                Clock::time_point deadline,
                                                                Clock::time_point start) {
  auto fail = [&](ClientErrc errc, const std::string& why) {
    return ClientError(errc, "connect to " + label + " failed: " + why);
  };
  // The connect has its own, shorter bound (ClientOptions::connect_timeout); which of the
  // two ended it decides the error: the call's deadline is `timeout`, the connect's own
  // `connect_timeout` (nothing was sent: the caller may go elsewhere).
  const auto connect_by = std::min(deadline, Clock::now() + options.connect_timeout);
  auto timed_out = [&](const std::string& what) {
    if (connect_by < deadline) {
      return ClientError(ClientErrc::connect_timeout,
                         "connect to " + label + ": " + what + " within the connect timeout of " +
                             std::to_string(options.connect_timeout.count()) + "ms");
    }
    return ClientError(ClientErrc::timeout,
                       "connect to " + label + " timed out after " + elapsed_ms(start));
  };

  auto resolved = co_await resolve_until(destination.host, destination.port, connect_by);
  if (!resolved) {
    throw timed_out("no address resolved");
  }
  auto [resolve_ec, endpoints] = std::move(*resolved);
  if (resolve_ec) {
    throw fail(ClientErrc::connect_failed, resolve_ec.message());
  }

  beast::tcp_stream stream(executor);
  stream.expires_at(connect_by);
  auto [connect_ec, endpoint] = co_await stream.async_connect(endpoints, use_tuple);
  if (connect_ec == beast::error::timeout) {
    throw timed_out("no answer to the TCP connect");
  }
  throw_if_aborted(connect_ec);
  if (connect_ec) {
    throw fail(ClientErrc::connect_failed, connect_ec.message());
  }
  stream.expires_at(deadline);  // the TLS handshake and the exchange: the call's deadline
  error_code ec;
  stream.socket().set_option(tcp::no_delay(true), ec);  // requests are written in one go
  ++opened;
  if (destination.tls) {
    // Its own bound, when it ends before the deadline (ClientOptions::tls_handshake_timeout).
    const bool own_bound = options.tls_handshake_timeout.count() > 0 &&
                           Clock::now() + options.tls_handshake_timeout < deadline;
    if (own_bound) {
      stream.expires_after(options.tls_handshake_timeout);
    }
    co_return co_await detail::start_client_tls(
        std::move(stream), *destination.tls, label, start,
        own_bound ? options.tls_handshake_timeout : std::chrono::milliseconds(0));
  }
  co_return detail::ClientConnection(std::move(stream));
}

template <class Stream>
asio::awaitable<Attempt> Client::Impl::exchange(Stream& stream,
                                                detail::ClientConnection& connection,
                                                Request& request, const std::string& label,
                                                bool reused, Clock::time_point deadline,
                                                Clock::time_point start) {
  Attempt attempt;
  auto failed = [&](ClientErrc errc, const std::string& why) {
    attempt.errc = errc;
    attempt.error = std::string(request.method_string()) + " " + std::string(request.target()) +
                    " to " + label + ": " + why;
    return attempt;
  };

  // The call's deadline, armed once for the write and every read (not the stream's).
  beast::get_lowest_layer(stream).expires_never();
  auto& call_deadline = connection.deadline;
  call_deadline.arm(beast::get_lowest_layer(stream).socket(), deadline);
  struct Disarm {
    detail::CallDeadline& deadline;
    ~Disarm() { deadline.disarm(); }
  } disarm{call_deadline};
  using namespace asio::experimental::awaitable_operators;
  auto& buffers = connection.buffers;
  // The response is read while the request is written, not after: a callee may answer
  // before it has read the whole request (a 413 for a body too large, a 401 before the
  // upload), and then either close (the rest of the write fails with a reset) or simply
  // stop reading, so the write stalls once the socket buffers are full. Either way its
  // answer is here to read (RFC 9112 §9.6: the client should watch for it while sending),
  // and it is the callee's verdict, often the caller's own fault. Reporting a lost
  // connection, or waiting for the deadline, instead blamed the callee (transport or
  // timeout, for its breaker) and invited a retry of the same doomed request. The read,
  // once it has ended, stops a write still going (read_response): such a connection, its
  // request half-sent, is never reused.
  // The connection's own read buffer: empty here (a connection is parked only when its
  // last response left nothing behind), and its memory is reused from call to call.
  beast::flat_buffer& buffer = buffers.read;
  std::optional<beast::http::response_parser<beast::http::string_body>> parser;
  detail::RequestWrite write;
  detail::ResponseRead read;
  // Beast looks Transfer-Encoding up and parses its list each time it is asked.
  const bool chunked = request.chunked();
  if (!chunked && request.body().size() <= detail::kWrittenAtOnce) {
    // Taken by the socket's send buffer in one go, whatever the callee reads: no need
    // for a read beside the write (two child coroutines per call, some 15% of a
    // keep-alive round trip on loopback). A write that fails still lets the read below
    // find an answer that came before the callee closed.
    co_await detail::write_request(stream, request, chunked, buffers.write, write);
    co_await detail::read_response(stream, buffer, parser, request.method(), options.body_limit,
                                   write, read);
  } else {
    co_await (detail::write_request(stream, request, chunked, buffers.write, write) &&
              detail::read_response(stream, buffer, parser, request.method(), options.body_limit,
                                    write, read));
  }
  const error_code write_ec = write.ec;
  const error_code read_ec = read.ec;
  const bool sent = write.done && !write_ec;
  const bool got_some = read.interim > 0 || parser->got_some();
  if (read.interim > detail::kMaxInterimResponses) {
    co_return failed(ClientErrc::bad_response, "bad response: more than " +
                                                   std::to_string(detail::kMaxInterimResponses) +
                                                   " interim (1xx) responses");
  }
  if ((read_ec || (write_ec && !read.stopped_write)) && call_deadline.fired()) {
    co_return failed(ClientErrc::timeout, "timed out after " + elapsed_ms(start) +
                                              (!sent      ? " sending"
                                               : got_some ? " reading the response"
                                                          : " waiting for a response"));
  }
  // The caller's cancellation (the write's own, unless the read stopped it).
  throw_if_aborted(read_ec);
  if (!read.stopped_write) {
    throw_if_aborted(write_ec);
  }
  // Why the connection went while the request was still going out: the write's error,
  // or the read's when the read ended first (and stopped the write).
  const error_code send_ec = read.stopped_write ? read_ec : write_ec;
  if (!sent) {
    // Only with nothing of an answer read: a callee that has begun to answer took the
    // request, and the same one again may meet another answer (the race with an idle
    // close never gets this far).
    attempt.closed_before_response = !got_some && closed_before_response(send_ec);
  }
  auto failed_sending = [&] {
    return failed(ClientErrc::connection_closed,
                  "connection lost while sending: " + send_ec.message());
  };
  if (read_ec && !sent) {
    co_return failed_sending();
  }
  if (read_ec == beast::http::error::body_limit) {
    co_return failed(ClientErrc::bad_response,
                     "response body exceeds " + std::to_string(options.body_limit) + " bytes");
  }
  if (read_ec == beast::http::error::buffer_overflow) {
    co_return failed(ClientErrc::bad_response,
                     "response framing (a chunk-size line or the trailers) exceeds " +
                         std::to_string(detail::ClientBuffers::kReadLimit) + " bytes");
  }
  if (read_ec == beast::http::error::header_limit) {
    co_return failed(ClientErrc::bad_response,
                     "response header exceeds " + std::to_string(detail::kHeaderLimit) + " bytes");
  }
  if (is_parse_error(read_ec)) {
    co_return failed(ClientErrc::bad_response, "bad response: " + read_ec.message());
  }
  if (read_ec) {
    if (!got_some && !reused && detail::is_handshake_refusal(read_ec)) {
      // A TLS 1.3 server checks our certificate after our side of the handshake is done:
      // its refusal arrives as an alert in place of the response. Only on a new
      // connection: on a reused one the server accepted us long ago and the request was
      // delivered, so a TLS failure there is a lost connection (the request may have been
      // processed), never a request that did not leave (never_reached). And only such an
      // alert: a server that broke its TLS after reading the request may have run it.
      co_return failed(ClientErrc::tls_handshake, "the server ended the TLS session: " +
                                                      detail::describe_tls_failure(read_ec));
    }
    if (!got_some && closed_before_response(read_ec)) {
      attempt.closed_before_response = true;
      co_return failed(ClientErrc::outcome_unknown,
                       "closed the connection before responding; the request may or may not "
                       "have been processed");
    }
    co_return failed(ClientErrc::connection_closed,
                     "connection lost while reading the response: " + read_ec.message());
  }

  if (parser->get().result() == Status::switching_protocols) {
    // What follows on the connection is another protocol, which this client cannot speak
    // (it sends no Upgrade of its own): not an answer to return, nor a connection to keep.
    co_return failed(ClientErrc::bad_response,
                     "bad response: 101 Switching Protocols to a protocol the client cannot speak");
  }

  // Reuse only what is known to be clean: both sides keep-alive (HTTP/1.0 and
  // `Connection: close` say no), the body was framed by a length, and nothing beyond
  // this response arrived (over TLS, nothing waits in the TLS layer either: the pool's
  // check of the socket cannot see it, and the next call would take it for its answer).
  bool nothing_beyond = buffer.size() == 0;
  if constexpr (std::is_same_v<Stream, detail::ClientConnection::Tls>) {
    nothing_beyond = nothing_beyond && !detail::tls_holds_unread_bytes(stream.native_handle());
  }
  attempt.reusable = sent && !read.stopped_write && parser->keep_alive() && request.keep_alive() &&
                     nothing_beyond && !call_deadline.fired();
  attempt.response = parser->release();
  buffers.release_if_large();
  co_return attempt;
}

namespace {

// The request's remaining-budget header (ClientOptions::deadline_header), less `spent`.
void lower_deadline_header(Request& request, std::string_view name, Client::Clock::duration spent) {
  const auto spent_ms = std::chrono::duration_cast<std::chrono::milliseconds>(spent).count();
  if (name.empty() || spent_ms <= 0) {
    return;
  }
  const auto field = request.find(name);
  if (field == request.end()) {
    return;
  }
  const std::string_view value = framing::trim_ows(field->value());
  long long left = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), left);
  if (error != std::errc() || end != value.data() + value.size() || left < 0) {
    return;
  }
  request.set(name, std::to_string(std::max<long long>(left - spent_ms, 0)));
}

}  // namespace

Client::Client(asio::any_io_executor executor, ClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(executor), std::move(options))) {}

Client::~Client() = default;

asio::awaitable<Response> Client::send(Destination destination, Request request,
                                       Clock::time_point deadline) {
  auto start = Clock::now();
  auto label = describe(destination);
  const std::string pool_key = pool_key_of(destination, label);
  if (request.find(Field::host) == request.end()) {
    request.set(Field::host, destination.port == 80 ? destination.host : label);
  }
  if (request.find(Field::user_agent) == request.end() && !impl_->options.user_agent.empty()) {
    request.set(Field::user_agent, impl_->options.user_agent);
  }
  request.prepare_payload();

  // Every step below sees a cancellation that has landed, not only one that reaches it
  // while it waits. Asio's cancellation is an edge: it goes to the operation waiting at
  // that moment, and a coroutine that takes its cancellation as error codes (the HTTP
  // server's connections, where every handler and its calls run, set
  // throw_if_cancelled(false)) merely records one that lands while the completion of a
  // step is already queued (a connect or a write done in the same turn of the io thread
  // as a client's hang-up). The next step then started as if nothing had happened, and
  // the call held its connection until its deadline. With throw_if_cancelled(true) each
  // co_await of a step throws operation_aborted once the cancellation is recorded, before
  // the step starts: nothing is then pending on this frame's connection, buffers or
  // parser, which are destroyed as it unwinds (the connection closed, not pooled). The
  // caller's own setting is put back on the way out. (In this frame, not a nested one:
  // a frame per call costs more than the three flag reads and writes.)
  const bool callers_setting = co_await asio::this_coro::throw_if_cancelled();
  co_await asio::this_coro::throw_if_cancelled(true);
  std::optional<Response> response;
  std::exception_ptr failure;
  try {
    // One retry, and only on a fresh connection: when a pooled connection turns out to be
    // dead, the ones parked before it probably are too. Only for idempotent methods: a POST
    // the server read before closing may already have taken effect.
    const bool may_resend =
        impl_->options.retry_closed_pooled_connection && is_idempotent(request.method());
    for (bool retried = false; !response; retried = true) {
      if (Clock::now() >= deadline) {
        // Spent before anything went out (a caller's budget that arrived at 0): nothing is
        // sent. A pooled connection would otherwise take the whole request before the
        // deadline's timer, already due, could close it: the callee ran it, the caller was
        // told it timed out.
        throw ClientError(ClientErrc::timeout, std::string(request.method_string()) + " " +
                                                   std::string(request.target()) + " to " + label +
                                                   ": the deadline passed before it was sent");
      }
      // (No co_await inside a conditional expression: g++ 12 miscompiles it.)
      std::optional<detail::ClientConnection> connection;
      if (!retried) {
        if (auto pooled = impl_->pool.take(pool_key, start)) {
          connection.emplace(std::move(*pooled));
        }
      }
      bool reused = connection.has_value();
      if (!reused) {
        connection.emplace(co_await impl_->connect(destination, label, deadline, start));
        lower_deadline_header(request, impl_->options.deadline_header, Clock::now() - start);
      }
      auto attempt = co_await std::visit(
          [&](auto& stream) {
            return impl_->exchange(stream, *connection, request, label, reused, deadline, start);
          },
          connection->stream);
      if (attempt.response) {
        if (attempt.reusable) {
          impl_->pool.put(pool_key, std::move(*connection), Clock::now());
        }
        response.emplace(std::move(*attempt.response));
      } else if (!(reused && attempt.closed_before_response && !retried && may_resend)) {
        throw ClientError(attempt.errc, attempt.error);
      }
    }
  } catch (...) {
    failure = std::current_exception();
  }
  co_await asio::this_coro::throw_if_cancelled(callers_setting);
  if (failure) {
    std::rethrow_exception(failure);
  }
  co_return std::move(*response);
}

asio::awaitable<Response> Client::get(Destination destination, std::string target,
                                      std::chrono::milliseconds timeout) {
  Request request(Verb::get, target, 11);
  co_return co_await send(std::move(destination), std::move(request), Clock::now() + timeout);
}

std::uint64_t Client::connections_opened() const noexcept {
  return impl_->opened;
}

std::size_t Client::idle_connections() const noexcept {
  return impl_->pool.size();
}

void Client::close_idle() {
  impl_->pool.clear();
}

std::size_t Client::idle_connections_to(const Destination& destination) const {
  return impl_->pool.size_of(pool_key_of(destination, describe(destination)));
}

void Client::close_idle_to(const Destination& destination) {
  impl_->pool.clear(pool_key_of(destination, describe(destination)));
}

}  // namespace coromesh::http
