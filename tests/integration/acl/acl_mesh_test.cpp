// Two coromesh-sidecars on an ACL-enabled Consul with default-deny intentions, each with
// the service-identity token of its own service in a token file: A reaches B only while
// an intention allows it (the refusal carries Consul's reason); a client with a valid
// certificate but no allow is refused; a revoked token keeps B serving the callers it
// knew (counted as forbidden) and a rewritten token file brings everything back; no
// token string appears in any log or /metrics.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <map>

#include "consul_acl.hpp"
#include "mesh_fixture.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;

class AclMesh : public ::testing::Test {
 protected:
  void SetUp() override {
    deny_all_intentions(consul_);
    set_intentions(consul_, "b", {{"a", "allow"}});
    a_token_ = create_service_token(consul_, "a");
    b_token_ = create_service_token(consul_, "b");
    write_token_file(a_file_, a_token_.secret_id);
    write_token_file(b_file_, b_token_.secret_id);
    const auto ports = free_ports(3);
    b_public_ = ports[0];
    a_upstream_ = ports[2];
    b_sidecar_ = std::make_unique<SidecarProcess>(
        consul_, dir_.path(), "b-sidecar",
        std::vector<std::string>{"--service", "b", "--service-addr", b_.address(), "--listen",
                                 "127.0.0.1:" + std::to_string(b_public_), "--register",
                                 "--consul-token-file", b_file_.string(),
                                 "--consul-resync-interval", "300ms"});
    a_sidecar_ = std::make_unique<SidecarProcess>(
        consul_, dir_.path(), "a-sidecar",
        std::vector<std::string>{"--service", "a", "--service-addr", a_.address(), "--listen",
                                 "127.0.0.1:" + std::to_string(ports[1]), "--register",
                                 "--upstream", "b:" + std::to_string(a_upstream_),
                                 "--consul-token-file", a_file_.string()});
    ASSERT_TRUE(
        wait_until([&] { return exchange(a_upstream_, "ping", 2s) == "b1:ping"; }, 30s, 100ms))
        << a_sidecar_->log_tail() << b_sidecar_->log_tail();
  }

  void TearDown() override {
    // Whatever happened above, no token string was printed or exported.
    std::string text = b_sidecar_ ? b_sidecar_->metrics() : std::string();
    text += a_sidecar_ ? a_sidecar_->metrics() : std::string();
    a_sidecar_.reset();
    b_sidecar_.reset();
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      if (entry.path().extension() == ".log") {
        text += read_file(entry.path());
      }
    }
    text += consul_.log_text();
    for (const auto& secret : {a_token_.secret_id, b_token_.secret_id, new_b_token_.secret_id}) {
      if (!secret.empty()) {
        EXPECT_EQ(text.find(secret), std::string::npos) << "a token was printed";
      }
    }
  }

  // A Consul-issued leaf for `service` (the operator's token may ask for any).
  std::shared_ptr<SSL_CTX> client_of(const std::string& service) {
    const auto leaf = json::parse(consul_.api("GET", "/v1/agent/connect/ca/leaf/" + service).body);
    return client_context(std::string(leaf.at("CertPEM").as_string()),
                          std::string(leaf.at("PrivateKeyPEM").as_string()));
  }
  double b_forbidden() const {
    return b_sidecar_->metric("coromesh_consul_requests_total", {R"(outcome="forbidden")"});
  }
  std::string b_log() const { return read_file(b_sidecar_->process().log_file()); }

  ConsulAgent consul_{{.acl = true}};
  TempDir dir_{"coromesh-acl-mesh"};
  std::filesystem::path a_file_ = dir_.path() / "a.token";
  std::filesystem::path b_file_ = dir_.path() / "b.token";
  AclToken a_token_, b_token_, new_b_token_;
  TaggedEchoServer a_{"a"}, b_{"b1"};
  std::uint16_t b_public_ = 0, a_upstream_ = 0;
  std::unique_ptr<SidecarProcess> b_sidecar_, a_sidecar_;
};

