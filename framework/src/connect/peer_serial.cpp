#include "coromesh/connect/peer_serial.hpp"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include <cctype>
#include <memory>

namespace coromesh::connect {

std::string peer_serial(SSL* ssl) {
  const std::unique_ptr<X509, decltype(&X509_free)> cert(SSL_get1_peer_certificate(ssl),
                                                         &X509_free);
  if (!cert) {
    return {};
  }
  const std::unique_ptr<BIGNUM, decltype(&BN_free)> number(
      ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr), &BN_free);
  if (!number) {
    return {};
  }
  char* hex = BN_bn2hex(number.get());
  if (hex == nullptr) {
    return {};
  }
  std::string digits(hex);
  OPENSSL_free(hex);
  if (digits.size() % 2 != 0) {
    digits.insert(digits.begin(), '0');
  }
  std::string out;
  for (std::size_t i = 0; i < digits.size(); i += 2) {
    if (i > 0) {
      out += ':';
    }
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(digits[i])));
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(digits[i + 1])));
  }
  return out;
}

}  // namespace coromesh::connect
