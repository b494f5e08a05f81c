#pragma once

// OpenSSL contexts for Connect's mTLS, built from one leaf certificate and the CA roots:
// the leaf and its whole chain are presented, every root is a trust anchor, TLS 1.2 is
// the minimum (1.3 preferred, as OpenSSL negotiates the highest both speak), and the
// peer must present a certificate that chains to a root (a server context refuses a
// client without one). What OpenSSL does not check — the SPIFFE identity in the
// certificate — is PeerVerifier's job after the handshake (peer_verifier.hpp).
//
// A context is immutable once built; share it through shared_ptr: every connection
// keeps the one it was handshaken with, whatever is built after (certificate_source.hpp
// swaps them). Any thread.

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <stdexcept>

#include "coromesh/consul/types.hpp"

namespace coromesh::connect {

enum class TlsRole : std::uint8_t { server, client };

// The material is unusable: a PEM OpenSSL cannot read, a key that does not match the
// certificate, no root at all. The message says which; it never contains the key.
class TlsMaterialError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::shared_ptr<boost::asio::ssl::context> make_tls_context(TlsRole role,
                                                            const consul::LeafCertificate& leaf,
                                                            const consul::CaRoots& roots);

}  // namespace coromesh::connect
