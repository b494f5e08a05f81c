// A handler that takes its time against http::Server's connection timeouts: the read
// timeouts guard against slow clients, never against the server's own handler, and a
// request is counted as what became of it (delivered, client gone, cut off by a drain).

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <mutex>
#include <thread>
#include <vector>

#include "coromesh/http/server.hpp"
#include "coromesh/log/logger.hpp"
#include "recording_observer.hpp"
#include "server_fixture.hpp"

namespace coromesh::http::testing {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// A client whose socket buffers fill up after a few KiB of an answer it does not read.
asio::ip::tcp::socket connect_with_a_small_receive_buffer(asio::io_context& ioc,
                                                          std::uint16_t port) {
  asio::ip::tcp::socket socket(ioc);
  socket.open(asio::ip::tcp::v4());
  socket.set_option(asio::socket_base::receive_buffer_size(4096));
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  return socket;
}

TEST(HttpServerSlowHandler, HandlerSlowerThanTheHeaderTimeoutIsAnsweredInFull) {
  ServerLimits limits;
  limits.header_timeout = 200ms;
  RecordingObserver observer;
  ServerFixture fx(limits, 1, &observer);
  auto res = fx.get("/slow?l=600");
  EXPECT_EQ(res.status, 200) << res.error;
  EXPECT_EQ(res.body, "slept");
  // The server counts the request once its write completed, which the client may see first.
  ASSERT_TRUE(coromesh::testing::wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{200});
}

TEST(HttpServerSlowHandler, HandlerSlowerThanTheIdleTimeoutIsAnsweredInFull) {
  ServerLimits limits;
  limits.idle_timeout = 200ms;
  ServerFixture fx(limits);
  asio::io_context ioc;
  asio::ip::tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), fx.port()});
  asio::write(socket, asio::buffer(std::string_view("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")));
  std::string answer;
  boost::system::error_code ec;
  asio::read_until(socket, asio::dynamic_buffer(answer), "hello", ec);
  ASSERT_FALSE(ec) << ec.message();
  // The second request of the keep-alive connection starts under the idle timeout.
  asio::write(socket, asio::buffer(std::string_view(
                          "GET /slow?l=600 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
  asio::read(socket, asio::dynamic_buffer(answer), ec);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_NE(answer.find("slept"), std::string::npos) << answer;
}

TEST(HttpServerSlowHandler, ClientGoneBeforeTheAnswerIsCounted499) {
  RecordingObserver observer;
  // A watchdog period of 50 ms (a quarter of the header timeout): the 400 ms handler is
  // watched for its client's hang-up (hang_up_watch.hpp).
  ServerFixture fx({.header_timeout = std::chrono::milliseconds(200)}, 1, &observer);
  asio::io_context ioc;
  asio::ip::tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), fx.port()});
  asio::write(socket,
              asio::buffer(std::string_view("GET /slow?l=400 HTTP/1.1\r\nHost: x\r\n\r\n")));
  ASSERT_TRUE(coromesh::testing::wait_until([&] { return fx.slow_started.load() == 1; }, 5s));
  socket.close();  // the client gives up while the handler runs
  ASSERT_TRUE(coromesh::testing::wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{kClientClosedRequest});
  // Stopped by the hang-up, not left to run for nobody (server_hang_up_test.cpp).
  EXPECT_EQ(fx.slow_cancelled.load(), 1);
  EXPECT_EQ(fx.slow_finished.load(), 0);
}

// Log lines written while `body` runs, at level info and above.
template <class Body>
std::string logged_during(Body body) {
  const auto previous = log::level();
  log::set_level(log::Level::info);
  ::testing::internal::CaptureStderr();
  body();
  log::flush();  // lines reach stderr from the logger's own thread
  auto lines = ::testing::internal::GetCapturedStderr();
  log::set_level(previous);
  return lines;
}

TEST(HttpServerSlowHandler, RequestCutOffByTheDrainIsCounted503) {
  RecordingObserver observer;
  ServerFixture fx({}, 1, &observer);
  const auto lines = logged_during([&] {
    std::thread client([&] { fx.get("/slow?l=5000"); });
    ASSERT_TRUE(coromesh::testing::wait_until([&] { return fx.slow_started.load() == 1; }, 5s));
    EXPECT_EQ(fx.shutdown(200ms), 1u);
    client.join();
  });
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{503});
  // The drain's own cancellation is expected, not a handler failure.
  EXPECT_NE(lines.find("level=info event=http.request.cancelled operation=slow"), std::string::npos)
      << lines;
  EXPECT_EQ(lines.find("http.handler.exception"), std::string::npos) << lines;
}

