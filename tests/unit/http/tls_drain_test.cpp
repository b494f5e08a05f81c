// A drain and the TLS handshakes (and peer authorizations) under way when it begins: one
// the drain interrupts is nobody's failure, one that fails by itself meanwhile is counted
// and logged like any other (tls_fixture.hpp).

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <string>
#include <string_view>

#include "coromesh/http/tls.hpp"
#include "coromesh/log/logger.hpp"
#include "tls_fixture.hpp"

namespace coromesh::http::testing {
namespace {

using tcp = asio::ip::tcp;

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

// Holds the server's only thread until the returned promise is set: what the test does
// meanwhile reaches the connection in one go when it is released.
std::promise<void> hold(asio::any_io_executor executor) {
  std::promise<void> release;
  std::promise<void> held;
  asio::post(executor, [&held, released = release.get_future()] {
    held.set_value();
    released.wait();
  });
  held.get_future().wait();
  return release;
}

// Was: the handshake's failure went unrecorded because the connection was `closing` (set
// from the drain's start), though the drain had not touched it: the client's bytes had
// arrived, so stop_accepting left it to be answered.
TEST_F(HttpTls, AHandshakeThatFailsByItselfDuringADrainIsCountedAndLogged) {
  start_server();
  tcp::socket socket(ioc_);
  socket.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
  // The server's handshake now waits for a ClientHello.
  ASSERT_TRUE(eventually([&] { return server_->active_connections() == 1; }));
  const auto lines = logged_during([&] {
    auto release = hold(pool_.executor(0));
    // Plain HTTP in place of a ClientHello: a handshake that fails by itself.
    asio::write(socket, asio::buffer(std::string_view("GET /whoami HTTP/1.1\r\n\r\n")));
    server_->stop_accepting();  // the connection is `closing` before it reads the bytes
    release.set_value();
    EXPECT_TRUE(eventually([&] { return server_->tls_counters().failed == 1; }))
        << "failed=" << server_->tls_counters().failed;
    EXPECT_TRUE(eventually([&] { return server_->active_connections() == 0; }));
  });
  ASSERT_EQ(handshakes_.outcomes().size(), 1u);
  EXPECT_EQ(handshakes_.outcomes()[0].first, TlsHandshakeResult::failed);
  EXPECT_NE(lines.find("event=http.tls.handshake result=failed"), std::string::npos) << lines;
}

// The other side: a handshake waiting for its client when the drain begins is ended by
// the drain, and that is nobody's failure.
TEST_F(HttpTls, AHandshakeTheDrainInterruptsIsNotCounted) {
  start_server();
  tcp::socket socket(ioc_);
  socket.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
  ASSERT_TRUE(eventually([&] { return server_->active_connections() == 1; }));
  const auto lines = logged_during([&] {
    server_->stop_accepting();
    EXPECT_TRUE(eventually([&] { return server_->active_connections() == 0; }));
  });
  auto counters = server_->tls_counters();
  EXPECT_EQ(counters.failed + counters.refused + counters.timed_out + counters.accepted, 0u);
  EXPECT_TRUE(handshakes_.outcomes().empty());
  EXPECT_EQ(lines.find("http.tls.handshake"), std::string::npos) << lines;
}

// An authorization that waits until it is cancelled: by the test (a cause of its own, as
// when an authorizer's own request is cancelled) or by the drain's last step.
struct HungAuthorization {
  std::promise<void> started;
  std::atomic<asio::steady_timer*> timer{nullptr};

  PeerAuthorization step() {
    return [this](std::string, SSL*) -> asio::awaitable<PeerVerdict> {
      asio::steady_timer never(co_await asio::this_coro::executor,
                               asio::steady_timer::time_point::max());
      timer = &never;
      started.set_value();
      co_await never.async_wait(asio::use_awaitable);  // operation_aborted when cancelled
      co_return PeerVerdict::accept("never");
    };
  }
};

// Was: an authorization that ended in operation_aborted was taken for the drain's
// cancellation whatever had cancelled it, and the connection closed without a count or
// a line. A drain had begun here, but had not touched the authorization (it waits on no
// socket; only the drain's last step cancels it): its cancellation is its own failure.
TEST_F(HttpTls, AnAuthorizationCancelledByItselfDuringADrainIsCountedAndLogged) {
  HungAuthorization hung;
  authorize_ = hung.step();
  start_server();
  auto call = std::async(std::launch::async, [&] {
    Client client(ioc_.get_executor());
    try {
      return whoami(client, destination(client_context(ca_.leaf("web")))).result_int();
    } catch (const ClientError&) {
      return 0U;
    }
  });
  hung.started.get_future().wait();
  const auto lines = logged_during([&] {
    server_->stop_accepting();
    asio::post(pool_.executor(0), [&hung] { hung.timer.load()->cancel(); });
    EXPECT_TRUE(eventually([&] { return server_->tls_counters().refused == 1; }))
        << "refused=" << server_->tls_counters().refused;
    EXPECT_TRUE(eventually([&] { return server_->active_connections() == 0; }));
  });
  EXPECT_EQ(call.get(), 0U) << "refused without an answer";
  ASSERT_EQ(handshakes_.outcomes().size(), 1U);
  EXPECT_EQ(handshakes_.outcomes()[0].first, TlsHandshakeResult::refused);
  EXPECT_NE(lines.find("event=http.tls.authorization.exception"), std::string::npos) << lines;
}

// The other side: an authorization the drain's last step cancels (its grace ran out) is
// nobody's failure.
TEST_F(HttpTls, AnAuthorizationTheDrainCancelsIsNotCounted) {
  HungAuthorization hung;
  authorize_ = hung.step();
  start_server();
  auto call = std::async(std::launch::async, [&] {
    Client client(ioc_.get_executor());
    try {
      return whoami(client, destination(client_context(ca_.leaf("web")))).result_int();
    } catch (const ClientError&) {
      return 0U;
    }
  });
  hung.started.get_future().wait();
  const auto lines = logged_during([&] {
    server_->stop_accepting();
    asio::co_spawn(pool_.executor(0), server_->drain(50ms), asio::use_future).get();
    EXPECT_TRUE(eventually([&] { return server_->active_connections() == 0; }));
  });
  EXPECT_EQ(call.get(), 0U);
  auto counters = server_->tls_counters();
  EXPECT_EQ(counters.failed + counters.refused + counters.timed_out + counters.accepted, 0U);
  EXPECT_TRUE(handshakes_.outcomes().empty());
  EXPECT_EQ(lines.find("http.tls."), std::string::npos) << lines;
}

}  // namespace
}  // namespace coromesh::http::testing
