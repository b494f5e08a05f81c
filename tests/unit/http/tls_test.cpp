// http::Server and http::Client over real mutual TLS: certificates from a throwaway CA
// made in-process (tests/support/test_certificates), SPIFFE identities as Consul
// Connect issues them, loopback only.

#include "coromesh/http/tls.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <functional>
#include <mutex>
#include <thread>

#include "coromesh/http/client.hpp"
#include "coromesh/http/server.hpp"
#include "test_certificates.hpp"

namespace coromesh::http {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using coromesh::testing::CertificateAndKey;
using coromesh::testing::make_tls_context;
using coromesh::testing::peer_serial_number;
using coromesh::testing::peer_uri_san;
using coromesh::testing::TestCa;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Runs `task` on `ioc` (the test thread's) to completion; rethrows what it threw.
template <class T>
T run(asio::io_context& ioc, asio::awaitable<T> task) {
  std::optional<T> result;
  std::exception_ptr error;
  asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, T value) {
    error = e;
    if (!e) {
      result.emplace(std::move(value));
    }
  });
  ioc.restart();
  ioc.run();
  if (error) {
    std::rethrow_exception(error);
  }
  return std::move(*result);
}

// Waits (bounded) for something the server does after the client has seen its side.
bool eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 500 && !condition(); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

// The server's current context, replaceable while it serves (a certificate rotation).
class ContextSlot {
 public:
  void set(std::shared_ptr<ssl::context> context) {
    std::lock_guard lock(mutex_);
    current_ = std::move(context);
  }
  std::shared_ptr<ssl::context> get() const {
    std::lock_guard lock(mutex_);
    return current_;
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<ssl::context> current_;
};

class HttpTls : public ::testing::Test {
 protected:
  HttpTls() : api_leaf_(ca_.issue("api")), web_leaf_(ca_.issue("web")) {
    server_context_.set(make_tls_context(&api_leaf_, {ca_.certificate_pem()}));
    router_.add(Verb::get, "/whoami", "whoami",
                [](RequestContext& ctx) -> asio::awaitable<Response> {
                  Response response{Status::ok, 11};
                  response.body() = std::string(ctx.peer_identity);
                  co_return response;
                });
  }

  ~HttpTls() override {
    if (server_) {
      server_->stop_accepting();
      asio::co_spawn(pool_.executor(0), server_->drain(2s), asio::use_future).get();
      pool_.stop();
      pool_.join();
    }
  }

  // Connect's rule in miniature: the peer's identity is its SPIFFE ID, and the
  // intentions deny service "blocked".
  void start_server(std::chrono::milliseconds handshake_timeout = 5s) {
    server_ = std::make_unique<Server>(pool_, router_);
    ServerTls tls;
    tls.context = [this] { return server_context_.get(); };
    tls.handshake_timeout = handshake_timeout;
    tls.accept_peer = [this](SSL* session) {
      auto id = peer_uri_san(session);
      if (!id) {
        return PeerVerdict::refuse("no SPIFFE ID");
      }
      if (*id == ca_.spiffe_id("blocked")) {
        return PeerVerdict::refuse("service denied");
      }
      return PeerVerdict::accept(*id);
    };
    server_->enable_tls(std::move(tls));
    server_->listen("127.0.0.1", 0);
    server_->start();
    pool_.start();
  }

  // A destination that presents `identity` and accepts only a server naming `service`.
  // Port 0: the server's.
  Destination destination(std::shared_ptr<ssl::context> context, std::string service = "api",
                          std::uint16_t port = 0) {
    auto tls = std::make_shared<ClientTls>();
    tls->context = [context] { return context; };
    tls->server_name = service;
    tls->verify_peer = [this, expected = ca_.spiffe_id(service)](SSL* session) {
      served_by_serial_ = peer_serial_number(session);
      auto id = peer_uri_san(session);
      if (id != expected) {
        return PeerVerdict::refuse("certificate names " + id.value_or("no SPIFFE ID"));
      }
      return PeerVerdict::accept(*id);
    };
    return Destination{"127.0.0.1", port != 0 ? port : server_->port(), std::move(tls)};
  }

  Response whoami(Client& client, const Destination& to) {
    return run(ioc_, client.get(to, "/whoami", 5s));
  }

  // The ClientError a call ends with; fails the test if it succeeds.
  ClientError whoami_error(Client& client, const Destination& to) {
    try {
      auto response = whoami(client, to);
      ADD_FAILURE() << "the call succeeded: " << response.result_int() << " " << response.body();
    } catch (const ClientError& e) {
      return e;
    }
    return ClientError(ClientErrc::bad_response, "no error");
  }

