// A caller that hangs up while a declared operation's handler runs, against a real
// in-process service on loopback: the handler is cancelled (its own outgoing call with
// it), and every figure of the exchange says so once: the QoS chain counts the call
// `cancelled` (not `ok`), the HTTP metric 499. A handler that ignores the cancellation
// runs to its end, and is counted the same: its answer reached nobody.
//
// `waiter` serves wait_long (sleeps a minute, behind a preemptive timeout and a
// bulkhead), wait_stubborn (sleeps 300 ms, ignoring its cancellation) and relay_hung
// (calls `ping` at a callee that never answers).

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <coromesh/service/service.hpp>
#include <functional>
#include <memory>
#include <string>

#include "http_fetch.hpp"
#include "hung_server.hpp"
#include "in_process_service.hpp"
#include "test_env.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using coromesh::testing::wait_until;

struct Nap {
  std::int64_t value = 0;
};
BOOST_DESCRIBE_STRUCT(Nap, (), (value))

COROMESH_OPERATION(wait_long, GET, "/api/v1/wait_long", Nap, Nap,
                   QOS(qos::timeout{60s}, qos::bulkhead{4}));
COROMESH_OPERATION(wait_stubborn, GET, "/api/v1/wait_stubborn", Nap, Nap);
COROMESH_OPERATION(relay_hung, GET, "/api/v1/relay_hung", Nap, Nap);
COROMESH_OPERATION(ping, GET, "/api/v1/ping", Nap, Nap,
                   CLIENT_QOS(qos::timeout{.per_attempt = 60s,
                                           .mode = qos::TimeoutMode::deadline}));

using coromesh::testing::in_process;

class CallerHangUp : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = in_process("waiter");
    // The server starts watching a client once its handler has run into the connection's
    // watchdog, whose period is a quarter of the shortest read timeout: 50 ms here, so
    // that even the 300 ms stubborn handler is watched when its caller hangs up.
    config.http.header_read_timeout = std::chrono::milliseconds(200);
    waiter = std::make_unique<coromesh::Service>(std::move(config));
    auto& hung_client = waiter->client(ping, {.host = hung.host(), .port = hung.port()});
    waiter->serve(wait_long, [this](Nap in) -> asio::awaitable<Nap> {
      ++started;
      asio::steady_timer timer(co_await asio::this_coro::executor, 60s);
      auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        ++cancelled;
        throw boost::system::system_error(ec);
      }
      co_return in;
    });
    waiter->serve(wait_stubborn, [this](Nap in) -> asio::awaitable<Nap> {
      ++started;
      asio::steady_timer timer(co_await asio::this_coro::executor, 300ms);
      // No cancellation slot: this wait ignores the caller's going away.
      co_await timer.async_wait(asio::bind_cancellation_slot(asio::cancellation_slot(),
                                                             asio::as_tuple(asio::use_awaitable)));
      ++finished;
      co_return in;
    });
    waiter->serve(relay_hung, [this, &hung_client](Nap in) -> asio::awaitable<Nap> {
      ++started;
      co_return co_await hung_client.execute(in);
    });
    waiter->start();
  }
  void TearDown() override {
    waiter->request_shutdown();
    waiter->wait();
  }

  // Sends `target` on a connection of its own, waits until its handler has started (and
  // `ready` holds), then closes the connection.
  void hang_up_during(
      const std::string& target, const std::function<bool()>& ready = [] { return true; }) {
    asio::io_context ioc;
    asio::ip::tcp::socket socket(ioc);
    socket.connect({asio::ip::make_address("127.0.0.1"), waiter->port()});
    asio::write(socket, asio::buffer("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(wait_until([&] { return started.load() == 1 && ready(); }, 5s));
    socket.close();
  }

  std::string metrics() {
    return coromesh::testing::http_fetch("127.0.0.1", waiter->port(), "/metrics").body;
  }
  // Waits (5 s at most) until the metrics show `line`.
  bool metrics_show(const std::string& line) {
    return wait_until([&] { return metrics().find(line) != std::string::npos; }, 5s);
  }
  static std::string calls(const std::string& operation, const std::string& result,
                           const std::string& side, int count) {
    return "coromesh_qos_calls_total{operation=\"" + operation + "\",result=\"" + result +
           "\",side=\"" + side + "\"} " + std::to_string(count) + "\n";
  }
  static std::string requests(const std::string& operation, const std::string& code, int count) {
    return "coromesh_http_server_requests_total{code=\"" + code + "\",operation=\"" + operation +
           "\",service=\"waiter\"} " + std::to_string(count) + "\n";
  }

  const coromesh::testing::HungServer hung;
  std::unique_ptr<coromesh::Service> waiter;
  std::atomic<int> started{0}, cancelled{0}, finished{0};
};

TEST_F(CallerHangUp, AHandlerWhoseCallerHangsUpIsCancelledAndCountedSoByEveryMetric) {
  hang_up_during("/api/v1/wait_long?value=1");
  EXPECT_TRUE(wait_until([&] { return cancelled.load() == 1; }, 5s))
      << "the handler slept on for a caller that had gone";
  EXPECT_TRUE(metrics_show(requests("wait_long", "499", 1))) << metrics();
  const auto text = metrics();
  EXPECT_NE(text.find(calls("wait_long", "cancelled", "server", 1)), std::string::npos) << text;
  EXPECT_NE(text.find(calls("wait_long", "ok", "server", 0)), std::string::npos) << text;
  EXPECT_NE(text.find(calls("wait_long", "error", "server", 0)), std::string::npos) << text;
}

// Its answer reached nobody: counted `cancelled` by the chain as 499 by the server, not
// `ok` beside a 499.
TEST_F(CallerHangUp, AHandlerThatIgnoresTheHangUpIsCountedCancelledWhenItEnds) {
  hang_up_during("/api/v1/wait_stubborn?value=1");
  EXPECT_TRUE(metrics_show(requests("wait_stubborn", "499", 1))) << metrics();
  EXPECT_EQ(finished.load(), 1) << "it ran to its end";
  const auto text = metrics();
  EXPECT_NE(text.find(calls("wait_stubborn", "cancelled", "server", 1)), std::string::npos) << text;
  EXPECT_NE(text.find(calls("wait_stubborn", "ok", "server", 0)), std::string::npos) << text;
}

// The handler's own call is cancelled with it: its connection to the callee closed, not
// held until the call's minute-long deadline.
TEST_F(CallerHangUp, TheHandlersOwnCallIsCancelledWithIt) {
  // Once the call is in flight: the callee has its connection.
  hang_up_during("/api/v1/relay_hung?value=1", [&] { return hung.accepted() == 1; });
  EXPECT_TRUE(wait_until([&] { return hung.open() == 0; }, 5s))
      << "the call to the callee went on after its caller had gone";
  EXPECT_TRUE(metrics_show(requests("relay_hung", "499", 1))) << metrics();
  const auto text = metrics();
  EXPECT_NE(text.find(calls("relay_hung", "cancelled", "server", 1)), std::string::npos) << text;
  EXPECT_NE(text.find(calls("ping", "cancelled", "client", 1)), std::string::npos) << text;
}

}  // namespace
