#include "coromesh/connect/tls_contexts.hpp"

#include <gtest/gtest.h>

#include "test_certificate_authority.hpp"

namespace coromesh::connect {
namespace {

using coromesh::testing::TestCertificateAuthority;

std::string error_of(const consul::LeafCertificate& leaf, const consul::CaRoots& roots) {
  try {
    make_tls_context(TlsRole::server, leaf, roots);
  } catch (const TlsMaterialError& e) {
    return e.what();
  }
  return "no error";
}

TEST(TlsContexts, BuildsBothRolesRequiringPeerCertificatesAndTls12) {
  TestCertificateAuthority ca;
  auto leaf = ca.leaf("web");
  auto server = make_tls_context(TlsRole::server, leaf, ca.roots());
  auto client = make_tls_context(TlsRole::client, leaf, ca.roots());
  EXPECT_EQ(SSL_CTX_get_verify_mode(server->native_handle()),
            SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  EXPECT_EQ(SSL_CTX_get_verify_mode(client->native_handle()), SSL_VERIFY_PEER);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(server->native_handle()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(client->native_handle()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_max_proto_version(server->native_handle()), 0) << "up to TLS 1.3";
}

TEST(TlsContexts, RefusesUnusableMaterialWithoutQuotingTheKey) {
  TestCertificateAuthority ca;
  auto leaf = ca.leaf("web");

  auto mismatched = leaf;
  mismatched.private_key_pem = ca.leaf("other").private_key_pem;
  EXPECT_EQ(error_of(mismatched, ca.roots()), "private key of web does not match its certificate");

  auto garbled_key = leaf;
  garbled_key.private_key_pem =
      "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
  EXPECT_EQ(error_of(garbled_key, ca.roots()), "private key of web is unreadable");

  auto garbled_cert = leaf;
  garbled_cert.cert_pem = "not a certificate";
  EXPECT_NE(error_of(garbled_cert, ca.roots()).find("leaf certificate of web"), std::string::npos);

  auto no_roots = ca.roots();
  no_roots.roots.clear();
  EXPECT_EQ(error_of(leaf, no_roots), "no CA root to trust");

  auto bad_root = ca.roots();
  bad_root.roots[0].root_cert_pem = "garbage";
  EXPECT_NE(error_of(leaf, bad_root).find("CA root test-root"), std::string::npos);
}

}  // namespace
}  // namespace coromesh::connect
