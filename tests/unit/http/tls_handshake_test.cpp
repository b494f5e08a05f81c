// http::Server and http::Client over real mutual TLS: who gets through the handshake and
// the peer checks, and how the others are refused, counted and told (tls_fixture.hpp).

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
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
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

TEST_F(HttpTls, MutualTlsRequestReachesTheHandlerWithThePeerIdentity) {
  start_server();
  Client client(ioc_.get_executor());
  auto response = whoami(client, destination(client_context(ca_.leaf("web"))));
  EXPECT_EQ(response.result(), Status::ok);
  EXPECT_EQ(response.body(), ca_.service_uri("web"));
  EXPECT_EQ(server_->tls_counters().accepted, 1u);
}

TEST_F(HttpTls, ClientsWithoutATrustedCertificateAreRefusedAndOthersStillServed) {
  start_server();
  coromesh::testing::TestCertificateAuthority other_ca(ca_.trust_domain(), "other-root");
  auto impostor = coromesh::testing::self_signed(ca_.service_uri("web"));
  consul::LeafCertificate self_signed{.cert_pem = impostor.cert_pem,
                                      .private_key_pem = impostor.key_pem};
  struct Case {
    const char* what;
    std::shared_ptr<ssl::context> context;
  };
  for (const auto& [what, context] : {Case{"no certificate", anonymous_client_context(ca_.roots())},
                                      Case{"self-signed", client_context(self_signed)},
                                      Case{"another CA", client_context(other_ca.leaf("web"))}}) {
    SCOPED_TRACE(what);
    Client client(ioc_.get_executor());
    auto error = whoami_error(client, destination(context));
    EXPECT_EQ(error.code(), ClientErrc::tls_handshake) << error.what();
  }
  // The observer hears of each handshake just after the counters count it.
  EXPECT_TRUE(eventually([&] { return handshakes_.outcomes().size() == 3; }));
  auto counters = server_->tls_counters();
  EXPECT_EQ(counters.failed, 3u);
  // Named by the Connect module's classification, plugged in through describe_failure.
  EXPECT_EQ(counters.by_reason["no_certificate"], 1u);
  EXPECT_EQ(counters.by_reason["untrusted_chain"], 2u);
  using Outcome = std::pair<TlsHandshakeResult, std::string>;
  EXPECT_EQ(handshakes_.outcomes(),
            (std::vector<Outcome>{{TlsHandshakeResult::failed, "no_certificate"},
                                  {TlsHandshakeResult::failed, "untrusted_chain"},
                                  {TlsHandshakeResult::failed, "untrusted_chain"}}));

  Client good(ioc_.get_executor());
  EXPECT_EQ(whoami(good, destination(client_context(ca_.leaf("web")))).body(),
            ca_.service_uri("web"));
}

TEST_F(HttpTls, PeerRefusedByTheServersCheckIsClosedWithoutAnAnswerAndCounted) {
  start_server();
  Client client(ioc_.get_executor());
  auto error = whoami_error(client, destination(client_context(ca_.leaf("blocked"))));
  // Refused after a complete handshake: no HTTP status reaches the client.
  EXPECT_NE(error.code(), ClientErrc::bad_response) << error.what();
  EXPECT_TRUE(eventually([&] { return server_->tls_counters().refused == 1; }));
  EXPECT_EQ(server_->tls_counters().by_reason.at("service denied"), 1u);

  Client good(ioc_.get_executor());
  EXPECT_EQ(whoami(good, destination(client_context(ca_.leaf("web")))).body(),
            ca_.service_uri("web"));
}

