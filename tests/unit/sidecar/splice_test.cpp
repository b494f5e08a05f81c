// The pumps between two loopback TCP connections (plain on both sides: the TLS side is
// exercised by the integration tests against Consul-issued certificates).
#include <gtest/gtest.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "src/connection_registry.hpp"
#include "src/pump.hpp"

namespace coromesh::sidecar {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

// A connected pair of loopback sockets.
std::pair<TcpSocket, TcpSocket> socket_pair(asio::io_context& io) {
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  TcpSocket client(io), server(io);
  client.connect(acceptor.local_endpoint());
  acceptor.accept(server);
  return {std::move(client), std::move(server)};
}

// client <-> [a | splice | b] <-> server
struct Spliced {
  asio::io_context io;
  std::pair<TcpSocket, TcpSocket> left = socket_pair(io);
  std::pair<TcpSocket, TcpSocket> right = socket_pair(io);
  TcpSocket& client = left.first;
  TcpSocket& server = right.second;
  bool done = false;

  void start(std::chrono::nanoseconds idle) {
    asio::co_spawn(
        io,
        [this, idle]() -> asio::awaitable<void> {
          co_await splice(left.second, right.first, idle, nullptr, nullptr);
          left.second.close();
          right.first.close();
          done = true;
        },
        asio::detached);
  }
};

TEST(Splice, CarriesBothDirectionsAndPassesEachHalfCloseOn) {
  Spliced s;
  s.start(10s);
  std::string request(200'000, 'q'), at_server, at_client;
  asio::co_spawn(
      s.io,
      [&]() -> asio::awaitable<void> {
        co_await asio::async_write(s.client, asio::buffer(request), asio::use_awaitable);
        s.client.shutdown(tcp::socket::shutdown_send);  // the request is complete
        auto [ec, n] = co_await asio::async_read(s.client, asio::dynamic_buffer(at_client),
                                                 asio::as_tuple(asio::use_awaitable));
        EXPECT_EQ(ec, asio::error::eof);
      },
      asio::detached);
  asio::co_spawn(
      s.io,
      [&]() -> asio::awaitable<void> {
        // The server sees the end of the request, then still answers: half-close.
        auto [ec, n] = co_await asio::async_read(s.server, asio::dynamic_buffer(at_server),
                                                 asio::as_tuple(asio::use_awaitable));
        EXPECT_EQ(ec, asio::error::eof);
        co_await asio::async_write(s.server, asio::buffer("answer:" + std::to_string(n)),
                                   asio::use_awaitable);
        s.server.shutdown(tcp::socket::shutdown_send);
      },
      asio::detached);
  s.io.run_for(5s);
  EXPECT_EQ(at_server, request);
  EXPECT_EQ(at_client, "answer:200000");
  EXPECT_TRUE(s.done) << "both directions ended: the splice returned";
}

// Request/response traffic, as a keep-alive connection carries it: each read empties the
// source, so each pump waits for the next message holding no buffer. Every message must
// still arrive, including one sent while the pump's last write was in flight.
TEST(Splice, PingPongTrafficArrivesWholeAndAnIdleConnectionHoldsNoPumpBuffer) {
  Spliced s;
  s.start(10s);
  ASSERT_EQ(pump_buffers_held(), 0U);
  constexpr int kRoundTrips = 200;
  int answered = 0;
  std::size_t held_while_idle = 99;
  asio::co_spawn(
      s.io,
      [&]() -> asio::awaitable<void> {
        // The server echoes what it reads, message by message.
        for (;;) {
          std::array<char, 64> chunk{};
          auto [ec, n] = co_await s.server.async_read_some(asio::buffer(chunk),
                                                           asio::as_tuple(asio::use_awaitable));
          if (ec) {
            co_return;
          }
          co_await asio::async_write(s.server, asio::buffer(chunk.data(), n), asio::use_awaitable);
        }
      },
      asio::detached);
  asio::co_spawn(
      s.io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < kRoundTrips; ++i) {
          const std::string message = "ping " + std::to_string(i) + ";";
          co_await asio::async_write(s.client, asio::buffer(message), asio::use_awaitable);
          std::string echoed(message.size(), '\0');
          co_await asio::async_read(s.client, asio::buffer(echoed), asio::use_awaitable);
          EXPECT_EQ(echoed, message);
          ++answered;
        }
        asio::steady_timer settle(s.io, 50ms);
        co_await settle.async_wait(asio::use_awaitable);
        held_while_idle = pump_buffers_held();
        s.io.stop();
      },
      asio::detached);
  s.io.run_for(10s);
  EXPECT_EQ(answered, kRoundTrips);
  EXPECT_EQ(held_while_idle, 0U) << "an idle spliced connection still holds pump buffers";
  EXPECT_FALSE(s.done) << "the splice ended: the test measured nothing";
}

TEST(Splice, AnIdleConnectionIsClosedAfterTheIdleTimeout) {
  Spliced s;
  s.start(200ms);
  s.io.run_for(2s);
  EXPECT_TRUE(s.done);
  char byte;
  boost::system::error_code ec;
  s.client.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, asio::error::eof) << "the client sees the connection closed";
}

