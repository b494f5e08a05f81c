// http::Server's accept loop takes a burst of connections from the backlog in one batch
// (BENCHMARKS.md, http at 1,000 connections), and the batch keeps the connection limit.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <vector>

#include "server_fixture.hpp"

namespace coromesh::http::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Records how many connections were open when the first request began.
class FirstRequestObserver : public ServerObserver {
 public:
  void request_started(const Route*) override {
    if (!seen_.exchange(true)) {
      open_at_first_request.store(server->active_connections());
    }
  }
  void request_finished(const Route*, unsigned, std::chrono::steady_clock::duration) override {}

  Server* server = nullptr;
  std::atomic<std::size_t> open_at_first_request{0};

 private:
  std::atomic<bool> seen_{false};
};

// `count` connections that have each sent `GET /hello`, made while the server's only io
// thread is held, so that all of them wait in the listen backlog. Returns once the
// thread is released.
std::vector<tcp::socket> connect_while_blocked(ServerFixture& fx, asio::io_context& io,
                                               std::size_t count) {
  std::promise<void> release;
  std::promise<void> holding;
  asio::post(fx.pool().context(0), [&holding, gate = release.get_future()] {
    holding.set_value();
    gate.wait();
  });
  holding.get_future().wait();
  std::vector<tcp::socket> sockets;
  const tcp::endpoint server(asio::ip::make_address("127.0.0.1"), fx.port());
  for (std::size_t i = 0; i < count; ++i) {
    auto& socket = sockets.emplace_back(io);
    socket.connect(server);  // the kernel completes the handshake; nobody accepts yet
    const timeval timeout{10, 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    asio::write(socket, asio::buffer(std::string_view("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")));
  }
  release.set_value();
  return sockets;
}

// The start of the answer on `socket` (status line onwards), or "" on timeout or EOF.
std::string read_answer(tcp::socket& socket) {
  std::string answer;
  char chunk[512];
  boost::system::error_code ec;
  while (answer.find("\r\n\r\n") == std::string::npos) {
    auto n = socket.read_some(asio::buffer(chunk), ec);
    if (ec) {
      break;
    }
    answer.append(chunk, n);
  }
  return answer;
}

TEST(HttpServerAccept, BurstInTheBacklogIsAdmittedBeforeAnyRequestIsServed) {
  constexpr std::size_t kBurst = 40;  // under the batch size (kAcceptBatch, 64)
  FirstRequestObserver observer;
  ServerFixture fx({}, 1, &observer);
  observer.server = &fx.server();
  asio::io_context io;
  auto sockets = connect_while_blocked(fx, io, kBurst);
  for (auto& socket : sockets) {
    EXPECT_TRUE(read_answer(socket).starts_with("HTTP/1.1 200 "));
  }
  // One asynchronous accept, then the rest of the backlog in the same batch: every
  // connection was open before the first request's handler ran. With one accept per
  // trip through the io_context's queue, the first connection's request was served
  // after only a couple of accepts.
  EXPECT_EQ(observer.open_at_first_request.load(), kBurst);
}

TEST(HttpServerAccept, BatchKeepsTheConnectionLimit) {
  ServerLimits limits;
  limits.max_connections = 3;
  ServerFixture fx(limits);
  asio::io_context io;
  auto sockets = connect_while_blocked(fx, io, 8);
  int served = 0;
  int refused = 0;
  for (auto& socket : sockets) {
    auto answer = read_answer(socket);
    served += answer.starts_with("HTTP/1.1 200 ") ? 1 : 0;
    refused += answer.starts_with("HTTP/1.1 503 ") ? 1 : 0;
  }
  EXPECT_EQ(served, 3);
  EXPECT_EQ(refused, 5);
}

}  // namespace
}  // namespace coromesh::http::testing
