#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "json_codec.hpp"

namespace coromesh::consul::detail {
namespace {

using namespace std::chrono;

// Shapes of Consul 1.15's answers, PEM bodies shortened.
constexpr const char* kRootsAnswer = R"({
  "ActiveRootID": "c7:bd:55",
  "TrustDomain": "7f42f496-fbc7-8692-05ed-334aa5340c1e.consul",
  "Roots": [
    {"ID": "c7:bd:55", "Name": "Consul CA Root Cert", "SerialNumber": 7,
     "RootCert": "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",
     "IntermediateCerts": null, "Active": true, "CreateIndex": 8, "ModifyIndex": 8},
    {"ID": "0a:11:22", "Name": "Old Root", "RootCert": "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n",
     "Active": false}
  ]
})";

constexpr const char* kLeafAnswer = R"({
  "SerialNumber": "09:07:00",
  "CertPEM": "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nINTERMEDIATE\n-----END CERTIFICATE-----\n",
  "PrivateKeyPEM": "-----BEGIN EC PRIVATE KEY-----\nKEY\n-----END EC PRIVATE KEY-----\n",
  "Service": "web",
  "ServiceURI": "spiffe://7f42f496.consul/ns/default/dc/dc1/svc/web",
  "ValidAfter": "2018-05-21T16:52:02Z",
  "ValidBefore": "2018-05-24T16:52:02.25Z",
  "CreateIndex": 5, "ModifyIndex": 5
})";

TEST(ConsulConnectCodec, DecodesCaRoots) {
  auto roots = decode_ca_roots(kRootsAnswer);
  EXPECT_EQ(roots.trust_domain, "7f42f496-fbc7-8692-05ed-334aa5340c1e.consul");
  ASSERT_EQ(roots.roots.size(), 2u);
  EXPECT_EQ(roots.roots[0].id, "c7:bd:55");
  EXPECT_TRUE(roots.roots[0].active);
  EXPECT_FALSE(roots.roots[1].active);
  EXPECT_NE(roots.roots[1].root_cert_pem.find("BBB"), std::string::npos);
  ASSERT_NE(roots.active_root(), nullptr);
  EXPECT_EQ(roots.active_root()->name, "Consul CA Root Cert");
}

TEST(ConsulConnectCodec, RejectsMalformedCaRoots) {
  for (
      const char* bad : {
          "",
          "{",
          "[]",
          "null",
          R"({"TrustDomain": "x.consul"})",
          R"({"TrustDomain": "x.consul", "Roots": []})",
          R"({"TrustDomain": "x.consul", "Roots": {}})",
          R"({"TrustDomain": 7, "Roots": [{"ID": "a", "RootCert": "pem"}]})",
          R"({"Roots": [{"ID": "a", "RootCert": "pem"}]})",
          R"({"TrustDomain": "x.consul", "Roots": [{"ID": "a"}]})",
          R"({"TrustDomain": "x.consul", "Roots": [{"RootCert": "pem"}]})",
          R"({"TrustDomain": "x.consul", "Roots": [{"ID": "a", "RootCert": ["pem"]}]})",
          R"({"TrustDomain": "x.consul", "Roots": [{"ID": "a", "RootCert": "pem", "Active": "yes"}]})",
          R"({"TrustDomain": "x.consul", "Roots": ["pem"]})",
      }) {
    EXPECT_THROW(decode_ca_roots(bad), DecodeError) << bad;
  }
  // Truncated anywhere, the answer is refused rather than half read.
  std::string whole = kRootsAnswer;
  for (std::size_t cut = 0; cut + 1 < whole.size(); cut += 7) {
    EXPECT_THROW(decode_ca_roots(whole.substr(0, cut)), DecodeError) << cut;
  }
}

