#include "coromesh/connect/peer_verifier.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "async_test.hpp"
#include "coromesh/connect/tls_contexts.hpp"
#include "test_certificate_authority.hpp"
#include "tls_loopback_pair.hpp"

// Handshakes over in-process loopback with certificates of a test CA: the identities
// Consul would never issue (no URI, two URIs, another trust domain) included.

namespace coromesh::connect {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using coromesh::testing::TestCertificateAuthority;

class PeerVerifierTest : public ::testing::Test {
 protected:
  // The server is service "b" of ca_; the client presents `client_leaf` and expects
  // `client_expects`.
  std::unique_ptr<coromesh::testing::TlsPair> handshake(
      const consul::LeafCertificate& client_leaf, std::optional<std::string> client_expects = "b",
      const consul::CaRoots* client_roots = nullptr) {
    auto server_ctx = make_tls_context(TlsRole::server, server_leaf_, ca_.roots());
    auto client_ctx =
        make_tls_context(TlsRole::client, client_leaf, client_roots ? *client_roots : ca_.roots());
    return handshake_with(*server_ctx, *client_ctx, client_expects);
  }

  std::unique_ptr<coromesh::testing::TlsPair> handshake_with(
      ssl::context& server_ctx, ssl::context& client_ctx,
      std::optional<std::string> client_expects = "b") {
    std::unique_ptr<coromesh::testing::TlsPair> pair;
    coromesh::testing::run_async(ioc_, [&]() -> asio::awaitable<void> {
      pair = co_await coromesh::testing::connect_pair(
          server_ctx, client_ctx, {.trust_domain = ca_.trust_domain()},
          {.trust_domain = ca_.trust_domain(), .service = client_expects});
    }());
    return pair;
  }