TEST_F(AclMesh, RemovingTheAllowRefusesAWithConsulsReason) {
  ASSERT_EQ(consul_.api("DELETE", "/v1/config/service-intentions/b").status, 200);
  // The sidecar caches a decision for a second.
  EXPECT_TRUE(wait_until([&] { return exchange(a_upstream_, "ping", 2s).empty(); }, 15s, 200ms))
      << b_sidecar_->log_tail();
  EXPECT_GE(b_sidecar_->metric("coromesh_sidecar_handshakes_total",
                               {R"(result="refused")", R"(reason="unauthorized")"}),
            1);
  // Consul's own words, from the "*" -> "*" deny that now matches (the log is written
  // asynchronously: poll for the line).
  std::string log;
  ASSERT_TRUE(wait_until(
      [&] {
        log = b_log();
        return log.find("sidecar.inbound.refused") != std::string::npos;
      },
      10s))
      << log;
  const auto refused = log.find("sidecar.inbound.refused");
  const auto line = log.substr(refused, log.find('\n', refused) - refused);
  EXPECT_NE(line.find("reason=unauthorized"), std::string::npos) << line;
  EXPECT_NE(line.find("intention"), std::string::npos) << line;
  std::cout << "refusal: " << line << "\n";
}

TEST_F(AclMesh, AValidCertificateOfAServiceWithNoAllowIsRefused) {
  EXPECT_EQ(tls_exchange(b_public_, client_of("a").get(), "hi"), "b1:hi") << "positive control";
  EXPECT_EQ(tls_exchange(b_public_, client_of("c").get(), "hi"), "") << b_sidecar_->log_tail();
  EXPECT_GE(b_sidecar_->metric("coromesh_sidecar_handshakes_total",
                               {R"(result="refused")", R"(reason="unauthorized")"}),
            1);
}

TEST_F(AclMesh, ARevokedTokenKeepsKnownCallersServedAndARewrittenTokenFileRecovers) {
  set_intentions(consul_, "b", {{"a", "allow"}, {"c", "allow"}});
  const auto c = client_of("c");
  delete_token(consul_, b_token_);
  // B's next Consul calls (its 300ms resync first) are refused and counted.
  ASSERT_TRUE(wait_until([&] { return b_forbidden() > 0; }, 15s)) << b_sidecar_->log_tail();
  // Past the authorization cache's second: A, decided before, is still served (the last
  // decision and the last certificates); C, never decided, is not.
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(exchange(a_upstream_, "still", 5s), "b1:still") << b_sidecar_->log_tail();
  EXPECT_EQ(tls_exchange(b_public_, c.get(), "hi"), "") << b_sidecar_->log_tail();
  EXPECT_TRUE(b_sidecar_->process().running());

  new_b_token_ = create_service_token(consul_, "b");
  write_token_file(b_file_, new_b_token_.secret_id);
  EXPECT_TRUE(
      wait_until([&] { return tls_exchange(b_public_, c.get(), "hi", 2s) == "b1:hi"; }, 20s, 200ms))
      << b_sidecar_->log_tail();
  // B registered again with the new token, for the agent's anti-entropy to use it.
  EXPECT_TRUE(
      wait_until([&] { return b_log().find("why=\"new credentials\"") != std::string::npos; }, 10s))
      << b_sidecar_->log_tail();
  const double settled = b_forbidden();
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(b_forbidden(), settled) << "still forbidden after the rotation";
  EXPECT_EQ(exchange(a_upstream_, "ping"), "b1:ping");
}

