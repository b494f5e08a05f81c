#pragma once

// Certificates made in the test, outside Consul: a small CA issuing leaves with whatever
// URI SANs a test needs (those Consul would never issue included), a self-signed
// impostor, and fresh EC keys (the new CA key of a rotation). Header-only; OpenSSL 3.
// Plain values: any thread.

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "coromesh/consul/types.hpp"

namespace coromesh::testing {

struct PemPair {
  std::string cert_pem;
  std::string key_pem;  // SEC1 ("EC PRIVATE KEY"), as Consul writes and reads keys
};

namespace cert_detail {

struct BioFree {
  void operator()(BIO* bio) const noexcept { BIO_free(bio); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const noexcept { EVP_PKEY_free(key); }
};
struct CertFree {
  void operator()(X509* cert) const noexcept { X509_free(cert); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

inline void require(bool ok, const char* what) {
  if (!ok) {
    throw std::runtime_error(std::string("OpenSSL failed: ") + what);
  }
}

inline std::string drain(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(size));
}

inline Key ec_key() {
  Key key(EVP_EC_gen("P-256"));
  require(key != nullptr, "EVP_EC_gen");
  return key;
}

inline std::string key_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  require(PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0, nullptr,
                                               nullptr) == 1,
          "PEM_write_bio_PrivateKey_traditional");
  return drain(bio.get());
}

inline std::string cert_pem(X509* cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  require(PEM_write_bio_X509(bio.get(), cert) == 1, "PEM_write_bio_X509");
  return drain(bio.get());
}

inline void add_extension(X509* cert, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, nid, value.c_str());
  require(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// An unsigned certificate for `key` named `common_name`, valid from `not_before_seconds`
// (relative to now; by default a minute ago) to `not_after_seconds` from now.
inline Cert new_cert(EVP_PKEY* key, const std::string& common_name, long serial,
                     long not_after_seconds, long not_before_seconds = -60) {
  Cert cert(X509_new());
  require(cert != nullptr, "X509_new");
  require(X509_set_version(cert.get(), 2) == 1, "X509_set_version");
  require(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial) == 1, "serial");
  require(X509_gmtime_adj(X509_getm_notBefore(cert.get()), not_before_seconds) != nullptr,
          "notBefore");
  require(X509_gmtime_adj(X509_getm_notAfter(cert.get()), not_after_seconds) != nullptr,
          "notAfter");
  require(X509_set_pubkey(cert.get(), key) == 1, "X509_set_pubkey");
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  return cert;
}

inline std::string san_value(const std::vector<std::string>& uris) {
  std::string san;
  for (const auto& uri : uris) {
    san += (san.empty() ? "URI:" : ",URI:") + uri;
  }
  return san;
}

}  // namespace cert_detail

// A fresh EC P-256 private key in SEC1 PEM.
inline std::string new_ec_key_pem() {
  auto key = cert_detail::ec_key();
  return cert_detail::key_pem(key.get());
}

// A self-signed leaf naming `uri` in its URI SAN, valid for an hour.
inline PemPair self_signed(const std::string& uri) {
  using namespace cert_detail;
  auto key = ec_key();
  auto cert = new_cert(key.get(), "impostor", 4242, 3600);
  require(X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) == 1, "issuer");
  add_extension(cert.get(), NID_subject_alt_name, san_value({uri}));
  require(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "X509_sign");
  return {cert_pem(cert.get()), key_pem(key.get())};
}

// When a leaf is valid, relative to now: by default from a minute ago for three days.
// Past bounds make an expired leaf, future ones a leaf not valid yet.
struct LeafValidity {
  std::chrono::seconds not_before{-60};
  std::chrono::seconds not_after{3 * 86400};
};

// A Connect-like CA: one EC root for `trust_domain`, leaves in Consul's shape. Its root
// and key can be handed to Consul (consul_ca_config_json) so that Consul's own leaves
// and this CA's chain to the same root.
class TestCertificateAuthority {
 public:
  explicit TestCertificateAuthority(
      std::string trust_domain = "11111111-2222-3333-4444-555555555555.consul",
      std::string root_id = "test-root")
      : trust_domain_(std::move(trust_domain)),
        root_id_(std::move(root_id)),
        key_(cert_detail::ec_key()) {
    using namespace cert_detail;
    root_ = new_cert(key_.get(), "Test CA " + root_id_, 1, 86400);
    require(X509_set_issuer_name(root_.get(), X509_get_subject_name(root_.get())) == 1, "issuer");
    add_extension(root_.get(), NID_basic_constraints, "critical,CA:TRUE");
    add_extension(root_.get(), NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
    add_extension(root_.get(), NID_subject_alt_name, "URI:spiffe://" + trust_domain_);
    require(X509_sign(root_.get(), key_.get(), EVP_sha256()) > 0, "X509_sign root");
    root_pem_ = cert_pem(root_.get());
  }

  const std::string& trust_domain() const noexcept { return trust_domain_; }
  std::string service_uri(const std::string& service) const {
    return "spiffe://" + trust_domain_ + "/ns/default/dc/dc1/svc/" + service;
  }

  const std::string& root_cert_pem() const noexcept { return root_pem_; }
  // The body of PUT /v1/connect/ca/configuration making this CA Consul's (provider
  // "consul" with this root and its key). Consul keeps its trust domain.
  std::string consul_ca_config_json() const {
    namespace json = boost::json;
    return json::serialize(json::object{
        {"Provider", "consul"},
        {"Config",
         json::object{{"PrivateKey", cert_detail::key_pem(key_.get())}, {"RootCert", root_pem_}}}});
  }

  consul::CaRoots roots() const {
    return {
        .trust_domain = trust_domain_,
        .active_root_id = root_id_,
        .roots = {{.id = root_id_, .name = "Test CA", .root_cert_pem = root_pem_, .active = true}}};
  }

  // A leaf for `service` whose URI SANs are `uris` (by default the service's SPIFFE ID;
  // pass {} for none, or several).
  consul::LeafCertificate leaf(const std::string& service,
                               std::optional<std::vector<std::string>> uris = std::nullopt,
                               LeafValidity validity = {}) {
    using namespace cert_detail;
    auto key = ec_key();
    long serial = ++serial_;
    auto cert = new_cert(key.get(), service, serial, static_cast<long>(validity.not_after.count()),
                         static_cast<long>(validity.not_before.count()));
    require(X509_set_issuer_name(cert.get(), X509_get_subject_name(root_.get())) == 1, "issuer");
    add_extension(cert.get(), NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), NID_key_usage, "critical,digitalSignature,keyEncipherment");
    add_extension(cert.get(), NID_ext_key_usage, "serverAuth,clientAuth");
    auto names = uris.value_or(std::vector<std::string>{service_uri(service)});
    if (!names.empty()) {
      add_extension(cert.get(), NID_subject_alt_name, san_value(names));
    }
    require(X509_sign(cert.get(), key_.get(), EVP_sha256()) > 0, "X509_sign leaf");
    auto now = std::chrono::system_clock::now();
    return {.serial_number = std::to_string(serial),
            .cert_pem = cert_pem(cert.get()),
            .private_key_pem = key_pem(key.get()),
            .service = service,
            .service_uri = names.empty() ? std::string() : names.front(),
            .valid_after = now + validity.not_before,
            .valid_before = now + validity.not_after};
  }

 private:
  std::string trust_domain_;
  std::string root_id_;
  cert_detail::Key key_;
  cert_detail::Cert root_;
  std::string root_pem_;
  long serial_ = 100;
};

}  // namespace coromesh::testing
