// A client that hangs up (closes, resets or half-closes its connection) while its
// request's handler runs stops the handler, as Go's net/http cancels the request's
// context: the handler sees its wait cancelled well before it would have ended, and the
// exchange is counted 499. What arrives without a hang-up (a pipelined request) stops
// nothing, and a handler that finishes leaves no watch behind.

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <string>
#include <vector>

#include "coromesh/http/server.hpp"
#include "recording_observer.hpp"
#include "server_fixture.hpp"

namespace coromesh::http::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using coromesh::testing::wait_until;

// Far longer than any wait below: a handler still asleep when the test looks has not
// been stopped.
constexpr std::string_view kLongRequest = "GET /slow?l=60000 HTTP/1.1\r\nHost: x\r\n\r\n";

// A watchdog period of 50 ms (a quarter of the header timeout): a handler is watched
// for its client's hang-up from the watchdog's first wake-up while it runs, so every
// handler here, the 300 ms ones included, is watched almost at once.
const ServerLimits kWatchedSoon{.header_timeout = std::chrono::milliseconds(200)};

tcp::socket connect_to(asio::io_context& ioc, std::uint16_t port) {
  tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  return socket;
}

// Reads until the server closes; what it sent.
std::string read_to_end(tcp::socket& socket) {
  std::string received;
  boost::system::error_code ec;
  asio::read(socket, asio::dynamic_buffer(received), ec);
  return received;
}

TEST(HttpServerHangUp, AClientThatClosesMidRequestCancelsTheHandler) {
  RecordingObserver observer;
  ServerFixture fx(kWatchedSoon, 1, &observer);
  asio::io_context ioc;
  auto socket = connect_to(ioc, fx.port());
  asio::write(socket, asio::buffer(kLongRequest));
  ASSERT_TRUE(wait_until([&] { return fx.slow_started.load() == 1; }, 5s));
  socket.close();
  EXPECT_TRUE(wait_until([&] { return fx.slow_cancelled.load() == 1; }, 5s))
      << "the handler ran on for a client that had gone";
  ASSERT_TRUE(wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{kClientClosedRequest});
  EXPECT_EQ(fx.slow_finished.load(), 0);
  EXPECT_TRUE(wait_until([&] { return fx.server().active_connections() == 0; }, 5s));
  EXPECT_EQ(fx.server().in_flight(), 0u);
}

TEST(HttpServerHangUp, AClientThatResetsMidRequestCancelsTheHandler) {
  RecordingObserver observer;
  ServerFixture fx(kWatchedSoon, 1, &observer);
  asio::io_context ioc;
  auto socket = connect_to(ioc, fx.port());
  asio::write(socket, asio::buffer(kLongRequest));
  ASSERT_TRUE(wait_until([&] { return fx.slow_started.load() == 1; }, 5s));
  socket.set_option(asio::socket_base::linger(true, 0));  // close() now sends a reset
  socket.close();
  EXPECT_TRUE(wait_until([&] { return fx.slow_cancelled.load() == 1; }, 5s))
      << "the handler ran on for a client that had gone";
  ASSERT_TRUE(wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{kClientClosedRequest});
}

// Go's choice (its background read cancels the request's context on EOF), and nginx's
// (an EOF from the client is its "client prematurely closed connection", 499): a FIN
// with no request behind it is the client leaving. It gets no answer, only the close.
TEST(HttpServerHangUp, AClientThatHalfClosesAfterItsRequestHasGone) {
  RecordingObserver observer;
  ServerFixture fx(kWatchedSoon, 1, &observer);
  asio::io_context ioc;
  auto socket = connect_to(ioc, fx.port());
  asio::write(socket, asio::buffer(kLongRequest));
  ASSERT_TRUE(wait_until([&] { return fx.slow_started.load() == 1; }, 5s));
  socket.shutdown(tcp::socket::shutdown_send);
  EXPECT_TRUE(wait_until([&] { return fx.slow_cancelled.load() == 1; }, 5s))
      << "the handler ran on after the client's end of stream";
  EXPECT_EQ(read_to_end(socket), "") << "nothing is sent to a client that has gone";
  ASSERT_TRUE(wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{kClientClosedRequest});
}

