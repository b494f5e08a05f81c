#pragma once

// Who is on the other end of a Connect mTLS connection. OpenSSL checks the chain against
// the CA roots during the handshake (tls_contexts.hpp); this reads what it does not: the
// certificate's SPIFFE URI SAN, its trust domain (must be the roots' TrustDomain), and,
// on the client side, the service we meant to reach.
//
//   auto [ec] = co_await stream.async_handshake(role, as_tuple(use_awaitable));
//   auto verdict = ec ? classify_handshake_failure(stream, ec)
//                     : verify_peer(stream, {.trust_domain = td, .service = "db"});
//   if (!verdict) { log + count to_string(verdict.refusal); close; }
//
// With TLS 1.3 a client's handshake completes before the server has judged the client's
// certificate: a server's refusal reaches the client as an error on its first read (an
// alert), not as a handshake failure. Only the refusing side can name the reason.
//
// The same calls serve a server handshake (no expected service: authorization decides
// who may call, authorizer.hpp) and a client one. Pure functions of the SSL object:
// call them on the thread that owns the stream, after the handshake.

#include <openssl/ssl.h>

#include <boost/asio/ssl/stream.hpp>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "coromesh/connect/spiffe_id.hpp"

namespace coromesh::connect {

// Why a peer is refused; the names are metric labels and log values.
enum class PeerRefusal : std::uint8_t {
  no_certificate,   // the peer sent none
  untrusted_chain,  // it does not chain to a CA root (self-signed, another CA)
  // It chains to a CA root, but a certificate of the chain (as a rule the leaf: a peer
  // that missed a rotation, a clock far off) is past its notAfter, or before its
  // notBefore. OpenSSL checks validity after trust, so a foreign certificate that has
  // also expired stays untrusted_chain.
  expired_certificate,
  not_yet_valid_certificate,
  no_spiffe_uri,       // a valid certificate without a URI SAN
  invalid_spiffe_uri,  // URI SANs that are not exactly one Connect service identity
  wrong_trust_domain,  // a Connect identity of another cluster
  unexpected_service,  // a valid identity, but not the service we dialed
  handshake_failed,    // anything else: protocol version, ciphers, a peer gone mid-way
};
std::string_view to_string(PeerRefusal refusal) noexcept;

struct PeerExpectation {
  std::string trust_domain;  // the CA roots' TrustDomain
  // Client side: the service this connection is meant to reach. Server side: nullopt.
  std::optional<std::string> service;
};

struct PeerVerification {
  std::optional<SpiffeId> peer;                         // set when the peer is accepted
  PeerRefusal refusal = PeerRefusal::handshake_failed;  // meaningful only when !peer
  std::string detail;  // for the log line: OpenSSL's reason, the URI refused, …

  explicit operator bool() const noexcept { return peer.has_value(); }
};

// After a handshake that succeeded.
PeerVerification verify_peer(SSL* ssl, const PeerExpectation& expected);
// After a handshake that failed: the refusal the failure amounts to (untrusted_chain,
// expired_certificate or not_yet_valid_certificate when OpenSSL's chain check failed,
// no_certificate when the client sent none).
PeerVerification classify_handshake_failure(SSL* ssl, const boost::system::error_code& ec);

template <class Stream>
PeerVerification verify_peer(boost::asio::ssl::stream<Stream>& stream,
                             const PeerExpectation& expected) {
  return verify_peer(stream.native_handle(), expected);
}

template <class Stream>
PeerVerification classify_handshake_failure(boost::asio::ssl::stream<Stream>& stream,
                                            const boost::system::error_code& ec) {
  return classify_handshake_failure(stream.native_handle(), ec);
}

}  // namespace coromesh::connect
