#pragma once

// The loopback test server and the fixture the http::Client tests share: each test
// writes the server's per-connection behaviour as a coroutine.

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "coromesh/http/client.hpp"

namespace coromesh::http::client_testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// An in-process loopback HTTP server whose per-connection behaviour each test writes
// as a coroutine: `session(stream, n)` runs for the n-th accepted connection (from 1).
class TestServer {
 public:
  using Session = std::function<asio::awaitable<void>(beast::tcp_stream&, int)>;

  TestServer(asio::io_context& ioc, Session session)
      : acceptor_(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        session_(std::move(session)) {
    asio::co_spawn(ioc, accept_loop(), asio::detached);
  }

  Destination destination() const { return {"127.0.0.1", acceptor_.local_endpoint().port()}; }
  int connections() const { return connections_; }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
      if (ec) {
        co_return;
      }
      asio::co_spawn(acceptor_.get_executor(),
                     serve(beast::tcp_stream(std::move(socket)), ++connections_), asio::detached);
    }
  }
  asio::awaitable<void> serve(beast::tcp_stream stream, int n) { co_await session_(stream, n); }

  tcp::acceptor acceptor_;
  Session session_;
  int connections_ = 0;
};

inline asio::awaitable<std::optional<Request>> read_request(beast::tcp_stream& stream,
                                                            beast::flat_buffer& buffer) {
  Request request;
  auto [ec, n] = co_await beast::http::async_read(stream, buffer, request, use_tuple);
  if (ec) {
    co_return std::nullopt;
  }
  co_return request;
}

inline asio::awaitable<void> write_response(beast::tcp_stream& stream, Response response) {
  response.prepare_payload();
  co_await beast::http::async_write(stream, response, use_tuple);
}

// 200 with the request's target as the body, honouring the request's keep-alive.
inline Response echo_target(const Request& request) {
  Response response(Status::ok, request.version());
  response.body() = std::string(request.target());
  response.keep_alive(request.keep_alive());
  return response;
}

// Serves every request on the connection like echo_target until the client leaves.
inline asio::awaitable<void> keep_alive_session(beast::tcp_stream& stream, int) {
  beast::flat_buffer buffer;
  while (auto request = co_await read_request(stream, buffer)) {
    co_await write_response(stream, echo_target(*request));
  }
}

// Waits for the client to go away (or the test to end) without answering.
inline asio::awaitable<void> wait_for_close(beast::tcp_stream& stream) {
  char byte = 0;
  co_await stream.socket().async_read_some(asio::buffer(&byte, 1), use_tuple);
}

inline asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(use_tuple);
}

class HttpClient : public ::testing::Test {
 protected:
  // Runs the test body on the io_context (servers and client share its one thread) and
  // rethrows what it threw. A body that hangs fails the test instead of the run.
  void run(const std::function<asio::awaitable<void>()>& body) {
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(ioc_, body(), [&](std::exception_ptr e) {
      error = e;
      done = true;
      ioc_.stop();
    });
    ioc_.run_for(10s);
    ASSERT_TRUE(done) << "the test body did not finish within 10s";
    if (error) {
      std::rethrow_exception(error);
    }
  }

  // The ClientError a call threw; a call that succeeds fails the test (by throwing: no
  // ASSERT_* in coroutines).
  static asio::awaitable<ClientError> call_error(asio::awaitable<Response> call) {
    unsigned status = 0;
    try {
      status = (co_await std::move(call)).result_int();
    } catch (const ClientError& e) {
      co_return e;
    }
    throw std::logic_error("expected a ClientError, got status " + std::to_string(status));
  }

  // A GET with a 200 ms deadline that must end as the call's timeout, at that deadline,
  // its message naming `fragment`. Parameters by value: they live in this frame.
  static asio::awaitable<void> expect_times_out_at_200ms(Client& http, Destination to,
                                                         std::string path, std::string fragment) {
    const auto start = Client::Clock::now();
    auto error = co_await call_error(http.get(to, path, 200ms));
    const auto elapsed = Client::Clock::now() - start;
    EXPECT_GE(elapsed, 190ms);
    EXPECT_LT(elapsed, 2s);
    EXPECT_EQ(error.code(), ClientErrc::timeout);
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
  }

  Client& client(ClientOptions options = {}) {
    client_.emplace(ioc_.get_executor(), std::move(options));
    return *client_;
  }

  asio::io_context ioc_;
  std::optional<Client> client_;
};

}  // namespace coromesh::http::client_testing