// A request that arrives while the first one's handler runs is a client still there:
// the first handler goes on, and both are answered in order on the connection.
TEST(HttpServerHangUp, ARequestPipelinedWhileTheHandlerRunsStopsNothing) {
  RecordingObserver observer;
  ServerFixture fx(kWatchedSoon, 1, &observer);
  asio::io_context ioc;
  auto socket = connect_to(ioc, fx.port());
  asio::write(socket,
              asio::buffer(std::string_view("GET /slow?l=300 HTTP/1.1\r\nHost: x\r\n\r\n")));
  ASSERT_TRUE(wait_until([&] { return fx.slow_started.load() == 1; }, 5s));
  asio::write(socket, asio::buffer(std::string_view(
                          "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
  const auto received = read_to_end(socket);
  const auto slept = received.find("slept");
  const auto hello = received.find("hello");
  ASSERT_NE(slept, std::string::npos) << received;
  ASSERT_NE(hello, std::string::npos) << received;
  EXPECT_LT(slept, hello) << "answered out of order:\n" << received;
  EXPECT_EQ(fx.slow_cancelled.load(), 0);
  ASSERT_TRUE(wait_until([&] { return observer.statuses().size() == 2; }, 5s));
  EXPECT_EQ(observer.statuses(), (std::vector<unsigned>{200, 200}));
}

// The same with the client's FIN behind its pipelined request (`... | nc -N`): an end of
// stream behind a request is a half-close, not a hang-up, and both are still answered.
TEST(HttpServerHangUp, AHalfCloseBehindAPipelinedRequestStopsNothing) {
  RecordingObserver observer;
  ServerFixture fx(kWatchedSoon, 1, &observer);
  asio::io_context ioc;
  auto socket = connect_to(ioc, fx.port());
  asio::write(socket,
              asio::buffer(std::string_view("GET /slow?l=300 HTTP/1.1\r\nHost: x\r\n\r\n")));
  ASSERT_TRUE(wait_until([&] { return fx.slow_started.load() == 1; }, 5s));
  asio::write(socket, asio::buffer(std::string_view("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")));
  socket.shutdown(tcp::socket::shutdown_send);
  const auto received = read_to_end(socket);
  EXPECT_NE(received.find("slept"), std::string::npos) << received;
  EXPECT_NE(received.find("hello"), std::string::npos) << received;
  EXPECT_EQ(fx.slow_cancelled.load(), 0);
}

// Every handler that waits has a watch started and stopped around it: on one keep-alive
// connection they all end with their handler and take nothing of the next request (under
// ASan, a watch that outlived its connection would show too).
TEST(HttpServerHangUp, HandlersThatFinishLeaveNoWatchBehind) {
  RecordingObserver observer;
  ServerFixture fx(kWatchedSoon, 1, &observer);
  asio::io_context ioc;
  auto socket = connect_to(ioc, fx.port());
  constexpr int kRequests = 200;
  std::string received;
  for (int i = 0; i < kRequests; ++i) {
    asio::write(socket,
                asio::buffer(std::string_view("GET /slow?l=1 HTTP/1.1\r\nHost: x\r\n\r\n")));
    received.clear();
    asio::read_until(socket, asio::dynamic_buffer(received), "slept");
  }
  // The connection, idle now, is closed by the client: no request of its is in flight.
  socket.close();
  ASSERT_TRUE(wait_until([&] { return fx.server().active_connections() == 0; }, 5s));
  EXPECT_EQ(fx.slow_finished.load(), kRequests);
  EXPECT_EQ(fx.slow_cancelled.load(), 0);
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>(kRequests, 200));
}

// A handler that ignores its cancellation runs to its end; its answer is then dropped,
// as the client has gone, and the exchange counted 499 all the same.
TEST(HttpServerHangUp, AHandlerThatIgnoresTheCancellationHasItsAnswerDropped) {
  RecordingObserver observer;
  ServerFixture fx(kWatchedSoon, 1, &observer);
  asio::io_context ioc;
  auto socket = connect_to(ioc, fx.port());
  asio::write(socket,
              asio::buffer(std::string_view("GET /stubborn?l=300 HTTP/1.1\r\nHost: x\r\n\r\n")));
  ASSERT_TRUE(wait_until([&] { return fx.stubborn_started.load() == 1; }, 5s));
  socket.shutdown(tcp::socket::shutdown_send);
  EXPECT_EQ(read_to_end(socket), "") << "an answer was sent to a client that had gone";
  EXPECT_EQ(fx.stubborn_finished.load(), 1);
  ASSERT_TRUE(wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{kClientClosedRequest});
}

}  // namespace
}  // namespace coromesh::http::testing
