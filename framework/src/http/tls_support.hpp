#pragma once

// Internal: what http::Server and http::Client do alike with a TLS session.

#include <openssl/types.h>

#include <boost/system/error_code.hpp>
#include <string>

namespace coromesh::http::detail {

// Raises the session's lowest protocol version to TLS 1.2 when its context allows older
// ones: TLS 1.0 and 1.1 are refused whatever context a provider hands out.
void require_tls12_or_later(SSL* session);

// A short, bounded-variety description of why a handshake failed: OpenSSL's reason
// ("certificate verify failed", "peer did not return a certificate", "unsupported
// protocol") or "connection closed during handshake". Used in counters, logs and errors.
std::string describe_tls_failure(const boost::system::error_code& ec);

// True for a failure OpenSSL reported (an alert, a verification failure), as opposed to
// the transport breaking.
bool is_tls_failure(const boost::system::error_code& ec);

// True for an alert by which the peer refused this side's certificate or the handshake
// itself (bad_certificate, unknown_ca, certificate_required, access_denied, ...). A TLS 1.3
// server sends it after the client's side of the handshake is done, so on a new
// connection it comes in place of the first answer: the request was never read. Any
// other TLS failure there (a record that does not decrypt or parse, an internal_error)
// may come after the server read, even processed, the request.
bool is_handshake_refusal(const boost::system::error_code& ec);

}  // namespace coromesh::http::detail