  asio::io_context ioc_;
  TestCertificateAuthority ca_;
  consul::LeafCertificate server_leaf_ = ca_.leaf("b");
};

TEST_F(PeerVerifierTest, BothSidesReadThePeersSpiffeId) {
  auto pair = handshake(ca_.leaf("a"));
  ASSERT_TRUE(pair->server_view) << pair->server_view.detail;
  ASSERT_TRUE(pair->client_view) << pair->client_view.detail;
  EXPECT_EQ(pair->server_view.peer->service, "a");
  EXPECT_EQ(pair->server_view.peer->uri(), ca_.service_uri("a"));
  EXPECT_EQ(pair->client_view.peer->service, "b");
  EXPECT_TRUE(pair->exchanged);
}

TEST_F(PeerVerifierTest, RefusesACertificateWithoutAUri) {
  auto pair = handshake(ca_.leaf("a", std::vector<std::string>{}));
  EXPECT_EQ(pair->server_view.refusal, PeerRefusal::no_spiffe_uri) << pair->server_view.detail;
  EXPECT_FALSE(pair->exchanged);
}

TEST_F(PeerVerifierTest, RefusesUrisThatAreNotExactlyOneServiceIdentity) {
  auto two = handshake(
      ca_.leaf("a", std::vector<std::string>{ca_.service_uri("a"), ca_.service_uri("admin")}));
  EXPECT_EQ(two->server_view.refusal, PeerRefusal::invalid_spiffe_uri);
  EXPECT_EQ(two->server_view.detail, "the certificate has 2 URI SANs");

  auto agent = handshake(ca_.leaf("a", std::vector<std::string>{"spiffe://" + ca_.trust_domain() +
                                                                "/agent/client/dc/dc1/id/n"}));
  EXPECT_EQ(agent->server_view.refusal, PeerRefusal::invalid_spiffe_uri);
  EXPECT_NE(agent->server_view.detail.find("not a Connect service identity"), std::string::npos)
      << agent->server_view.detail;
}

TEST_F(PeerVerifierTest, RefusesAnIdentityOfAnotherTrustDomain) {
  auto pair = handshake(
      ca_.leaf("a", std::vector<std::string>{"spiffe://other.consul/ns/default/dc/dc1/svc/a"}));
  EXPECT_EQ(pair->server_view.refusal, PeerRefusal::wrong_trust_domain) << pair->server_view.detail;
}

TEST_F(PeerVerifierTest, RefusesACertificateOfAnotherCa) {
  TestCertificateAuthority other(ca_.trust_domain(), "other-root");  // even the same domain
  auto pair = handshake(other.leaf("a"), "b", nullptr);
  EXPECT_EQ(pair->server_view.refusal, PeerRefusal::untrusted_chain)
      << to_string(pair->server_view.refusal) << ": " << pair->server_view.detail;
  EXPECT_FALSE(pair->exchanged);
}

// Leaves of the mesh's own CA out of their validity period: refused on either side, by
// a reason of their own (an operator's first question is "expired, or not ours?").
constexpr coromesh::testing::LeafValidity kExpired{.not_before = -std::chrono::hours(48),
                                                   .not_after = -std::chrono::hours(24)};
constexpr coromesh::testing::LeafValidity kNotYetValid{.not_before = std::chrono::hours(24),
                                                       .not_after = std::chrono::hours(48)};

TEST_F(PeerVerifierTest, TheServerRefusesAClientLeafOutOfItsValidityPeriod) {
  auto expired = handshake(ca_.leaf("a", std::nullopt, kExpired));
  EXPECT_EQ(expired->server_view.refusal, PeerRefusal::expired_certificate)
      << to_string(expired->server_view.refusal) << ": " << expired->server_view.detail;
  EXPECT_EQ(expired->server_view.detail, "certificate has expired");
  EXPECT_FALSE(expired->exchanged);

  auto early = handshake(ca_.leaf("a", std::nullopt, kNotYetValid));
  EXPECT_EQ(early->server_view.refusal, PeerRefusal::not_yet_valid_certificate)
      << to_string(early->server_view.refusal) << ": " << early->server_view.detail;
  EXPECT_FALSE(early->exchanged);
}

TEST_F(PeerVerifierTest, TheClientRefusesAServerLeafOutOfItsValidityPeriod) {
  server_leaf_ = ca_.leaf("b", std::nullopt, kExpired);
  auto expired = handshake(ca_.leaf("a"));
  EXPECT_EQ(expired->client_view.refusal, PeerRefusal::expired_certificate)
      << to_string(expired->client_view.refusal) << ": " << expired->client_view.detail;
  EXPECT_FALSE(expired->exchanged);

  server_leaf_ = ca_.leaf("b", std::nullopt, kNotYetValid);
  auto early = handshake(ca_.leaf("a"));
  EXPECT_EQ(early->client_view.refusal, PeerRefusal::not_yet_valid_certificate)
      << to_string(early->client_view.refusal) << ": " << early->client_view.detail;
  EXPECT_FALSE(early->exchanged);
}

TEST_F(PeerVerifierTest, AnExpiredLeafOfAnotherCaIsUntrustedFirst) {
  TestCertificateAuthority other(ca_.trust_domain(), "other-root");
  auto pair = handshake(other.leaf("a", std::nullopt, kExpired));
  EXPECT_EQ(pair->server_view.refusal, PeerRefusal::untrusted_chain)
      << to_string(pair->server_view.refusal) << ": " << pair->server_view.detail;
}

TEST_F(PeerVerifierTest, TheClientRefusesAServerOfAnotherService) {
  auto pair = handshake(ca_.leaf("a"), "c");
  EXPECT_TRUE(pair->server_view);
  EXPECT_EQ(pair->client_view.refusal, PeerRefusal::unexpected_service);
  EXPECT_EQ(pair->client_view.detail, "service b, expected c");
}

TEST_F(PeerVerifierTest, RefusesTls11) {
  auto server_ctx = make_tls_context(TlsRole::server, server_leaf_, ca_.roots());
  auto client_ctx = make_tls_context(TlsRole::client, ca_.leaf("a"), ca_.roots());
  SSL_CTX_set_min_proto_version(client_ctx->native_handle(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(client_ctx->native_handle(), TLS1_1_VERSION);
  SSL_CTX_set_security_level(client_ctx->native_handle(), 0);  // let the client offer 1.1
  auto pair = handshake_with(*server_ctx, *client_ctx);
  EXPECT_EQ(pair->server_view.refusal, PeerRefusal::handshake_failed) << pair->server_view.detail;
  EXPECT_FALSE(pair->exchanged);
}

TEST(PeerRefusal, NamesAreMetricLabels) {
  EXPECT_EQ(to_string(PeerRefusal::no_certificate), "no_certificate");
  EXPECT_EQ(to_string(PeerRefusal::untrusted_chain), "untrusted_chain");
  EXPECT_EQ(to_string(PeerRefusal::expired_certificate), "expired_certificate");
  EXPECT_EQ(to_string(PeerRefusal::not_yet_valid_certificate), "not_yet_valid_certificate");
  EXPECT_EQ(to_string(PeerRefusal::no_spiffe_uri), "no_spiffe_uri");
  EXPECT_EQ(to_string(PeerRefusal::invalid_spiffe_uri), "invalid_spiffe_uri");
  EXPECT_EQ(to_string(PeerRefusal::wrong_trust_domain), "wrong_trust_domain");
  EXPECT_EQ(to_string(PeerRefusal::unexpected_service), "unexpected_service");
  EXPECT_EQ(to_string(PeerRefusal::handshake_failed), "handshake_failed");
}

}  // namespace
}  // namespace coromesh::connect
