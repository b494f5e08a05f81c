#include "coromesh/connect/tls_contexts.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/system/error_code.hpp>
#include <string>

#include "coromesh/connect/tls_session_cache.hpp"

namespace coromesh::connect {
namespace {

namespace ssl = boost::asio::ssl;

// TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3's are all of that kind).
// ECDSA first: Consul's CA issues EC P-256 keys by default; RSA for CAs configured so.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305";

// Sessions resumed on a server context must belong to it: without an ID context OpenSSL
// refuses to resume sessions of verified clients (and a new context per generation means
// sessions never cross a rotation).
constexpr unsigned char kSessionIdContext[] = "coromesh-connect";
constexpr long kSessionLifetimeSeconds = 300;

void check(const boost::system::error_code& ec, std::string_view what) {
  if (ec) {
    throw TlsMaterialError(std::string(what) + ": " + ec.message());
  }
}

}  // namespace

std::shared_ptr<ssl::context> make_tls_context(TlsRole role, const consul::LeafCertificate& leaf,
                                               const consul::CaRoots& roots) {
  auto context = std::make_shared<ssl::context>(role == TlsRole::server ? ssl::context::tls_server
                                                                        : ssl::context::tls_client);
  auto* native = context->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    throw TlsMaterialError("OpenSSL refused the protocol or cipher settings");
  }
  context->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                       ssl::context::single_dh_use);

  boost::system::error_code ec;
  // The first certificate is the leaf, the rest its chain: all are sent to the peer.
  context->use_certificate_chain(boost::asio::buffer(leaf.cert_pem), ec);
  check(ec, "leaf certificate of " + leaf.service);
  context->use_private_key(boost::asio::buffer(leaf.private_key_pem), ssl::context::pem, ec);
  // OpenSSL checks the key against the certificate as it loads it. The messages are ours,
  // not OpenSSL's: say what failed, never anything near the key's content.
  if (ec && ec.category() == boost::asio::error::get_ssl_category() &&
      ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH) {
    throw TlsMaterialError("private key of " + leaf.service + " does not match its certificate");
  }
  if (ec) {
    throw TlsMaterialError("private key of " + leaf.service + " is unreadable");
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    throw TlsMaterialError("private key of " + leaf.service + " does not match its certificate");
  }

  if (roots.roots.empty()) {
    throw TlsMaterialError("no CA root to trust");
  }
  for (const auto& root : roots.roots) {
    context->add_certificate_authority(boost::asio::buffer(root.root_cert_pem), ec);
    check(ec, "CA root " + root.id);
  }

  auto mode = ssl::verify_peer;
  if (role == TlsRole::server) {
    mode |= ssl::verify_fail_if_no_peer_cert;
    SSL_CTX_set_session_id_context(native, kSessionIdContext, sizeof(kSessionIdContext) - 1);
    // How long a ticket this context issues may be resumed: short, so that a resumed
    // connection stands on a full handshake of a few minutes ago (verify_peer also
    // checks that the certificate the session carries is still valid).
    SSL_CTX_set_timeout(native, kSessionLifetimeSeconds);
  } else {
    TlsSessionCache::install_on(native);
  }
  context->set_verify_mode(mode);
  return context;
}

}  // namespace coromesh::connect