TEST(ConsulConnectCodec, DecodesALeafKeepingTheWholeChain) {
  auto leaf = decode_leaf_certificate(kLeafAnswer);
  EXPECT_EQ(leaf.serial_number, "09:07:00");
  EXPECT_NE(leaf.cert_pem.find("LEAF"), std::string::npos);
  EXPECT_NE(leaf.cert_pem.find("INTERMEDIATE"), std::string::npos) << "the chain is kept";
  EXPECT_NE(leaf.private_key_pem.find("EC PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(leaf.service, "web");
  EXPECT_EQ(leaf.service_uri, "spiffe://7f42f496.consul/ns/default/dc/dc1/svc/web");
  EXPECT_EQ(leaf.valid_after, sys_days(2018y / May / 21) + 16h + 52min + 2s);
  EXPECT_EQ(leaf.valid_before, sys_days(2018y / May / 24) + 16h + 52min + 2s + 250ms);
}

TEST(ConsulConnectCodec, RejectsMalformedLeaves) {
  auto with = [](const char* field, const char* value) {
    auto object = boost::json::parse(kLeafAnswer).as_object();
    if (value == nullptr) {
      object.erase(field);
    } else {
      object[field] = boost::json::parse(value);
    }
    return boost::json::serialize(object);
  };
  for (const char* field : {"SerialNumber", "CertPEM", "PrivateKeyPEM", "Service", "ServiceURI",
                            "ValidAfter", "ValidBefore"}) {
    EXPECT_THROW(decode_leaf_certificate(with(field, nullptr)), DecodeError) << "no " << field;
    EXPECT_THROW(decode_leaf_certificate(with(field, "42")), DecodeError) << field << " = 42";
    EXPECT_THROW(decode_leaf_certificate(with(field, R"("")")), DecodeError) << field << " empty";
  }
  EXPECT_THROW(decode_leaf_certificate(with("ValidBefore", R"("2018-05-20T00:00:00Z")")),
               DecodeError)
      << "expires before it starts";
  EXPECT_THROW(decode_leaf_certificate("[]"), DecodeError);
  std::string whole = kLeafAnswer;
  for (std::size_t cut = 0; cut + 1 < whole.size(); cut += 7) {
    EXPECT_THROW(decode_leaf_certificate(whole.substr(0, cut)), DecodeError) << cut;
  }
}

TEST(ConsulConnectCodec, ParsesRfc3339AsGoWritesIt) {
  auto base = sys_days(2024y / February / 29) + 23h + 59min + 58s;
  EXPECT_EQ(parse_rfc3339("2024-02-29T23:59:58Z"), base);
  EXPECT_EQ(parse_rfc3339("2024-02-29T23:59:58.000000001Z"), base + 1ns);
  EXPECT_EQ(parse_rfc3339("2024-02-29T23:59:58+02:00"), base - 2h);
  EXPECT_EQ(parse_rfc3339("2024-02-29T23:59:58-00:30"), base + 30min);
}

TEST(ConsulConnectCodec, RefusesWhatIsNotRfc3339) {
  for (const char* bad :
       {"", "2024", "2024-02-29", "2024-02-29T23:59:58", "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z", "2024-02-29T24:00:00Z", "2024-02-29T23:60:00Z",
        "2024-02-29 23:59:58Z", "2024-02-29T23:59:58.Z", "2024-02-29T23:59:58.1234567890Z",
        "2024-02-29T23:59:58+2:00", "2024-02-29T23:59:58Zjunk", "2024-0a-29T23:59:58Z",
        "-024-02-29T23:59:58Z", "2024-02-29T23:59:58+24:00"}) {
    EXPECT_THROW(parse_rfc3339(bad), DecodeError) << bad;
  }
}

// Found by fuzz.consul_decoders: a year Go writes but system_clock cannot hold (its
// nanoseconds span 1678 to 2262) overflowed a signed multiplication; it is refused now,
// and a leaf valid until 9999 (Go's "forever") is a clear decode error, not UB.
TEST(ConsulConnectCodec, RefusesTimestampsOutsideTheClocksRange) {
  for (const char* far : {"1012-02-29T23:59:60Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                          "2262-04-12T00:00:00Z", "1677-09-21T00:00:00Z"}) {
    EXPECT_THROW(parse_rfc3339(far), DecodeError) << far;
  }
  EXPECT_EQ(parse_rfc3339("2262-04-11T00:00:00.999999999Z"),
            sys_days(2262y / April / 11) + 999'999'999ns);
  EXPECT_EQ(parse_rfc3339("1677-09-22T00:00:00Z"), sys_days(1677y / September / 22));
}

TEST(ConsulConnectCodec, EncodesTheAuthorizeRequest) {
  auto body = boost::json::parse(
      encode_authorize_request("db", "spiffe://t/ns/default/dc/dc1/svc/web", "01:02"));
  EXPECT_EQ(body.at("Target"), "db");
  EXPECT_EQ(body.at("ClientCertURI"), "spiffe://t/ns/default/dc/dc1/svc/web");
  EXPECT_EQ(body.at("ClientCertSerial"), "01:02");
}

TEST(ConsulConnectCodec, DecodesAuthorizeAnswersStrictly) {
  auto allowed = decode_authorize_result(R"({"Authorized": true, "Reason": "Default behavior"})");
  EXPECT_TRUE(allowed.authorized);
  EXPECT_EQ(allowed.reason, "Default behavior");
  EXPECT_FALSE(decode_authorize_result(R"({"Authorized": false, "Reason": "deny"})").authorized);
  for (const char* bad : {"", "{", "true", "[]", R"({"Reason": "x"})", R"({"Authorized": "true"})",
                          R"({"Authorized": 1})", R"({"Authorized": null})",
                          R"({"Authorized": true, "Reason": 3})"}) {
    EXPECT_THROW(decode_authorize_result(bad), DecodeError) << bad;
  }
}

}  // namespace
}  // namespace coromesh::consul::detail
