// TLS session resumption between TlsSockets with contexts of connect::make_tls_context
// (Connect's shape): the second connection to a destination resumes the first one's
// session, the peer check still names the right identity on both sides, and a session
// never crosses to another client context (a rotation) or another destination.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <string>
#include <thread>

#include "coromesh/connect/peer_verifier.hpp"
#include "coromesh/connect/tls_contexts.hpp"
#include "coromesh/connect/tls_session_cache.hpp"
#include "src/tls_socket.hpp"
#include "test_certificate_authority.hpp"

namespace coromesh::sidecar {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

struct Outcome {
  bool client_resumed = false;
  bool server_resumed = false;
  connect::PeerVerification client_saw, server_saw;
};

// One connection from `client_context` to `server_context`: the handshake, the peer
// checks on both sides, and one byte each way (TLS 1.3 tickets arrive with the first
// read after the handshake).
Outcome connect_once(const std::shared_ptr<asio::ssl::context>& client_context,
                     const std::shared_ptr<asio::ssl::context>& server_context,
                     connect::TlsSessionCache& sessions, const std::string& destination,
                     const std::string& trust_domain) {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket client_socket(io), server_socket(io);
  client_socket.connect(acceptor.local_endpoint());
  acceptor.accept(server_socket);
  TlsSocket server(std::move(server_socket), server_context, TlsSocket::Role::server);
  TlsSocket client(std::move(client_socket), client_context, TlsSocket::Role::client);
  sessions.offer(client.native_handle(), destination, client_context);
  Outcome outcome;
  int done = 0;
  auto finished = [&](const std::exception_ptr& e) {
    EXPECT_FALSE(e);
    ++done;
  };
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await server.handshake());
        outcome.server_resumed = connect::resumed(server.native_handle());
        outcome.server_saw =
            connect::verify_peer(server.native_handle(), {.trust_domain = trust_domain});
        std::array<std::byte, 16> buffer{};
        auto [ec, n] = co_await server.read_some(buffer);
        EXPECT_FALSE(ec);
        auto [wec, wn] = co_await server.write_all(std::as_bytes(std::span("!", 1)));
        EXPECT_FALSE(wec);
      },
      finished);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        EXPECT_FALSE(co_await client.handshake());
        outcome.client_resumed = connect::resumed(client.native_handle());
        outcome.client_saw = connect::verify_peer(client.native_handle(),
                                                  {.trust_domain = trust_domain, .service = "b"});
        auto [wec, wn] = co_await client.write_all(std::as_bytes(std::span("?", 1)));
        EXPECT_FALSE(wec);
        std::array<std::byte, 16> buffer{};
        auto [ec, n] = co_await client.read_some(buffer);
        EXPECT_FALSE(ec);
      },
      finished);
  io.run_for(5s);
  EXPECT_EQ(done, 2);
  return outcome;
}

class TlsResumption : public ::testing::Test {
 protected:
  testing::TestCertificateAuthority ca_;
  std::shared_ptr<asio::ssl::context> server_ =
      connect::make_tls_context(connect::TlsRole::server, ca_.leaf("b"), ca_.roots());
  std::shared_ptr<asio::ssl::context> client_ =
      connect::make_tls_context(connect::TlsRole::client, ca_.leaf("a"), ca_.roots());
  std::shared_ptr<connect::TlsSessionCache> sessions_ =
      std::make_shared<connect::TlsSessionCache>();

  // One connection through this fixture's cache (by default from client_ to server_).
  Outcome connect_to(const std::string& destination,
                     const std::shared_ptr<asio::ssl::context>& client = nullptr,
                     const std::shared_ptr<asio::ssl::context>& server = nullptr) {
    return connect_once(client ? client : client_, server ? server : server_, *sessions_,
                        destination, ca_.trust_domain());
  }
};

