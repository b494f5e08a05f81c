// libFuzzer target for coromesh-sidecar's http mode (proxy/src/http_exchange: the request
// loop serve_http_exchanges with its limits and refusals, and the public listener's
// rewrite of a caller's request: deadline header, x-coromesh-peer, keep-alive). Each
// input is one client connection's bytes, sent over loopback to the same loop the
// sidecar runs (minus TLS), then half-closed. Every request it passes on is rewritten as
// the sidecar rewrites it and written as http::Client writes it; then
//  - the bytes bound for the local service are exactly one request, with the caller's
//    method, target and body, one x-coromesh-peer naming the verified caller (whatever
//    the caller sent), a deadline no later than the route's, and keep-alive;
//  - the caller gets nothing but well-formed responses: 200 for what was passed on,
//    400/413/431/501 for what was refused, and the loop keeps serving the next connection.
//
// Long run: tests/fuzz/README.md.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/write.hpp>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

#include "coromesh/http/message.hpp"
#include "coromesh/qos/deadline.hpp"
#include "http_exchange.hpp"
#include "http_wire.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = coromesh::http;
namespace qos = coromesh::qos;
namespace sidecar = coromesh::sidecar;
using asio::ip::tcp;
using fuzz::check;
using namespace std::chrono_literals;

constexpr std::string_view kCaller = "spiffe://fuzz.consul/ns/default/dc/dc1/svc/caller";
constexpr auto kRouteTimeout = 1s;

// The request as http::Client puts it on the wire (client.cpp: Host when absent,
// prepare_payload, Beast's serializer).
std::string as_the_client_writes(http::Request request) {
  if (request.find(http::Field::host) == request.end()) {
    request.set(http::Field::host, "127.0.0.1:1");
  }
  request.prepare_payload();
  std::ostringstream wire;
  wire << request;
  return std::move(wire).str();
}

// What the local service would read: exactly one complete request, faithful to what the
// sidecar read from the caller, carrying what the sidecar vouches for.
void check_forwarded(const http::Request& received, const std::string& wire) {
  beast::http::request_parser<beast::http::string_body> parser;
  parser.eager(true);
  parser.body_limit(boost::none);
  beast::error_code ec;
  const auto used = parser.put(asio::buffer(wire.data(), wire.size()), ec);
  if (!ec && !parser.is_done()) {
    parser.put_eof(ec);  // a body delimited by the end of the stream is no request body
  }
  check(!ec && parser.is_done());
  check(used == wire.size());  // nothing left over for the service to take as a 2nd request
  const auto& forwarded = parser.get();
  check(forwarded.method() == received.method());
  check(forwarded.target() == received.target());
  check(forwarded.body() == received.body());
  check(forwarded.keep_alive());
  check(forwarded.count(sidecar::kPeerHeader) == 1);
  check(forwarded[sidecar::kPeerHeader] == kCaller);
  if (const auto header = forwarded.find(qos::kDeadlineHeader); header != forwarded.end()) {
    const auto parsed = qos::parse_deadline_header(header->value());
    check(static_cast<bool>(parsed));
    check(parsed.deadline.remaining() <= kRouteTimeout);
  }
}

asio::awaitable<http::Response> forward(http::Request request) {
  const http::Request received = request;
  const auto forwarded = sidecar::forwarded_deadline(request, kRouteTimeout);
  sidecar::rewrite_inbound_request(request, forwarded, kCaller);
  check_forwarded(received, as_the_client_writes(std::move(request)));
  http::Response response{http::Status::ok, received.version()};
  if (received.method() != http::Verb::head) {
    response.body() = "forwarded";
  }
  response.prepare_payload();
  co_return response;
}

// The sidecar's request loop on loopback, on its own thread, for the whole run.
struct Harness {
  asio::io_context io;
  tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  std::thread thread;

  Harness() {
    asio::co_spawn(io, accept(), asio::detached);
    thread = std::thread([this] { io.run(); });
  }
  ~Harness() {  // at exit: a joinable thread would terminate the process
    io.stop();
    thread.join();
  }

  asio::awaitable<void> accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        continue;  // out of descriptors, say: the next input's connect fails the check
      }
      asio::co_spawn(io, serve(std::move(socket)), asio::detached);
    }
  }

  static asio::awaitable<void> serve(tcp::socket socket) {
    co_await sidecar::serve_http_exchanges(socket, 5s, 1s, forward);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Harness harness;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  check(fuzz::are_responses(fuzz::exchange(harness.acceptor.local_endpoint().port(), bytes),
                            {200, 400, 413, 431, 501}));
  return 0;
}
