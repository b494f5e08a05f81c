#pragma once

// Certificates made in the test, outside Consul's CA: a self-signed one (the impostor of
// the refusal tests) and a fresh EC key (the new CA key of the rotation test).

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace coromesh::connect::test_certs {

struct PemPair {
  std::string cert_pem;
  std::string key_pem;  // SEC1 ("EC PRIVATE KEY"), as Consul writes and reads keys
};

namespace detail {

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

}  // namespace detail

// A fresh EC P-256 private key in SEC1 PEM.
inline std::string new_ec_key_pem() {
  auto key = detail::ec_key();
  return detail::key_pem(key.get());
}

// A self-signed leaf naming `uri` in its URI SAN, valid for an hour.
inline PemPair self_signed(const std::string& uri) {
  using namespace detail;
  auto key = ec_key();
  std::unique_ptr<X509, CertFree> cert(X509_new());
  require(cert != nullptr, "X509_new");
  require(X509_set_version(cert.get(), 2) == 1, "X509_set_version");
  require(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 4242) == 1, "serial");
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  require(X509_set_pubkey(cert.get(), key.get()) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("impostor"), -1, -1, 0);
  require(X509_set_issuer_name(cert.get(), name) == 1, "X509_set_issuer_name");
  std::string san = "URI:" + uri;
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
  require(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert.get(), ext, -1);
  X509_EXTENSION_free(ext);
  require(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "X509_sign");

  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  require(PEM_write_bio_X509(bio.get(), cert.get()) == 1, "PEM_write_bio_X509");
  return {drain(bio.get()), key_pem(key.get())};
}

}  // namespace coromesh::connect::test_certs