TEST_F(HttpTls, AnAwaitedAuthorizationDecidesAfterTheHandshake) {
  // Like an intentions check: asked after the handshake, answered later.
  authorize_ = [](std::string identity, SSL*) -> boost::asio::awaitable<PeerVerdict> {
    boost::asio::steady_timer later(co_await boost::asio::this_coro::executor, 20ms);
    co_await later.async_wait(boost::asio::use_awaitable);
    if (identity.ends_with("/svc/intruder")) {
      co_return PeerVerdict::refuse("unauthorized");
    }
    co_return PeerVerdict::accept(std::move(identity));
  };
  start_server();
  Client client(ioc_.get_executor());
  auto error = whoami_error(client, destination(client_context(ca_.leaf("intruder"))));
  EXPECT_NE(error.code(), ClientErrc::bad_response) << error.what();
  EXPECT_TRUE(eventually([&] { return server_->tls_counters().refused == 1; }));
  EXPECT_EQ(server_->tls_counters().by_reason.at("unauthorized"), 1u);

  Client good(ioc_.get_executor());
  EXPECT_EQ(whoami(good, destination(client_context(ca_.leaf("web")))).body(),
            ca_.service_uri("web"));
  EXPECT_EQ(server_->tls_counters().accepted, 1u);
}

TEST_F(HttpTls, ClientRefusesAServerNamingAnotherService) {
  start_server();
  Client client(ioc_.get_executor());
  auto error = whoami_error(client, destination(client_context(ca_.leaf("web")), "b"));
  EXPECT_EQ(error.code(), ClientErrc::peer_rejected);
  EXPECT_NE(std::string(error.what()).find("unexpected_service"), std::string::npos)
      << error.what();
  EXPECT_EQ(client.idle_connections(), 0u);
}

// The client's own hooks: a failed handshake named by describe_failure (in the error and
// to on_handshake), a refused server and an accepted one told to on_handshake.
TEST_F(HttpTls, ClientHandshakesAreNamedAndToldToTheirObserver) {
  server_context_.set(server_context(
      ca_.leaf("api", std::nullopt, {.not_before = -std::chrono::hours(48), .not_after = -1h})));
  start_server();
  std::vector<std::pair<TlsHandshakeResult, std::string>> seen;
  auto observed = [&](Destination to) {
    auto tls = std::make_shared<ClientTls>(*to.tls);
    tls->describe_failure = [](SSL* session, const boost::system::error_code& error) {
      return std::string(
          connect::to_string(connect::classify_handshake_failure(session, error).refusal));
    };
    tls->on_handshake = [&seen](TlsHandshakeResult result, std::string_view reason) {
      seen.emplace_back(result, std::string(reason));
    };
    to.tls = std::move(tls);
    return to;
  };
  Client client(ioc_.get_executor());
  auto expired = whoami_error(client, observed(destination(client_context(ca_.leaf("web")))));
  EXPECT_EQ(expired.code(), ClientErrc::tls_handshake);
  EXPECT_NE(std::string(expired.what()).find("expired_certificate (certificate verify failed)"),
            std::string::npos)
      << expired.what();

  server_context_.set(server_context(ca_.leaf("api")));
  EXPECT_EQ(
      whoami_error(client, observed(destination(client_context(ca_.leaf("web")), "b"))).code(),
      ClientErrc::peer_rejected);
  EXPECT_EQ(whoami(client, observed(destination(client_context(ca_.leaf("web"))))).result_int(),
            200);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0],
            std::make_pair(TlsHandshakeResult::failed, std::string("expired_certificate")));
  EXPECT_EQ(seen[1].first, TlsHandshakeResult::refused);
  EXPECT_TRUE(seen[1].second.starts_with("unexpected_service")) << seen[1].second;
  EXPECT_EQ(seen[2], std::make_pair(TlsHandshakeResult::accepted, std::string()));
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
    // Closed by the server: the read ends with an error (eof or reset), not by the limit.
    co_return done.index() == 0 && std::get<0>(std::get<0>(done));
  }());
  EXPECT_TRUE(closed) << "the server did not close a connection stalled mid-handshake";
  EXPECT_TRUE(eventually([&] { return server_->tls_counters().timed_out == 1; }));
  EXPECT_EQ(server_->tls_counters().failed, 0u);

  Client good(ioc_.get_executor());
  EXPECT_EQ(whoami(good, destination(client_context(ca_.leaf("web")))).body(),
            ca_.service_uri("web"));
}

