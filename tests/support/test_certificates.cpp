#include "test_certificates.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <stdexcept>

namespace coromesh::testing {
namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    throw std::runtime_error(std::string("test certificates: ") + what + " failed");
  }
}

EVP_PKEY* make_p256_key() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  check(key != nullptr, "EVP_EC_gen(P-256)");
  return key;
}

void add_extension(X509* certificate, X509V3_CTX& context, int nid, const std::string& value) {
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str());
  check(extension != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(certificate, extension, -1);
  X509_EXTENSION_free(extension);
}

struct CertificateSpec {
  std::string common_name;
  std::string uri;  // the URI SAN
  long serial = 1;
  bool is_ca = false;
};

// Signs a certificate for `key` with `issuer_key`; a null `issuer` makes it self-signed.
X509* make_certificate(const CertificateSpec& spec, EVP_PKEY* key, X509* issuer,
                       EVP_PKEY* issuer_key) {
  X509* certificate = X509_new();
  check(certificate != nullptr, "X509_new");
  X509_set_version(certificate, 2);  // v3
  ASN1_INTEGER_set(X509_get_serialNumber(certificate), spec.serial);
  X509_gmtime_adj(X509_getm_notBefore(certificate), -3600);
  X509_gmtime_adj(X509_getm_notAfter(certificate), 24 * 3600);
  X509_set_pubkey(certificate, key);
  X509_NAME* subject = X509_get_subject_name(certificate);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(certificate, issuer ? X509_get_subject_name(issuer) : subject);

  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer ? issuer : certificate, certificate, nullptr, nullptr, 0);
  add_extension(certificate, context, NID_subject_key_identifier, "hash");
  if (spec.is_ca) {
    add_extension(certificate, context, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(certificate, context, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(certificate, context, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(certificate, context, NID_key_usage,
                  "critical,digitalSignature,keyEncipherment,keyAgreement");
    add_extension(certificate, context, NID_ext_key_usage, "serverAuth,clientAuth");
    add_extension(certificate, context, NID_authority_key_identifier, "keyid:always");
  }
  add_extension(certificate, context, NID_subject_alt_name, "URI:" + spec.uri);
  check(X509_sign(certificate, issuer_key, EVP_sha256()) > 0, "X509_sign");
  return certificate;
}

template <class Write>
std::string to_pem(Write write) {
  BIO* bio = BIO_new(BIO_s_mem());
  check(bio != nullptr && write(bio) == 1, "PEM_write");
  char* data = nullptr;
  auto size = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(size));
  BIO_free(bio);
  return pem;
}

std::string pem_of(X509* certificate) {
  return to_pem([&](BIO* bio) { return PEM_write_bio_X509(bio, certificate); });
}

std::string pem_of(EVP_PKEY* key) {
  return to_pem([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

}  // namespace

TestCa::TestCa(std::string trust_domain) : trust_domain_(std::move(trust_domain)) {
  key_ = make_p256_key();
  certificate_ =
      make_certificate({"Test CA " + trust_domain_, "spiffe://" + trust_domain_, 1, /*is_ca=*/true},
                       key_, nullptr, key_);
  certificate_pem_ = pem_of(certificate_);
}

TestCa::~TestCa() {
  X509_free(certificate_);
  EVP_PKEY_free(key_);
}

std::string TestCa::spiffe_id(std::string_view service) const {
  return "spiffe://" + trust_domain_ + "/ns/default/dc/dc1/svc/" + std::string(service);
}

CertificateAndKey TestCa::issue(std::string_view service) {
  EVP_PKEY* key = make_p256_key();
  X509* leaf = make_certificate({std::string(service), spiffe_id(service), next_serial_++, false},
                                key, certificate_, key_);
  CertificateAndKey result{pem_of(leaf), pem_of(key)};
  X509_free(leaf);
  EVP_PKEY_free(key);
  return result;
}

CertificateAndKey self_signed_leaf(std::string_view spiffe_id) {
  EVP_PKEY* key = make_p256_key();
  X509* leaf =
      make_certificate({"self-signed", std::string(spiffe_id), 1, false}, key, nullptr, key);
  CertificateAndKey result{pem_of(leaf), pem_of(key)};
  X509_free(leaf);
  EVP_PKEY_free(key);
  return result;
}

std::shared_ptr<boost::asio::ssl::context> make_tls_context(
    const CertificateAndKey* identity, const std::vector<std::string>& trusted_ca_pems) {
  namespace ssl = boost::asio::ssl;
  auto context = std::make_shared<ssl::context>(ssl::context::tls);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  if (identity) {
    context->use_certificate_chain(boost::asio::buffer(identity->certificate_pem));
    context->use_private_key(boost::asio::buffer(identity->private_key_pem), ssl::context::pem);
  }
  for (const auto& ca : trusted_ca_pems) {
    context->add_certificate_authority(boost::asio::buffer(ca));
  }
  context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  return context;
}

std::optional<std::string> peer_uri_san(SSL* session) {
  X509* peer = SSL_get0_peer_certificate(session);
  if (!peer) {
    return std::nullopt;
  }
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(peer, NID_subject_alt_name, nullptr, nullptr));
  std::optional<std::string> uri;
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !uri; ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_URI) {
      const ASN1_IA5STRING* text = name->d.uniformResourceIdentifier;
      uri.emplace(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                  static_cast<std::size_t>(ASN1_STRING_length(text)));
    }
  }
  GENERAL_NAMES_free(names);
  return uri;
}

long peer_serial_number(SSL* session) {
  X509* peer = SSL_get0_peer_certificate(session);
  return peer ? ASN1_INTEGER_get(X509_get0_serialNumber(peer)) : -1;
}

}  // namespace coromesh::testing