// A handler whose own operation ends in operation_aborted while a drain waits for it (its
// grace period not over, the connection not cut off) has failed like any handler: logged
// as an error, not as the drain's cancellation. Only a connection the drain actually cut
// off makes operation_aborted the drain's doing.
TEST(HttpServerSlowHandler, AHandlerAbortedByItselfDuringTheGraceIsLoggedAsItsFailure) {
  RecordingObserver observer;
  ServerFixture fx({}, 1, &observer);
  coromesh::testing::FetchResult answer;
  const auto lines = logged_during([&] {
    std::thread client([&] { answer = fx.get("/gated"); });
    ASSERT_TRUE(coromesh::testing::wait_until([&] { return fx.gated_started.load() == 1; }, 5s));
    fx.server().stop_accepting();  // the drain has begun: the connection is `closing`
    fx.cancel_gate();              // queued after stop_accepting's work on the same thread
    client.join();
    EXPECT_EQ(fx.shutdown(5s), 0u) << "nothing was left for the drain to cut off";
  });
  EXPECT_EQ(answer.status, 500) << answer.error;
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{500});
  EXPECT_NE(lines.find("level=error event=http.handler.exception operation=gated"),
            std::string::npos)
      << lines;
  EXPECT_EQ(lines.find("http.request.cancelled"), std::string::npos) << lines;
}

// A connection refused at max_connections is answered 503 overloaded before a byte of its
// request is read: still an exchange the service's metrics must count (operation
// "unmatched", code 503), or an overload would never show in requests_total.
TEST(HttpServerCounting, AConnectionRefusedAtTheLimitIsCounted503) {
  RecordingObserver observer;
  ServerLimits limits;
  limits.max_connections = 1;
  limits.header_timeout = 2s;
  ServerFixture fx(limits, 1, &observer);
  asio::io_context ioc;
  asio::ip::tcp::socket holder(ioc);  // holds the only slot, sends nothing
  holder.connect({asio::ip::make_address("127.0.0.1"), fx.port()});
  ASSERT_TRUE(
      coromesh::testing::wait_until([&] { return fx.server().active_connections() == 1; }, 5s));
  auto refused = fx.get("/hello");
  EXPECT_EQ(refused.status, 503) << refused.error;
  holder.close();
  ASSERT_TRUE(
      coromesh::testing::wait_until([&] { return fx.server().active_connections() == 0; }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{503});
}

// A client may pipeline its requests and then half-close its side (`printf ... | nc -N`):
// it still reads every answer. The hang-up check after a slow handler must not take the
// FIN behind the pipelined requests for a client that has gone: those requests are
// already in the server's buffer, waiting for their answers.
TEST(HttpServerSlowHandler, PipelinedRequestsOfAHalfClosedClientAreAllAnswered) {
  RecordingObserver observer;
  ServerFixture fx({}, 1, &observer);
  asio::io_context ioc;
  asio::ip::tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), fx.port()});
  asio::write(socket, asio::buffer(std::string_view("GET /slow?l=50 HTTP/1.1\r\nHost: x\r\n\r\n"
                                                    "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")));
  socket.shutdown(asio::ip::tcp::socket::shutdown_send);
  std::string answer;
  boost::system::error_code ec;
  asio::read(socket, asio::dynamic_buffer(answer), ec);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_NE(answer.find("slept"), std::string::npos) << answer;
  EXPECT_NE(answer.find("hello"), std::string::npos) << "the second request was dropped:\n"
                                                     << answer;
  ASSERT_TRUE(coromesh::testing::wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses().front(), 200u) << "the first answer reached a client still there";
}

// The watchdog answers a request that stops arriving with 408 like the other requests
// refused before routing (431, 413, 400): counted by the observer (the service's
// requests_total, operation "unmatched") and logged, not only visible to the client.
TEST(HttpServerSlowHandler, ARequestThatStopsArrivingIsCounted408) {
  RecordingObserver observer;
  ServerLimits limits;
  limits.header_timeout = 300ms;
  ServerFixture fx(limits, 1, &observer);
  auto answer = fx.raw("GET /hello HTTP/1.1\r\nHost:", 5s);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 408 ")) << answer;
  ASSERT_TRUE(coromesh::testing::wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{408});
  // A keep-alive connection idle past its timeout had no request: nothing to count.
  EXPECT_EQ(fx.get("/hello").status, 200);
  EXPECT_TRUE(coromesh::testing::wait_until([&] { return observer.statuses().size() == 2; }, 5s));
  EXPECT_EQ(fx.raw("", 2s), "");
  EXPECT_EQ(observer.statuses(), (std::vector<unsigned>{408, 200}));
}