TEST_F(HttpTls, PlainHttpOnTheTlsPortGetsNoHttpAnswer) {
  start_server();
  auto answer = run(ioc_, [&]() -> asio::awaitable<std::string> {
    tcp::socket socket(ioc_);
    co_await socket.async_connect({asio::ip::make_address("127.0.0.1"), server_->port()},
                                  asio::use_awaitable);
    co_await asio::async_write(socket,
                               asio::buffer(std::string_view("GET /whoami HTTP/1.1\r\n\r\n")),
                               asio::use_awaitable);
    std::string bytes;
    asio::steady_timer limit(ioc_, 10s);
    for (;;) {
      char chunk[512];
      auto done = co_await (socket.async_read_some(asio::buffer(chunk), use_tuple) ||
                            limit.async_wait(use_tuple));
      if (done.index() == 1) {
        co_return bytes + "<still open after 10 s>";
      }
      auto [ec, n] = std::get<0>(done);
      bytes.append(chunk, n);
      if (ec) {
        co_return bytes;
      }
    }
  }());
  // At most a TLS alert, then the close: never an HTTP response carrying the route's data.
  EXPECT_EQ(answer.find("HTTP/"), std::string::npos) << answer;
  EXPECT_EQ(answer.find("still open"), std::string::npos);
  EXPECT_TRUE(eventually([&] { return server_->tls_counters().failed == 1; }));
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
  server_context_.set(permissive(server_context(ca_.leaf("api")), /*any version*/ 0));
  start_server(5s, /*connect_reasons=*/false);
  auto web = ca_.leaf("web");
  for (int version : {TLS1_VERSION, TLS1_1_VERSION}) {
    SCOPED_TRACE(version);
    EXPECT_TRUE(
        run(ioc_, bare_handshake(server_->port(), permissive(client_context(web), version))));
  }
  EXPECT_TRUE(eventually([&] { return server_->tls_counters().failed == 2; }));
  // Without describe_failure, OpenSSL's reason names the failure.
  EXPECT_EQ(server_->tls_counters().by_reason.at("unsupported protocol"), 2u);
  EXPECT_EQ(server_->tls_counters().accepted, 0u);

  // The same client context without the version cap is served: the version was the reason.
  EXPECT_FALSE(run(ioc_, bare_handshake(server_->port(), permissive(client_context(web), 0))));
}

asio::awaitable<void> serve_one_handshake(tcp::acceptor& acceptor,
                                          std::shared_ptr<ssl::context> context) {
  auto socket = co_await acceptor.async_accept(asio::use_awaitable);
  ssl::stream<tcp::socket> stream(std::move(socket), *context);
  co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
}