// A sidecar whose token cannot get its own leaf (here: another service's token) fails
// every connection on "no certificate yet", and blames no endpoint for it: once a
// rewritten token file brings the leaf, its connections spread over both of B's
// instances. Blamed, one of them had been ejected (5 failures in a row) for 30 s.
TEST_F(AclMesh, ASidecarWithoutItsOwnLeafHoldsNoFailureAgainstAnEndpoint) {
  set_intentions(consul_, "b", {{"a", "allow"}, {"c", "allow"}});
  TaggedEchoServer b2("b2");
  const auto ports = free_ports(2);
  SidecarProcess b2_sidecar(consul_, dir_.path(), "b2-sidecar",
                            {"--service", "b", "--service-addr", b2.address(), "--listen",
                             "127.0.0.1:" + std::to_string(ports[0]), "--register", "--instance-id",
                             "b2-sidecar-proxy", "--consul-token-file", b_file_.string()});
  const auto c_file = dir_.path() / "c.token";
  write_token_file(c_file, a_token_.secret_id);  // not c's: Consul refuses c's leaf
  const auto c_upstream = ports[1];
  SidecarProcess c_sidecar(
      consul_, dir_.path(), "c-sidecar",
      {"--service", "c", "--upstream", "b:" + std::to_string(c_upstream), "--consul-token-file",
       c_file.string(), "--handshake-timeout", "500ms"});
  ASSERT_TRUE(
      wait_until([&] { return c_sidecar.metric("coromesh_sidecar_upstream_endpoints") == 2; }, 30s))
      << c_sidecar.log_tail();
  // Five failures in a row on each endpoint, were they blamed.
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(exchange(c_upstream, "early", 5s), "") << c_sidecar.log_tail();
  }
  EXPECT_EQ(c_sidecar.metric("coromesh_sidecar_upstream_connect_failures_total",
                             {R"(reason="no_certificate_yet")"}),
            12);

  const auto c_token = create_service_token(consul_, "c");
  write_token_file(c_file, c_token.secret_id);
  ASSERT_TRUE(
      wait_until([&] { return exchange(c_upstream, "ping", 2s).ends_with(":ping"); }, 30s, 200ms))
      << c_sidecar.log_tail();
  std::map<std::string, int> by_instance;
  for (int i = 0; i < 20; ++i) {
    const auto answer = exchange(c_upstream, "x", 5s);
    ++by_instance[answer.substr(0, answer.find(':'))];
  }
  EXPECT_GE(by_instance["b1"], 5) << "an endpoint was ejected for the sidecar's own state";
  EXPECT_GE(by_instance["b2"], 5) << "an endpoint was ejected for the sidecar's own state";
}

// The same in http mode: a request refused for want of the sidecar's own leaf never left
// (503 no_certificate_yet) and is counted as the framework counts its typed client's
// identity_unavailable, fault="rejected": the sidecar's own plumbing, not a transport
// failure between it and the callee (as it was counted before).
TEST_F(AclMesh, AnHttpRequestRefusedForWantOfTheSidecarsOwnLeafIsARefusal) {
  set_intentions(consul_, "b", {{"c", "allow"}});
  const auto c_file = dir_.path() / "c.token";
  write_token_file(c_file, a_token_.secret_id);  // not c's: Consul refuses c's leaf
  const auto c_upstream = free_port();
  SidecarProcess c_sidecar(
      consul_, dir_.path(), "c-http-sidecar",
      {"--service", "c", "--upstream", "b:" + std::to_string(c_upstream) + ":http",
       "--consul-token-file", c_file.string(), "--handshake-timeout", "500ms"});
  ASSERT_TRUE(
      wait_until([&] { return c_sidecar.metric("coromesh_sidecar_upstream_endpoints") >= 1; }, 30s))
      << c_sidecar.log_tail();
  const auto [status, body] = HttpConnection(c_upstream).request("GET", "/early");
  EXPECT_EQ(status, 503) << body << c_sidecar.log_tail();
  EXPECT_NE(body.find("no_certificate_yet"), std::string::npos) << body;
  EXPECT_EQ(c_sidecar.metric("coromesh_sidecar_request_failures_total",
                             {R"(listener="b")", R"(fault="rejected")"}),
            1)
      << c_sidecar.metrics();
  EXPECT_EQ(c_sidecar.metric("coromesh_sidecar_request_failures_total",
                             {R"(listener="b")", R"(fault="transport")"}),
            0)
      << c_sidecar.metrics();
}

}  // namespace
}  // namespace coromesh::testing