TEST(Splice, AResetOnOneSideEndsBothDirections) {
  Spliced s;
  s.start(10s);
  s.server.set_option(asio::socket_base::linger(true, 0));
  s.server.close();  // RST
  s.io.run_for(2s);
  EXPECT_TRUE(s.done);
}

TEST(ConnectionRegistry, CutOffClosesWhatIsStillOpenOnItsOwnExecutor) {
  asio::io_context io;
  ConnectionRegistry registry;
  auto [a, b] = socket_pair(io);
  bool ended = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto ticket = registry.enter(io.get_executor(), [&] { b.close(); });
        char byte;
        auto [ec, n] =
            co_await b.async_read_some(asio::buffer(&byte, 1), asio::as_tuple(asio::use_awaitable));
        EXPECT_EQ(ec, asio::error::operation_aborted);
        ended = true;
      },
      asio::detached);
  io.run_for(50ms);
  EXPECT_EQ(registry.active(), 1u);
  auto drained = asio::co_spawn(io, registry.drain(std::chrono::steady_clock::now() + 100ms),
                                asio::use_future);
  io.run_for(2s);
  EXPECT_EQ(drained.get(), 1u) << "one connection was cut off";
  EXPECT_TRUE(ended);
  EXPECT_EQ(registry.active(), 0u);
}

// An upstream removed from the registration drains its own connections and no other
// listener's, each on its own executor; one that ends before its drain runs is skipped,
// and one without a drain (tcp mode) is left alone.
TEST(ConnectionRegistry, BeginDrainOfAListenerDrainsItsOwnConnectionsOnly) {
  asio::io_context io;
  ConnectionRegistry registry;
  const int removed = 0, kept = 0;  // two listeners, by address
  std::map<std::string, int> drains;
  const auto enter = [&](const int* listener, std::string name) {
    return registry.enter(
        io.get_executor(), [] {}, [&drains, name] { ++drains[name]; }, listener);
  };
  const auto waiting = enter(&removed, "removed");
  const auto other = enter(&kept, "kept");
  auto ending = enter(&removed, "removed-then-ended");
  const auto tcp = registry.enter(
      io.get_executor(), [] {}, {}, &removed);
  registry.begin_drain(&removed);
  ending.reset();  // ends while its drain is posted, before it runs
  io.run();
  EXPECT_EQ(drains, (std::map<std::string, int>{{"removed", 1}})) << "only its own, still open";
  EXPECT_EQ(registry.active(), 3u) << "a drain is a word to the connection, not a close";

  registry.begin_drain();  // the whole sidecar's drain still reaches every connection
  io.restart();
  io.run();
  EXPECT_EQ(drains, (std::map<std::string, int>{{"removed", 2}, {"kept", 1}}));
}

// A connection accepted just before the listener closed enters after the drain began
// (its coroutine was posted to its io thread): it is drained as the others were, and
// after the cut-off closed at once, instead of serving on until the io threads stop.
TEST(ConnectionRegistry, AConnectionEnteringAfterTheDrainBeganIsEndedAsTheOthersWere) {
  asio::io_context io;
  ConnectionRegistry registry;
  int drained = 0, closed = 0;
  registry.begin_drain();
  const auto late = registry.enter(
      io.get_executor(), [&] { ++closed; }, [&] { ++drained; });
  EXPECT_EQ(drained, 0) << "posted to its executor, never run inside enter()";
  io.run();
  EXPECT_EQ(drained, 1);
  EXPECT_EQ(registry.cut_off(), 1u);
  const auto later = registry.enter(
      io.get_executor(), [&] { ++closed; }, [&] { ++drained; });
  io.restart();
  io.run();
  EXPECT_EQ(closed, 2) << "the one cut off, and the one entering after the cut-off";
}

// drain() counts a connection from its accept on: one whose coroutine has not entered
// yet is waited for, not left to be torn down with the io threads.
TEST(ConnectionRegistry, DrainWaitsForAConnectionAcceptedButNotYetEntered) {
  asio::io_context io;
  ConnectionRegistry registry;
  auto admission = std::make_optional(registry.admit());
  EXPECT_EQ(registry.active(), 1u);
  bool entered = false, drain_ended_before_the_entry = false;
  asio::steady_timer arrives(io, 100ms);
  std::unique_ptr<ConnectionRegistry::Ticket> ticket;
  arrives.async_wait([&](auto) {
    ticket = registry.enter(
        io.get_executor(), [] {}, [&] { ticket.reset(); });
    admission->release();
    entered = true;
  });
  asio::co_spawn(io, registry.drain(std::chrono::steady_clock::now() + 5s),
                 [&](std::exception_ptr, std::size_t cut) {
                   drain_ended_before_the_entry = !entered;
                   EXPECT_EQ(cut, 0u) << "the late connection was drained, not cut off";
                 });
  registry.begin_drain();
  io.run();
  EXPECT_FALSE(drain_ended_before_the_entry);
  EXPECT_EQ(registry.active(), 0u);
  admission.reset();
  EXPECT_EQ(registry.active(), 0u) << "a released admission counts once";
}

}  // namespace
}  // namespace coromesh::sidecar