TEST_F(HttpTls, ClientRefusesTls11EvenWhenItsContextAllowsIt) {
  // A bare TLS server stuck at 1.1, outside http::Server (which would refuse it itself).
  tcp::acceptor acceptor(ioc_, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(
      ioc_,
      serve_one_handshake(acceptor, permissive(server_context(ca_.leaf("api")), TLS1_1_VERSION)),
      asio::detached);
  Client client(ioc_.get_executor());
  auto to_old = destination(permissive(client_context(ca_.leaf("web")), 0), "api",
                            acceptor.local_endpoint().port());
  EXPECT_EQ(whoami_error(client, to_old).code(), ClientErrc::tls_handshake);
}

// A bare TLS server (outside http::Server) that answers the first `answered` requests on
// its one connection, then reads one more and, in place of its answer, sends bytes that
// are no TLS record (a peer's TLS stack gone wrong): the client's read of that answer
// fails with an OpenSSL error. `delivered` counts the requests it read.
asio::awaitable<void> answer_then_break_tls(tcp::acceptor& acceptor,
                                            std::shared_ptr<ssl::context> context, int& delivered,
                                            int answered) {
  auto socket = co_await acceptor.async_accept(asio::use_awaitable);
  ssl::stream<tcp::socket> stream(std::move(socket), *context);
  co_await stream.async_handshake(ssl::stream_base::server, asio::use_awaitable);
  boost::beast::flat_buffer buffer;
  for (int i = 0; i < answered; ++i) {
    Request first;
    co_await boost::beast::http::async_read(stream, buffer, first, asio::use_awaitable);
    ++delivered;
    Response answer{Status::ok, 11};
    answer.body() = "first";
    answer.keep_alive(true);
    answer.prepare_payload();
    co_await boost::beast::http::async_write(stream, answer, asio::use_awaitable);
  }
  Request second;
  co_await boost::beast::http::async_read(stream, buffer, second, asio::use_awaitable);
  ++delivered;
  co_await asio::async_write(stream.next_layer(),
                             asio::buffer(std::string_view("HTTP/1.1 200 OK\r\n\r\n")),
                             asio::use_awaitable);
  char byte = 0;
  co_await stream.next_layer().async_read_some(asio::buffer(&byte, 1), use_tuple);
}

// Was: a TLS failure in place of the answer was always reported as tls_handshake, which
// never_reached() counts as a request that never left (the typed client then gives a
// served operation's retry back its freedom to send a POST again, and the endpoint's
// outlier ejection records a connect failure). On a pooled connection the handshake was
// done long ago and the request was delivered: its outcome is unknown, not unsent.
TEST_F(HttpTls, ATlsFailureInPlaceOfAnAnswerOnAPooledConnectionIsNotAnUnsentRequest) {
  tcp::acceptor acceptor(ioc_, {asio::ip::make_address("127.0.0.1"), 0});
  int delivered = 0;
  asio::co_spawn(ioc_,
                 answer_then_break_tls(acceptor, server_context(ca_.leaf("api")), delivered, 1),
                 asio::detached);
  Client client(ioc_.get_executor());
  auto to = destination(client_context(ca_.leaf("web")), "api", acceptor.local_endpoint().port());
  // Both calls in one run: between them the server waits for the second request.
  auto [first, error] =
      run(ioc_, [&]() -> asio::awaitable<std::pair<std::string, std::optional<ClientError>>> {
        auto answer = co_await client.get(to, "/whoami", 5s);
        try {
          co_await client.get(to, "/whoami", 5s);
        } catch (const ClientError& e) {
          co_return std::pair{answer.body(), std::optional(e)};
        }
        co_return std::pair{answer.body(), std::optional<ClientError>()};
      }());
  EXPECT_EQ(first, "first");
  ASSERT_TRUE(error) << "the second call succeeded";
  EXPECT_EQ(delivered, 2) << "the second request did not reach the server";
  EXPECT_EQ(client.connections_opened(), 1u);
  EXPECT_NE(error->code(), ClientErrc::tls_handshake) << error->what();
  EXPECT_FALSE(never_reached(error->code())) << error->what();
}

// Was: on a new connection any OpenSSL error in place of the first answer was taken for
// the server's refusal of our certificate (TLS 1.3 sends it after our side of the
// handshake is done), so never_reached(): a POST then went to another endpoint. Only the
// alerts that refuse a certificate or the handshake say so; a server that read the request
// and then broke its TLS may have processed it.
TEST_F(HttpTls, ATlsFailureAfterTheServerReadTheRequestIsNotAnUnsentRequest) {
  tcp::acceptor acceptor(ioc_, {asio::ip::make_address("127.0.0.1"), 0});
  int delivered = 0;
  asio::co_spawn(ioc_,
                 answer_then_break_tls(acceptor, server_context(ca_.leaf("api")), delivered, 0),
                 asio::detached);
  Client client(ioc_.get_executor());
  auto to = destination(client_context(ca_.leaf("web")), "api", acceptor.local_endpoint().port());
  auto error = run(ioc_, [&]() -> asio::awaitable<std::optional<ClientError>> {
    try {
      Request post(Verb::post, "/charge", 11);
      post.body() = "once";
      co_await client.send(to, std::move(post), Client::Clock::now() + 5s);
    } catch (const ClientError& e) {
      co_return e;
    }
    co_return std::nullopt;
  }());
  ASSERT_TRUE(error) << "the call succeeded";
  EXPECT_EQ(delivered, 1) << "the request did not reach the server";
  EXPECT_NE(error->code(), ClientErrc::tls_handshake) << error->what();
  EXPECT_FALSE(never_reached(error->code())) << error->what();
}

}  // namespace
}  // namespace coromesh::http::testing
