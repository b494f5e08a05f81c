// beast-raw: the peer of the http benchmark suite that shows what Boost.Beast with
// C++20 coroutines costs without coromesh: one accept loop, one coroutine per
// connection, keep-alive, `GET <anything>` -> 200 "hello". No routing, metrics, QoS or
// logging: the distance between this and hello-svc is what the framework costs.
//
//   beast_raw_server --port N [--threads N=1]
//
// Listens on 127.0.0.1; SIGINT/SIGTERM stop it. Each thread runs its own io_context and
// its own acceptor on the port (SO_REUSEPORT: the kernel spreads the connections), as
// nginx's workers do: no state is shared between threads.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

asio::awaitable<void> serve_connection(tcp::socket stream) {
  boost::beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> request;
    auto [read_error, read_bytes] =
        co_await http::async_read(stream, buffer, request, asio::as_tuple(asio::use_awaitable));
    if (read_error)
      co_return;  // the client closed, or sent something that is not HTTP
    http::response<http::string_body> response{http::status::ok, request.version()};
    response.set(http::field::content_type, "text/plain");
    response.keep_alive(request.keep_alive());
    response.body() = "hello";
    response.prepare_payload();
    auto [write_error, written] =
        co_await http::async_write(stream, response, asio::as_tuple(asio::use_awaitable));
    if (write_error || !response.keep_alive())
      co_return;
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor acceptor) {
  for (;;) {
    auto [error, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (error == asio::error::operation_aborted)
      co_return;
    if (error)
      continue;  // e.g. EMFILE: the next accept may succeed
    socket.set_option(tcp::no_delay(true));
    asio::co_spawn(acceptor.get_executor(), serve_connection(std::move(socket)), asio::detached);
  }
}

int fail_usage(std::string_view why) {
  std::cerr << "beast_raw_server: " << why << "\nusage: beast_raw_server --port N [--threads N]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  int threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--port" && value > 0 && value < 65536) {
      port = static_cast<unsigned short>(value);
    } else if (flag == "--threads" && value > 0 && value <= 64) {
      threads = value;
    } else {
      return fail_usage("bad argument " + std::string(flag) + " " + argv[i + 1]);
    }
  }
  if (port == 0 || argc % 2 == 0)
    return fail_usage("--port is required");

  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  for (int i = 0; i < threads; ++i) {
    auto& io = *contexts.emplace_back(std::make_unique<asio::io_context>(1));
    tcp::acceptor acceptor(io);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.set_option(ReusePort(true));
    acceptor.bind(endpoint);
    acceptor.listen(4096);
    asio::co_spawn(io, accept_loop(std::move(acceptor)), asio::detached);
  }

  asio::signal_set signals(*contexts.front(), SIGINT, SIGTERM);
  signals.async_wait([&contexts](const boost::system::error_code&, int) {
    for (auto& io : contexts)
      io->stop();
  });

  std::vector<std::thread> workers;
  for (int i = 1; i < threads; ++i) {
    workers.emplace_back([&io = *contexts[static_cast<std::size_t>(i)]] { io.run(); });
  }
  contexts.front()->run();
  for (auto& worker : workers)
    worker.join();
  return 0;
}
