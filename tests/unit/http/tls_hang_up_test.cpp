// A TLS client that hangs up while its request's handler runs stops the handler, as over
// plain TCP (server_hang_up_test.cpp): the watch looks at the TCP socket under the TLS
// stream and never reads from it, so a request pipelined over TLS stops nothing.

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "tls_fixture.hpp"

namespace coromesh::http::testing {
namespace {

using tcp = asio::ip::tcp;
namespace beast = boost::beast;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

class HttpTlsHangUp : public HttpTls {
 protected:
  HttpTlsHangUp() {
    // Sleeps `ms` (the query, default a minute): far longer than any test waits.
    router_.add(Verb::get, "/sleep", "sleep",
                [this](RequestContext& ctx) -> asio::awaitable<Response> {
                  ++started_;
                  const auto ms = ctx.query.empty() ? 60'000 : std::stoi(std::string(ctx.query));
                  asio::steady_timer timer(co_await asio::this_coro::executor,
                                           std::chrono::milliseconds(ms));
                  auto [ec] = co_await timer.async_wait(use_tuple);
                  if (ec == asio::error::operation_aborted) {
                    ++cancelled_;
                    throw boost::system::system_error(ec);
                  }
                  Response response{Status::ok, 11};
                  response.body() = "slept";
                  response.prepare_payload();
                  co_return response;
                });
    // A watchdog period of 50 ms (a quarter of the header timeout): a handler is watched
    // for its client's hang-up from the watchdog's first wake-up while it runs.
    server_limits_.header_timeout = 200ms;
    start_server();
    context_ = client_context(ca_.leaf("web"));
    stream_.emplace(ioc_, *context_);
    run(ioc_, [&]() -> asio::awaitable<bool> {
      co_await stream_->next_layer().async_connect(
          {asio::ip::make_address("127.0.0.1"), server_->port()}, asio::use_awaitable);
      co_await stream_->async_handshake(ssl::stream_base::client, asio::use_awaitable);
      co_return true;
    }());
  }

  void send(const std::string& target, bool close = false) {
    run(ioc_, [&]() -> asio::awaitable<bool> {
      Request request{Verb::get, target, 11};
      request.set(Field::host, "api");
      if (close) {
        request.set(Field::connection, "close");
      }
      co_await beast::http::async_write(*stream_, request, asio::use_awaitable);
      co_return true;
    }());
  }

  std::shared_ptr<ssl::context> context_;
  std::optional<ssl::stream<tcp::socket>> stream_;
  std::atomic<int> started_{0};
  std::atomic<int> cancelled_{0};
};

TEST_F(HttpTlsHangUp, AClientThatClosesItsSocketMidRequestCancelsTheHandler) {
  send("/sleep");
  ASSERT_TRUE(eventually([&] { return started_.load() == 1; }));
  stream_->next_layer().close();  // no close_notify: the TCP connection just ends
  EXPECT_TRUE(eventually([&] { return cancelled_.load() == 1; }))
      << "the handler ran on for a client that had gone";
  ASSERT_TRUE(eventually([&] { return !handshakes_.statuses().empty(); }));
  EXPECT_EQ(handshakes_.statuses(), std::vector<unsigned>{kClientClosedRequest});
}

// close_notify first, then the socket: the record wakes the watch before the FIN does.
TEST_F(HttpTlsHangUp, AClientThatEndsItsSessionMidRequestCancelsTheHandler) {
  send("/sleep");
  ASSERT_TRUE(eventually([&] { return started_.load() == 1; }));
  run(ioc_, [&]() -> asio::awaitable<bool> {
    asio::steady_timer patience(ioc_, 100ms);
    co_await (stream_->async_shutdown(use_tuple) || patience.async_wait(use_tuple));
    co_return true;
  }());
  std::this_thread::sleep_for(50ms);  // the record and the FIN arrive apart
  stream_->next_layer().close();
  EXPECT_TRUE(eventually([&] { return cancelled_.load() == 1; }))
      << "the handler ran on for a client that had gone";
  ASSERT_TRUE(eventually([&] { return !handshakes_.statuses().empty(); }));
  EXPECT_EQ(handshakes_.statuses(), std::vector<unsigned>{kClientClosedRequest});
}

TEST_F(HttpTlsHangUp, ARequestPipelinedWhileTheHandlerRunsStopsNothing) {
  send("/sleep?300");
  ASSERT_TRUE(eventually([&] { return started_.load() == 1; }));
  send("/sleep?1", /*close=*/true);
  std::vector<std::string> bodies;
  run(ioc_, [&]() -> asio::awaitable<bool> {
    beast::flat_buffer buffer;
    for (int i = 0; i < 2; ++i) {
      Response response;
      co_await beast::http::async_read(*stream_, buffer, response, asio::use_awaitable);
      bodies.push_back(std::to_string(response.result_int()) + " " + response.body());
    }
    co_return true;
  }());
  EXPECT_EQ(bodies, (std::vector<std::string>{"200 slept", "200 slept"}));
  EXPECT_EQ(cancelled_.load(), 0);
  ASSERT_TRUE(eventually([&] { return handshakes_.statuses().size() == 2; }));
  EXPECT_EQ(handshakes_.statuses(), (std::vector<unsigned>{200, 200}));
}

}  // namespace
}  // namespace coromesh::http::testing
