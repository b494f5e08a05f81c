#include "coromesh/connect/peer_verifier.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/ssl/error.hpp>
#include <memory>
#include <vector>

namespace coromesh::connect {
namespace {

struct X509Free {
  void operator()(X509* cert) const noexcept { X509_free(cert); }
};
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* names) const noexcept { GENERAL_NAMES_free(names); }
};

PeerVerification refuse(PeerRefusal refusal, std::string detail) {
  return {std::nullopt, refusal, std::move(detail)};
}

// The certificate's URI SANs, as raw strings (a NUL inside one is kept, and refused by
// the SPIFFE parser).
std::vector<std::string> uri_sans(X509* cert) {
  std::vector<std::string> uris;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) {
    return uris;
  }
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) {
      continue;
    }
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                      static_cast<std::size_t>(ASN1_STRING_length(uri)));
  }
  return uris;
}

// A chain OpenSSL did not accept (its verify result, not X509_V_OK): a certificate out
// of its validity period is told apart from one that does not chain to a root at all.
PeerVerification refuse_chain(long verify_result) {
  const char* detail = X509_verify_cert_error_string(verify_result);
  switch (verify_result) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return refuse(PeerRefusal::expired_certificate, detail);
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return refuse(PeerRefusal::not_yet_valid_certificate, detail);
    default:
      return refuse(PeerRefusal::untrusted_chain, detail);
  }
}

}  // namespace

std::string_view to_string(PeerRefusal refusal) noexcept {
  switch (refusal) {
    case PeerRefusal::no_certificate:
      return "no_certificate";
    case PeerRefusal::untrusted_chain:
      return "untrusted_chain";
    case PeerRefusal::expired_certificate:
      return "expired_certificate";
    case PeerRefusal::not_yet_valid_certificate:
      return "not_yet_valid_certificate";
    case PeerRefusal::no_spiffe_uri:
      return "no_spiffe_uri";
    case PeerRefusal::invalid_spiffe_uri:
      return "invalid_spiffe_uri";
    case PeerRefusal::wrong_trust_domain:
      return "wrong_trust_domain";
    case PeerRefusal::unexpected_service:
      return "unexpected_service";
    case PeerRefusal::handshake_failed:
      return "handshake_failed";
  }
  return "handshake_failed";
}

PeerVerification verify_peer(SSL* ssl, const PeerExpectation& expected) {
  std::unique_ptr<X509, X509Free> cert(SSL_get1_peer_certificate(ssl));
  if (!cert) {
    return refuse(PeerRefusal::no_certificate, "the peer presented no certificate");
  }
  // The contexts of tls_contexts.hpp fail the handshake on a bad chain; this check keeps
  // the verdict right for a stream set up with any other context.
  if (auto result = SSL_get_verify_result(ssl); result != X509_V_OK) {
    return refuse_chain(result);
  }
  if (SSL_session_reused(ssl) == 1) {
    // The chain was verified at the full handshake this session resumes (tls_session_cache.hpp),
    // minutes ago at most; the certificate may have expired since. (0 from the
    // comparison: a time OpenSSL cannot read, refused as expired.)
    if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
      return refuse(PeerRefusal::expired_certificate,
                    "the resumed session's certificate has expired");
    }
    if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
      return refuse(PeerRefusal::not_yet_valid_certificate,
                    "the resumed session's certificate is not valid yet");
    }
  }
  auto uris = uri_sans(cert.get());
  if (uris.empty()) {
    return refuse(PeerRefusal::no_spiffe_uri, "the certificate has no URI SAN");
  }
  if (uris.size() > 1) {
    // SPIFFE allows exactly one: which would be the identity?
    return refuse(PeerRefusal::invalid_spiffe_uri,
                  "the certificate has " + std::to_string(uris.size()) + " URI SANs");
  }
  auto parsed = parse_spiffe_id(uris.front());
  if (!parsed) {
    return refuse(PeerRefusal::invalid_spiffe_uri, parsed.error);
  }
  if (!parsed.id->same_trust_domain(expected.trust_domain)) {
    return refuse(PeerRefusal::wrong_trust_domain, "trust domain " + parsed.id->trust_domain +
                                                       ", expected " + expected.trust_domain);
  }
  if (expected.service && parsed.id->service != *expected.service) {
    return refuse(PeerRefusal::unexpected_service,
                  "service " + parsed.id->service + ", expected " + *expected.service);
  }
  return {std::move(parsed.id), PeerRefusal::handshake_failed, {}};
}

PeerVerification classify_handshake_failure(SSL* ssl, const boost::system::error_code& ec) {
  if (ec.category() == boost::asio::error::get_ssl_category()) {
    auto reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
      return refuse(PeerRefusal::no_certificate, "the peer presented no certificate");
    }
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      auto result = SSL_get_verify_result(ssl);
      return result != X509_V_OK ? refuse_chain(result)
                                 : refuse(PeerRefusal::untrusted_chain, ec.message());
    }
  }
  return refuse(PeerRefusal::handshake_failed, ec.message());
}

}  // namespace coromesh::connect
