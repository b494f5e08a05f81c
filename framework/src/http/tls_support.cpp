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
