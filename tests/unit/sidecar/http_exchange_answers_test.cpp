// How serve_http_exchanges sends `forward`'s answers back (one flat write, or Beast's
// chunked encoding for a chunked answer) and what it does when `forward` throws.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include "coromesh/http/client.hpp"
#include "src/http_exchange.hpp"

namespace coromesh::sidecar {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

using Answer = std::function<http::Response(const http::Request&)>;

// Sends `requests` on `socket` and returns everything that comes back until the peer
// closes (or 5 s pass without a byte).
std::string send_and_read_to_close(tcp::socket& socket, const std::string& requests) {
  ::send(socket.native_handle(), requests.data(), requests.size(), MSG_NOSIGNAL);
  timeval timeout{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string received;
  char chunk[4096];
  for (;;) {
    const auto n = ::recv(socket.native_handle(), chunk, sizeof chunk, 0);
    if (n <= 0) {
      break;
    }
    received.append(chunk, static_cast<std::size_t>(n));
  }
  return received;
}

// Sends `requests` on one connection served by serve_http_exchanges (idle timeout 30 s)
// whose forward answers with `answer`; returns what came back until the server closed,
// and in `failure` what serve_http_exchanges threw (if it returned at all within 10 s).
std::string exchange(const std::string& requests, const Answer& answer,
                     std::exception_ptr* failure = nullptr, bool* returned = nullptr) {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto server = co_await acceptor.async_accept(asio::use_awaitable);
        co_await serve_http_exchanges(
            server, 30s, 1s, [&](http::Request request) -> asio::awaitable<http::Response> {
              co_return answer(request);
            });
      },
      [&](const std::exception_ptr& error) {
        if (failure != nullptr) {
          *failure = error;
        }
        if (returned != nullptr) {
          *returned = true;
        }
        io.stop();
      });
  std::thread thread([&io] { io.run_for(10s); });
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  std::string received = send_and_read_to_close(client, requests);
  thread.join();
  return received;
}

http::Response ok(const http::Request& request, std::string body) {
  http::Response response(http::Status::ok, request.version());
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

TEST(SidecarHttpAnswers, EachAnswerOfAKeptAliveConnectionIsFramedByItsLength) {
  const auto received = exchange(
      "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      [](const http::Request& request) {
        return ok(request, "body of " + std::string(request.target()));
      });
  EXPECT_EQ(received,
            "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody of /one"
            "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbody of /two")
      << received;
}

// An upstream's chunked answer arrives decoded, its Transfer-Encoding kept: it goes on
// chunked again, never as raw bytes under a chunked header.
TEST(SidecarHttpAnswers, AChunkedAnswerIsPassedOnChunked) {
  const auto received = exchange("GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                 [](const http::Request& request) {
                                   http::Response response(http::Status::ok, request.version());
                                   response.chunked(true);
                                   response.body() = "hello";
                                   return response;
                                 });
  EXPECT_TRUE(received.starts_with("HTTP/1.1 200 OK\r\n")) << received;
  EXPECT_NE(received.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << received;
  EXPECT_TRUE(received.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n")) << received;
}

// The exchanges run beside their idle watch; an exception from forward must still end
// them at once (and reach the caller), not wait for the watch.
TEST(SidecarHttpAnswers, AnExceptionFromForwardEndsTheExchangesAndReachesTheCaller) {
  std::exception_ptr failure;
  bool returned = false;
  const auto started = std::chrono::steady_clock::now();
  const auto received = exchange(
      "GET /boom HTTP/1.1\r\nHost: x\r\n\r\n",
      [](const http::Request&) -> http::Response { throw std::runtime_error("boom"); }, &failure,
      &returned);
  EXPECT_TRUE(returned);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 8s);
  EXPECT_TRUE(received.empty()) << received;
  ASSERT_TRUE(failure);
  EXPECT_THROW(std::rethrow_exception(failure), std::runtime_error);
}

// An upstream that frames its answer by closing the connection ("Connection: close", no
// Content-Length: HTTP/1.0-style servers, or any server that just closes). The sidecar's
// client reads it whole; the answer it passes on over a kept-alive connection must then
// carry a length of its own, or its client cannot tell where it ends: it would read the
// next answer as more body, or wait for a close that never comes.
TEST(SidecarHttpAnswers, AnAnswerFramedByItsUpstreamsCloseIsPassedOnWithALength) {
  asio::io_context io;
  tcp::acceptor backend(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::thread backend_thread([&backend] {
    for (int i = 0; i < 2; ++i) {
      boost::system::error_code ec;
      tcp::socket socket = backend.accept(ec);
      if (ec) {
        return;
      }
      std::string request;
      char chunk[1024];
      while (request.find("\r\n\r\n") == std::string::npos) {
        const auto n = socket.read_some(asio::buffer(chunk), ec);
        if (ec) {
          return;
        }
        request.append(chunk, n);
      }
      const std::string answer = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello";
      asio::write(socket, asio::buffer(answer), ec);
    }  // closed: the end of the body
  });
  const auto upstream = backend.local_endpoint().port();
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  http::Client client(io.get_executor());
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto server = co_await acceptor.async_accept(asio::use_awaitable);
        co_await serve_http_exchanges(
            server, 30s, 1s, [&](http::Request request) -> asio::awaitable<http::Response> {
              co_return co_await client.send({"127.0.0.1", upstream, {}}, std::move(request),
                                             std::chrono::steady_clock::now() + 5s);
            });
      },
      [&](const std::exception_ptr&) { io.stop(); });
  std::thread thread([&io] { io.run_for(10s); });
  tcp::socket caller(io);
  caller.connect(acceptor.local_endpoint());
  const std::string requests =
      "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::string received = send_and_read_to_close(caller, requests);
  thread.join();
  backend.close();
  backend_thread.join();

  // Read back as the caller's HTTP client reads them: two answers, each body whole.
  namespace bhttp = boost::beast::http;
  boost::beast::flat_buffer buffer;
  buffer.commit(asio::buffer_copy(buffer.prepare(received.size()), asio::buffer(received)));
  for (const char* which : {"first", "second"}) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.eager(true);
    boost::system::error_code ec;
    // A stream that ends here: what the caller has once the connection closed.
    while (!parser.is_done() && !ec) {
      const auto n = parser.put(buffer.data(), ec);
      buffer.consume(n);
      if (n == 0 && !parser.is_done()) {
        parser.put_eof(ec);
        break;
      }
    }
    ASSERT_TRUE(parser.is_done()) << which << " answer: " << ec.message() << "\n" << received;
    EXPECT_EQ(parser.get().body(), "hello") << which << " answer of:\n" << received;
  }
  EXPECT_EQ(buffer.size(), 0u) << received;
}

}  // namespace
}  // namespace coromesh::sidecar