// Whatever a handler throws is its failure, answered 500 and counted as such: an
// exception of a type not derived from std::exception too.
TEST(HttpServerSlowHandler, AHandlerThrowingANonStandardExceptionIsAnswered500AndCounted) {
  RecordingObserver observer;
  ServerFixture fx({}, 1, &observer);
  auto answer = fx.get("/throw-other");
  EXPECT_EQ(answer.status, 500) << answer.error;
  EXPECT_EQ(answer.body,
            R"({"error":"internal","reason":"the handler failed; see the service log"})");
  ASSERT_TRUE(coromesh::testing::wait_until([&] { return !observer.statuses().empty(); }, 5s));
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{500});
}

// The request loop's own reads and writes are not cancelled through the connection's
// cancellation slot: a drain reaches an answer stuck on a client that does not read by
// cancelling the socket, well before the write timeout.
TEST(HttpServerSlowHandler, AnswerTheClientDoesNotReadIsCutOffByTheDrain) {
  RecordingObserver observer;
  ServerLimits limits;
  limits.max_body_bytes = 24 * 1024 * 1024;
  limits.write_timeout = 60s;
  ServerFixture fx(limits, 1, &observer);
  asio::io_context ioc;
  auto socket = connect_with_a_small_receive_buffer(ioc, fx.port());
  // Echoed back, 16 MB cannot fit the socket buffers of a client that reads nothing.
  const std::string body(16 * 1024 * 1024, 'x');
  asio::write(socket, asio::buffer("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n"));
  asio::write(socket, asio::buffer(body));
  ASSERT_TRUE(coromesh::testing::wait_until([&] { return fx.server().in_flight() == 1; }, 5s));
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(fx.shutdown(200ms), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s) << "ended by the drain, not a timeout";
  EXPECT_EQ(fx.server().active_connections(), 0u);
  EXPECT_EQ(observer.statuses(), std::vector<unsigned>{503});
}

// An answer is sent inline while it fits the socket's buffers and by an asynchronous
// write from where that stopped: a client that reads only after a pause gets every byte,
// in order, and the connection serves its next request as usual.
TEST(HttpServerSlowHandler, AnswerLargerThanTheSocketBuffersReachesALateReaderWhole) {
  RecordingObserver observer;
  ServerLimits limits;
  limits.max_body_bytes = 8 * 1024 * 1024;
  ServerFixture fx(limits, 1, &observer);
  asio::io_context ioc;
  auto socket = connect_with_a_small_receive_buffer(ioc, fx.port());
  std::string body(4 * 1024 * 1024, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) {
    body[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);  // misplaced bytes show
  }
  asio::write(socket, asio::buffer("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n"));
  asio::write(socket, asio::buffer(body));
  ASSERT_TRUE(coromesh::testing::wait_until([&] { return fx.server().in_flight() == 1; }, 5s));
  std::this_thread::sleep_for(300ms);  // the server has filled the buffers meanwhile
  std::string received;
  auto header_end = asio::read_until(socket, asio::dynamic_buffer(received), "\r\n\r\n");
  ASSERT_NE(received.find("Content-Length: " + std::to_string(body.size())), std::string::npos)
      << received.substr(0, header_end);
  received.erase(0, header_end);
  if (received.size() < body.size()) {
    asio::read(socket, asio::dynamic_buffer(received),
               asio::transfer_exactly(body.size() - received.size()));
  }
  EXPECT_TRUE(received == body) << "the echoed body differs from what was sent";
  asio::write(socket, asio::buffer(std::string_view("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")));
  std::string next;
  asio::read_until(socket, asio::dynamic_buffer(next), "hello");
  EXPECT_EQ(next.rfind("HTTP/1.1 200", 0), 0u) << next;
  // Counted once the write has completed, which may be just after the client has read.
  EXPECT_TRUE(coromesh::testing::wait_until([&] { return observer.statuses().size() == 2; }, 5s));
  EXPECT_EQ(observer.statuses(), (std::vector<unsigned>{200, 200}));
}

}  // namespace
}  // namespace coromesh::http::testing
