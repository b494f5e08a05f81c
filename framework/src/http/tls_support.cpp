#include "tls_support.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

namespace coromesh::http::detail {

namespace asio = boost::asio;

void require_tls12_or_later(SSL* session) {
  // 0 means "the lowest this OpenSSL supports".
  auto minimum = SSL_get_min_proto_version(session);
  if (minimum == 0 || minimum < TLS1_2_VERSION) {
    SSL_set_min_proto_version(session, TLS1_2_VERSION);
  }
}

bool is_tls_failure(const boost::system::error_code& ec) {
  return ec.category() == asio::error::get_ssl_category();
}

bool is_handshake_refusal(const boost::system::error_code& ec) {
  if (!is_tls_failure(ec)) {
    return false;
  }
  switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:  // our CertificateVerify did not verify
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

std::string describe_tls_failure(const boost::system::error_code& ec) {
  if (is_tls_failure(ec)) {
    // Asio keeps OpenSSL's packed error code; its reason string alone is what tells
    // failures apart (the library part is always "SSL routines").
    if (const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()))) {
      return reason;
    }
    return ec.message();
  }
  if (ec == asio::ssl::error::stream_truncated || ec == asio::error::eof ||
      ec == asio::error::connection_reset || ec == asio::error::broken_pipe) {
    return "connection closed during handshake";
  }
  return ec.message();
}

}  // namespace coromesh::http::detail
