// http::Server over mutual TLS once the handshake is done: certificate rotation, the
// server's limits, and a drain's clean close (tls_fixture.hpp).

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "coromesh/http/tls.hpp"
#include "tls_fixture.hpp"

namespace coromesh::http::testing {
namespace {

using tcp = asio::ip::tcp;
namespace beast = boost::beast;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

TEST_F(HttpTls, RotatedCertificateServesNewConnectionsWhileOpenOnesKeepTheirs) {
  start_server();
  auto web_context = client_context(ca_.leaf("web"));
  Client before(ioc_.get_executor());
  auto to_api = destination(web_context);
  EXPECT_EQ(whoami(before, to_api).result(), Status::ok);
  const long first_serial = served_by_serial_;

  server_context_.set(server_context(ca_.leaf("api")));

  Client after(ioc_.get_executor());
  EXPECT_EQ(whoami(after, destination(web_context)).result(), Status::ok);
  EXPECT_NE(served_by_serial_, first_serial) << "a new connection still got the old certificate";

  // The keep-alive connection opened before the rotation carries on.
  EXPECT_EQ(whoami(before, to_api).body(), ca_.service_uri("web"));
  EXPECT_EQ(before.connections_opened(), 1u);
}

TEST_F(HttpTls, ConnectionsArePooledPerDestinationAndTlsIdentity) {
  start_server();
  Client client(ioc_.get_executor());
  auto as_web = destination(client_context(ca_.leaf("web")));
  auto as_worker = destination(client_context(ca_.leaf("worker")));
  std::const_pointer_cast<ClientTls>(as_worker.tls)->pool_key = "api as worker";
  EXPECT_EQ(whoami(client, as_web).body(), ca_.service_uri("web"));
  EXPECT_EQ(whoami(client, as_worker).body(), ca_.service_uri("worker"));
  EXPECT_EQ(client.connections_opened(), 2u);
  // Each identity finds its own parked connection again.
  EXPECT_EQ(whoami(client, as_web).body(), ca_.service_uri("web"));
  EXPECT_EQ(whoami(client, as_worker).body(), ca_.service_uri("worker"));
  EXPECT_EQ(client.connections_opened(), 2u);
}

// Sends `bytes` over a fresh TLS connection and returns everything read until the server
// closes (at most 10 s).
asio::awaitable<std::string> tls_exchange(std::uint16_t port, std::shared_ptr<ssl::context> context,
                                          std::string bytes) {
  auto executor = co_await asio::this_coro::executor;
  ssl::stream<tcp::socket> stream(executor, *context);
  co_await stream.next_layer().async_connect({asio::ip::make_address("127.0.0.1"), port},
                                             asio::use_awaitable);
  co_await stream.async_handshake(ssl::stream_base::client, asio::use_awaitable);
  co_await asio::async_write(stream, asio::buffer(bytes), asio::use_awaitable);
  std::string answer;
  asio::steady_timer limit(executor, 10s);
  for (;;) {
    char chunk[4096];
    auto done = co_await (stream.async_read_some(asio::buffer(chunk), use_tuple) ||
                          limit.async_wait(use_tuple));
    if (done.index() == 1) {
      co_return answer + "<still open after 10 s>";
    }
    auto [ec, n] = std::get<0>(done);
    answer.append(chunk, n);
    if (ec) {
      co_return answer;
    }
  }
}

TEST_F(HttpTls, ServerLimitsApplyOverTls) {
  start_server();
  auto context = client_context(ca_.leaf("web"));
  std::string huge_header =
      "GET /whoami HTTP/1.1\r\nHost: api\r\nX-Big: " + std::string(16 * 1024, 'x') + "\r\n\r\n";
  auto answer = run(ioc_, tls_exchange(server_->port(), context, huge_header));
  EXPECT_EQ(answer.rfind("HTTP/1.1 431 ", 0), 0u) << answer.substr(0, 200);

  auto pipelined = run(ioc_, tls_exchange(server_->port(), context,
                                          "GET /whoami HTTP/1.1\r\nHost: api\r\n\r\n"
                                          "GET /nowhere HTTP/1.1\r\nHost: api\r\n"
                                          "Connection: close\r\n\r\n"));
  EXPECT_NE(pipelined.find(ca_.service_uri("web")), std::string::npos) << pipelined;
  EXPECT_NE(pipelined.find("HTTP/1.1 404 "), std::string::npos) << pipelined;
}

TEST_F(HttpTls, DrainEndsAnIdleTlsConnectionWithCloseNotify) {
  start_server();
  auto context = client_context(ca_.leaf("web"));
  ssl::stream<tcp::socket> stream(ioc_, *context);
  auto status = run(ioc_, [&]() -> asio::awaitable<unsigned> {
    co_await stream.next_layer().async_connect(
        {asio::ip::make_address("127.0.0.1"), server_->port()}, asio::use_awaitable);
    co_await stream.async_handshake(ssl::stream_base::client, asio::use_awaitable);
    Request request{Verb::get, "/whoami", 11};
    request.set(Field::host, "api");
    co_await boost::beast::http::async_write(stream, request, asio::use_awaitable);
    boost::beast::flat_buffer buffer;
    Response response;
    co_await boost::beast::http::async_read(stream, buffer, response, asio::use_awaitable);
    co_return response.result_int();
  }());
  ASSERT_EQ(status, 200u);
  ASSERT_EQ(server_->active_connections(), 1u);

  server_->stop_accepting();
  auto end_of_session = run(ioc_, [&]() -> asio::awaitable<boost::system::error_code> {
    char byte = 0;
    asio::steady_timer limit(ioc_, 10s);
    auto done = co_await (stream.async_read_some(asio::buffer(&byte, 1), use_tuple) ||
                          limit.async_wait(use_tuple));
    if (done.index() == 1) {
      co_return asio::error::timed_out;
    }
    auto [ec, n] = std::get<0>(done);
    co_await stream.async_shutdown(use_tuple);  // answer the close_notify
    co_return ec;
  }());
  // eof is how Asio reports a close_notify; a bare TCP close would be stream_truncated.
  EXPECT_EQ(end_of_session, asio::error::eof) << end_of_session.message();
  EXPECT_TRUE(eventually([&] { return server_->active_connections() == 0; }));
}

// A client that ends its TLS session (close_notify, then its socket closed) while its
// request is handled has gone, as over plain TCP: counted 499, not as an answer served.
TEST_F(HttpTls, AClientThatEndsItsSessionMidRequestIsCounted499) {
  // A watchdog period of 50 ms (a quarter of the header timeout): the 300 ms handler is
  // watched for its client's hang-up, as every handler that runs into a period is.
  server_limits_.header_timeout = 200ms;
  start_server();
  auto context = client_context(ca_.leaf("web"));
  ssl::stream<tcp::socket> stream(ioc_, *context);
  ASSERT_TRUE(run(ioc_, [&]() -> asio::awaitable<bool> {
    co_await stream.next_layer().async_connect(
        {asio::ip::make_address("127.0.0.1"), server_->port()}, asio::use_awaitable);
    co_await stream.async_handshake(ssl::stream_base::client, asio::use_awaitable);
    Request request{Verb::get, "/slow", 11};
    request.set(Field::host, "api");
    co_await boost::beast::http::async_write(stream, request, asio::use_awaitable);
    co_return true;
  }()));
  ASSERT_TRUE(eventually([&] { return slow_started_.load() == 1; }));
  // The client gives up: close_notify, then (not waiting long for the server's, which a
  // server busy with the request does not send) the socket.
  ASSERT_TRUE(run(ioc_, [&]() -> asio::awaitable<bool> {
    asio::steady_timer patience(ioc_, 100ms);
    co_await (stream.async_shutdown(use_tuple) || patience.async_wait(use_tuple));
    co_return true;
  }()));
  stream.next_layer().close();
  ASSERT_TRUE(eventually([&] { return !handshakes_.statuses().empty(); }));
  EXPECT_EQ(handshakes_.statuses(), std::vector<unsigned>{kClientClosedRequest});
}

// A callee that writes a response nobody asked for right behind the real one (a bug, or
// a server confused about which request it answers). Over plain TCP such bytes show in
// the client's read buffer or on the socket, and the connection is not reused. Over TLS
// a whole record of them can arrive with the answer's last one and wait inside the TLS
// layer, seen by neither: the connection was pooled and the next call on it was answered
// with the stale response, another call's.
TEST_F(HttpTls, BytesLeftInTheTlsLayerAfterAResponseKeepItsConnectionOutOfThePool) {
  auto context = server_context(ca_.leaf("api"));
  tcp::acceptor acceptor(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  int requests = 0;
  auto serve = [&](tcp::socket socket) -> asio::awaitable<void> {
    ssl::stream<tcp::socket> stream(std::move(socket), *context);
    auto [handshake_error] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
    if (handshake_error) {
      co_return;
    }
    beast::flat_buffer buffer;
    for (;;) {
      Request request;
      auto [read_error, n] = co_await beast::http::async_read(stream, buffer, request, use_tuple);
      if (read_error) {
        co_return;
      }
      const bool first = ++requests == 1;
      // Corked: the answer's record and the stray one leave in one segment, as they
      // would from a server writing both at once.
      const int cork = first ? 1 : 0;
      setsockopt(stream.next_layer().native_handle(), IPPROTO_TCP, TCP_CORK, &cork, sizeof cork);
      Response answer(Status::ok, 11);
      answer.body() = std::string(request.target());
      answer.prepare_payload();
      co_await beast::http::async_write(stream, answer, use_tuple);
      if (first) {
        Response stray(Status::ok, 11);
        stray.body() = "stray";
        stray.prepare_payload();
        co_await beast::http::async_write(stream, stray, use_tuple);
        const int uncork = 0;
        setsockopt(stream.next_layer().native_handle(), IPPROTO_TCP, TCP_CORK, &uncork,
                   sizeof uncork);
      }
    }
  };
  asio::co_spawn(
      ioc_,
      [&]() -> asio::awaitable<void> {
        for (;;) {
          auto [error, socket] = co_await acceptor.async_accept(use_tuple);
          if (error) {
            co_return;
          }
          asio::co_spawn(ioc_, serve(std::move(socket)), asio::detached);
        }
      },
      asio::detached);

  Client client(ioc_.get_executor());
  auto to_api =
      destination(client_context(ca_.leaf("web")), "api", acceptor.local_endpoint().port());
  std::string first;
  std::string second;
  bool done = false;
  asio::co_spawn(
      ioc_,
      [&]() -> asio::awaitable<void> {
        first = (co_await client.get(to_api, "/first", 5s)).body();
        second = (co_await client.get(to_api, "/second", 5s)).body();
      },
      [&](std::exception_ptr error) {
        done = true;
        ioc_.stop();
        if (error) {
          std::rethrow_exception(error);
        }
      });
  ioc_.run_for(10s);
  ASSERT_TRUE(done);
  EXPECT_EQ(first, "/first");
  EXPECT_EQ(second, "/second") << "the second call got the stray response of the first one";
  EXPECT_EQ(client.connections_opened(), 2u);
}

}  // namespace
}  // namespace coromesh::http::testing