TEST_F(TlsResumption, TheSecondConnectionToADestinationResumesAndStillProvesWhoIsWho) {
  const auto first = connect_to("b-1");
  EXPECT_FALSE(first.client_resumed);
  EXPECT_EQ(sessions_->size(), 1U) << "the ticket the server sent was kept";
  for (int i = 0; i < 3; ++i) {
    const auto again = connect_to("b-1");
    EXPECT_TRUE(again.client_resumed);
    EXPECT_TRUE(again.server_resumed);
    ASSERT_TRUE(again.server_saw) << again.server_saw.detail;
    EXPECT_EQ(again.server_saw.peer->service, "a") << "the client's identity, from the session";
    ASSERT_TRUE(again.client_saw) << again.client_saw.detail;
    EXPECT_EQ(again.client_saw.peer->service, "b");
  }
}

TEST_F(TlsResumption, ASessionIsOfferedOnlyToItsDestination) {
  connect_to("b-1");
  const auto other = connect_to("b-2");
  EXPECT_FALSE(other.client_resumed);
  EXPECT_EQ(sessions_->size(), 2U);
}

TEST_F(TlsResumption, ANewClientContextStartsOverWithAFullHandshake) {
  connect_to("b-1");
  // A new leaf (certificate_source.hpp builds a new context for it).
  const auto rotated =
      connect::make_tls_context(connect::TlsRole::client, ca_.leaf("a"), ca_.roots());
  const auto after = connect_to("b-1", rotated);
  EXPECT_FALSE(after.client_resumed);
  ASSERT_TRUE(after.server_saw) << after.server_saw.detail;
  EXPECT_TRUE(connect_to("b-1", rotated).client_resumed) << "the new context's own session is kept";
}

TEST_F(TlsResumption, ANewServerContextRefusesTheOldTicketsAndHandshakesInFull) {
  connect_to("b-1");
  const auto rotated_server =
      connect::make_tls_context(connect::TlsRole::server, ca_.leaf("b"), ca_.roots());
  const auto after = connect_to("b-1", nullptr, rotated_server);
  EXPECT_FALSE(after.client_resumed);
  EXPECT_FALSE(after.server_resumed);
  ASSERT_TRUE(after.server_saw) << after.server_saw.detail;
}

// The server bounds how old a session may be (make_tls_context: 5 minutes): past it, a
// full handshake, whatever the client kept. One second here.
TEST_F(TlsResumption, TheServerRefusesASessionOlderThanItsLifetime) {
  SSL_CTX_set_timeout(server_->native_handle(), 1);
  connect_to("b-1");
  EXPECT_TRUE(connect_to("b-1").client_resumed);
  std::this_thread::sleep_for(2100ms);
  const auto late = connect_to("b-1");
  EXPECT_FALSE(late.client_resumed);
  EXPECT_FALSE(late.server_resumed);
}

// OpenSSL does not check the certificate a resumed session carries: verify_peer does.
// The client's leaf expires between a full handshake and its resumption.
TEST_F(TlsResumption, AResumedSessionWhoseCertificateHasExpiredIsRefused) {
  const auto short_lived = connect::make_tls_context(
      connect::TlsRole::client, ca_.leaf("a", std::nullopt, {.not_after = 2s}), ca_.roots());
  const auto first = connect_to("b-1", short_lived);
  ASSERT_TRUE(first.server_saw) << first.server_saw.detail;
  std::this_thread::sleep_for(3s);
  const auto late = connect_to("b-1", short_lived);
  ASSERT_TRUE(late.server_resumed);
  ASSERT_FALSE(late.server_saw);
  EXPECT_EQ(late.server_saw.refusal, connect::PeerRefusal::expired_certificate)
      << late.server_saw.detail;
}

TEST_F(TlsResumption, ACacheGoneBeforeItsConnectionKeepsNothingAndBreaksNothing) {
  auto short_lived = std::make_shared<connect::TlsSessionCache>();
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket client_socket(io);
  client_socket.connect(acceptor.local_endpoint());
  TlsSocket client(std::move(client_socket), client_, TlsSocket::Role::client);
  short_lived->offer(client.native_handle(), "b-1", client_);
  short_lived.reset();  // the connection's record of it dies with the SSL, unused
  SUCCEED();
}

}  // namespace
}  // namespace coromesh::sidecar
