#pragma once

// Throwaway certificates for tests that need real TLS: a CA and EC P-256 leaves
// carrying a SPIFFE URI SAN, shaped like Consul Connect's
// (spiffe://<trust-domain>/ns/default/dc/dc1/svc/<service>), made with OpenSSL's C API
// in memory. Never written to disk; valid from an hour ago for a day.
//
// Threading: a TestCa is used by one thread at a time; the free functions are
// thread-safe.

#include <openssl/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace coromesh::testing {

struct CertificateAndKey {
  std::string certificate_pem;  // the leaf (a CA-issued leaf needs only its CA to verify)
  std::string private_key_pem;  // PKCS#8
};

class TestCa {
 public:
  explicit TestCa(std::string trust_domain = "11111111-2222-3333-4444-555555555555.consul");
  ~TestCa();
  TestCa(const TestCa&) = delete;
  TestCa& operator=(const TestCa&) = delete;

  const std::string& trust_domain() const { return trust_domain_; }
  const std::string& certificate_pem() const { return certificate_pem_; }

  // The SPIFFE ID Consul gives `service` in this trust domain.
  std::string spiffe_id(std::string_view service) const;

  // A fresh key and a leaf for `service`, usable as client and as server certificate.
  // Each leaf has its own serial number (see serial_number()).
  CertificateAndKey issue(std::string_view service);

 private:
  std::string trust_domain_;
  EVP_PKEY* key_ = nullptr;
  X509* certificate_ = nullptr;
  std::string certificate_pem_;
  long next_serial_ = 2;
};

// A leaf signed by its own key (no CA vouches for it), naming `spiffe_id`.
CertificateAndKey self_signed_leaf(std::string_view spiffe_id);

// A TLS context presenting `identity` (none when null) and trusting `trusted_ca_pems`;
// peers must present a certificate that chains to one of them (a server also requires
// one). TLS 1.2 and later, as the context providers of a real deployment do.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(
    const CertificateAndKey* identity, const std::vector<std::string>& trusted_ca_pems);

// The first URI SAN of the peer's certificate; nullopt without a certificate or URI.
std::optional<std::string> peer_uri_san(SSL* session);
// The serial number of the peer's certificate; -1 without one.
long peer_serial_number(SSL* session);

}  // namespace coromesh::testing