  TestCa ca_;
  CertificateAndKey api_leaf_;
  CertificateAndKey web_leaf_;
  ContextSlot server_context_;
  runtime::IoPool pool_{1};
  Router router_;
  std::unique_ptr<Server> server_;
  asio::io_context ioc_;
  long served_by_serial_ = 0;  // the last server certificate a client's check saw
};

TEST_F(HttpTls, MutualTlsRequestReachesTheHandlerWithThePeerIdentity) {
  start_server();
  Client client(ioc_.get_executor());
  auto response =
      whoami(client, destination(make_tls_context(&web_leaf_, {ca_.certificate_pem()})));
  EXPECT_EQ(response.result(), Status::ok);
  EXPECT_EQ(response.body(), ca_.spiffe_id("web"));
  EXPECT_EQ(server_->tls_counters().accepted, 1u);
}

TEST_F(HttpTls, ClientsWithoutATrustedCertificateAreRefusedAndOthersStillServed) {
  start_server();
  TestCa other_ca;
  auto other_leaf = other_ca.issue("web");
  auto self_signed = coromesh::testing::self_signed_leaf(ca_.spiffe_id("web"));
  struct Case {
    const char* what;
    const CertificateAndKey* identity;
  };
  for (auto [what, identity] : {Case{"no certificate", nullptr}, Case{"self-signed", &self_signed},
                                Case{"another CA", &other_leaf}}) {
    SCOPED_TRACE(what);
    Client client(ioc_.get_executor());
    auto error =
        whoami_error(client, destination(make_tls_context(identity, {ca_.certificate_pem()})));
    EXPECT_EQ(error.code(), ClientErrc::tls_handshake) << error.what();
  }
  EXPECT_TRUE(eventually([&] { return server_->tls_counters().failed == 3; }));
  auto counters = server_->tls_counters();
  EXPECT_TRUE(counters.by_reason.count("peer did not return a certificate"))
      << counters.by_reason.size();
  EXPECT_TRUE(counters.by_reason.count("certificate verify failed")) << counters.by_reason.size();

  Client good(ioc_.get_executor());
  auto response = whoami(good, destination(make_tls_context(&web_leaf_, {ca_.certificate_pem()})));
  EXPECT_EQ(response.body(), ca_.spiffe_id("web"));
}

TEST_F(HttpTls, PeerRefusedByTheServersCheckIsClosedWithoutAnAnswerAndCounted) {
  start_server();
  auto blocked = ca_.issue("blocked");
  Client client(ioc_.get_executor());
  auto error =
      whoami_error(client, destination(make_tls_context(&blocked, {ca_.certificate_pem()})));
  // Refused after a complete handshake: no HTTP status reaches the client.
  EXPECT_NE(error.code(), ClientErrc::bad_response) << error.what();
  EXPECT_TRUE(eventually([&] { return server_->tls_counters().refused == 1; }));
  EXPECT_EQ(server_->tls_counters().by_reason.at("service denied"), 1u);

  Client good(ioc_.get_executor());
  EXPECT_EQ(whoami(good, destination(make_tls_context(&web_leaf_, {ca_.certificate_pem()}))).body(),
            ca_.spiffe_id("web"));
}

TEST_F(HttpTls, ClientRefusesAServerNamingAnotherService) {
  start_server();
  Client client(ioc_.get_executor());
  auto to_b = destination(make_tls_context(&web_leaf_, {ca_.certificate_pem()}), "b");
  auto error = whoami_error(client, to_b);
  EXPECT_EQ(error.code(), ClientErrc::peer_rejected);
  EXPECT_NE(std::string(error.what()).find("certificate names " + ca_.spiffe_id("api")),
            std::string::npos)
      << error.what();
  EXPECT_EQ(client.idle_connections(), 0u);
}

TEST_F(HttpTls, StalledHandshakeIsCutAtTheHandshakeTimeout) {
  start_server(300ms);
  auto closed = run(ioc_, [&]() -> asio::awaitable<bool> {
    tcp::socket socket(ioc_);
    co_await socket.async_connect({asio::ip::make_address("127.0.0.1"), server_->port()},
                                  asio::use_awaitable);
    // The start of a TLS record header announcing a ClientHello, then nothing.
    static constexpr unsigned char kPartialHello[] = {0x16, 0x03, 0x01, 0x02, 0x00};
    co_await asio::async_write(socket, asio::buffer(kPartialHello), asio::use_awaitable);
    char byte = 0;
    asio::steady_timer limit(ioc_, 10s);
    auto done = co_await (socket.async_read_some(asio::buffer(&byte, 1), use_tuple) ||
                          limit.async_wait(use_tuple));
    co_return done.index() == 0 &&
        std::get<0>(done) != std::tuple<boost::system::error_code, std::size_t>{};
  }());
  EXPECT_TRUE(closed) << "the server did not close a connection stalled mid-handshake";
  EXPECT_TRUE(eventually([&] { return server_->tls_counters().timed_out == 1; }));
  EXPECT_EQ(server_->tls_counters().failed, 0u);

  Client good(ioc_.get_executor());
  EXPECT_EQ(whoami(good, destination(make_tls_context(&web_leaf_, {ca_.certificate_pem()}))).body(),
            ca_.spiffe_id("web"));
}

TEST_F(HttpTls, RotatedCertificateServesNewConnectionsWhileOpenOnesKeepTheirs) {
  start_server();
  auto client_context = make_tls_context(&web_leaf_, {ca_.certificate_pem()});
  Client before(ioc_.get_executor());
  auto to_api = destination(client_context);
  EXPECT_EQ(whoami(before, to_api).result(), Status::ok);
  const long first_serial = served_by_serial_;

  auto rotated = ca_.issue("api");
  server_context_.set(make_tls_context(&rotated, {ca_.certificate_pem()}));

  Client after(ioc_.get_executor());
  EXPECT_EQ(whoami(after, destination(client_context)).result(), Status::ok);
  EXPECT_NE(served_by_serial_, first_serial) << "a new connection still got the old certificate";

  // The keep-alive connection opened before the rotation carries on.
  EXPECT_EQ(whoami(before, to_api).body(), ca_.spiffe_id("web"));
  EXPECT_EQ(before.connections_opened(), 1u);
}

// Contexts that would accept TLS 1.0 and 1.1 (and their SHA-1 signatures): the floor
// must come from the server and the client themselves.
std::shared_ptr<ssl::context> permissive(std::shared_ptr<ssl::context> context, int max_version) {
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(context->native_handle(), max_version);
  SSL_CTX_set_security_level(context->native_handle(), 0);
  return context;
}

// A bare TLS client (http::Client would refuse old versions itself): the handshake's result.
asio::awaitable<boost::system::error_code> bare_handshake(std::uint16_t port,
                                                          std::shared_ptr<ssl::context> context) {
  ssl::stream<tcp::socket> stream(co_await asio::this_coro::executor, *context);
  co_await stream.next_layer().async_connect({asio::ip::make_address("127.0.0.1"), port},
                                             asio::use_awaitable);
  auto [ec] = co_await stream.async_handshake(ssl::stream_base::client, use_tuple);
  co_return ec;
}

TEST_F(HttpTls, ServerRefusesTls10And11EvenWhenItsContextAllowsThem) {
  server_context_.set(
      permissive(make_tls_context(&api_leaf_, {ca_.certificate_pem()}), /*any version*/ 0));
  start_server();
  for (int version : {TLS1_VERSION, TLS1_1_VERSION}) {
    SCOPED_TRACE(version);
    auto old = permissive(make_tls_context(&web_leaf_, {ca_.certificate_pem()}), version);
    EXPECT_TRUE(run(ioc_, bare_handshake(server_->port(), old)));
  }
  EXPECT_TRUE(eventually([&] { return server_->tls_counters().failed == 2; }));
  EXPECT_EQ(server_->tls_counters().by_reason.at("unsupported protocol"), 2u);
  EXPECT_EQ(server_->tls_counters().accepted, 0u);

  // The same client context at TLS 1.2 is served: the versions made the difference.
  auto current = permissive(make_tls_context(&web_leaf_, {ca_.certificate_pem()}), 0);
  EXPECT_FALSE(run(ioc_, bare_handshake(server_->port(), current)));
}

asio::awaitable<void> serve_one_handshake(tcp::acceptor& acceptor,
                                          std::shared_ptr<ssl::context> context) {
  auto socket = co_await acceptor.async_accept(asio::use_awaitable);
  ssl::stream<tcp::socket> stream(std::move(socket), *context);
  co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
}

TEST_F(HttpTls, ClientRefusesTls11EvenWhenItsContextAllowsIt) {
  // A bare TLS server stuck at 1.1, outside http::Server (which would refuse it itself).
  auto context = permissive(make_tls_context(&api_leaf_, {ca_.certificate_pem()}), TLS1_1_VERSION);
  tcp::acceptor acceptor(ioc_, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(ioc_, serve_one_handshake(acceptor, context), asio::detached);
  Client client(ioc_.get_executor());
  auto to_old = destination(permissive(make_tls_context(&web_leaf_, {ca_.certificate_pem()}), 0),
                            "api", acceptor.local_endpoint().port());
  EXPECT_EQ(whoami_error(client, to_old).code(), ClientErrc::tls_handshake);
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
  auto context = make_tls_context(&web_leaf_, {ca_.certificate_pem()});
  std::string huge_header =
      "GET /whoami HTTP/1.1\r\nHost: api\r\nX-Big: " + std::string(16 * 1024, 'x') + "\r\n\r\n";
  auto answer = run(ioc_, tls_exchange(server_->port(), context, huge_header));
  EXPECT_EQ(answer.rfind("HTTP/1.1 431 ", 0), 0u) << answer.substr(0, 200);

  auto pipelined = run(ioc_, tls_exchange(server_->port(), context,
                                          "GET /whoami HTTP/1.1\r\nHost: api\r\n\r\n"
                                          "GET /nowhere HTTP/1.1\r\nHost: api\r\n"
                                          "Connection: close\r\n\r\n"));
  EXPECT_NE(pipelined.find(ca_.spiffe_id("web")), std::string::npos) << pipelined;
  EXPECT_NE(pipelined.find("HTTP/1.1 404 "), std::string::npos) << pipelined;
}

TEST_F(HttpTls, DrainEndsAnIdleTlsConnectionWithCloseNotify) {
  start_server();
  auto context = make_tls_context(&web_leaf_, {ca_.certificate_pem()});
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

}  // namespace
}  // namespace coromesh::http
