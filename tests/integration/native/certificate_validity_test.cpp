// Leaves out of their validity period in a real mesh: Consul's Connect CA is set to a root
// made in the test (so the test can sign leaves Consul never would: expired, or not valid
// yet, with the right SPIFFE ID), then
//  - clients presenting such a leaf are refused at coromesh-sidecar's public port and at a
//    Connect-native service's port, counted by a reason of their own, and the process
//    goes on serving good clients;
//  - an endpoint presenting such a leaf is refused by every kind of caller (sidecar
//    upstream in tcp and http mode, a native service's typed client), counted, and each
//    call goes to the valid instance instead: no caller sees an error.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <coromesh/connect/tls_contexts.hpp>
#include <coromesh/metrics/registry.hpp>
#include <coromesh/service/service.hpp>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "consul_agent.hpp"
#include "mesh_fixture.hpp"
#include "mesh_test_services.hpp"
#include "test_certificate_authority.hpp"
#include "test_env.hpp"

namespace coromesh::testing {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr LeafValidity kExpired{.not_before = -48h, .not_after = -24h};
constexpr LeafValidity kNotYetValid{.not_before = 24h, .not_after = 48h};

// A Connect endpoint that gets no further than the handshake: it presents `leaf` and
// counts the connections it was dialed on. Its own thread until destroyed.
class HandshakeOnlyEndpoint {
 public:
  HandshakeOnlyEndpoint(const consul::LeafCertificate& leaf, const consul::CaRoots& roots)
      : context_(connect::make_tls_context(connect::TlsRole::server, leaf, roots)),
        acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(io_, accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~HandshakeOnlyEndpoint() {
    io_.stop();
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int dialed() const noexcept { return dialed_.load(); }

 private:
  asio::awaitable<void> accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return;
      }
      ++dialed_;
      asio::co_spawn(io_, handshake(std::move(socket)), asio::detached);
    }
  }
  // The caller refuses our leaf: the handshake fails on its side, then on ours.
  asio::awaitable<void> handshake(asio::ip::tcp::socket socket) {
    asio::ssl::stream<asio::ip::tcp::socket> stream(std::move(socket), *context_);
    co_await stream.async_handshake(asio::ssl::stream_base::server,
                                    asio::as_tuple(asio::use_awaitable));
  }

  std::shared_ptr<asio::ssl::context> context_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::atomic<int> dialed_{0};
  std::thread thread_;
};

class CertificateValidity : public ::testing::Test {
 protected:
  void SetUp() override {
    // The test's root becomes the mesh's before any leaf is issued: every leaf Consul
    // signs from now on chains to it, and so do the test's own.
    const auto answer =
        consul_.api("PUT", "/v1/connect/ca/configuration", ca_.consul_ca_config_json());
    ASSERT_EQ(answer.status, 200) << answer.body;
    // Every process started from here on must trust it from its first roots (else a
    // leaf of it would be refused as untrusted_chain): wait for the agent to serve it.
    ASSERT_TRUE(wait_until([&] { return agent_serves_test_root(); }, 30s, 100ms))
        << consul_.api("GET", "/v1/agent/connect/ca/roots").body;
  }
  void TearDown() override {
    for (auto& service : services_) {
      service->request_shutdown();
      service->wait();
    }
  }

  bool agent_serves_test_root() {
    const auto roots = json::parse(consul_.api("GET", "/v1/agent/connect/ca/roots").body);
    auto trimmed = [](std::string_view pem) {
      while (!pem.empty() && std::isspace(static_cast<unsigned char>(pem.back()))) {
        pem.remove_suffix(1);
      }
      return pem;
    };
    for (const auto& root : roots.at("Roots").as_array()) {
      if (root.at("Active").as_bool() &&
          trimmed(root.at("RootCert").as_string()) == trimmed(ca_.root_cert_pem())) {
        return true;
      }
    }
    return false;
  }
  // A Consul-issued leaf for `service`: valid, of the test's root.
  PemPair consul_leaf(const std::string& service) {
    const auto leaf = json::parse(consul_.api("GET", "/v1/agent/connect/ca/leaf/" + service).body);
    return {std::string(leaf.at("CertPEM").as_string()),
            std::string(leaf.at("PrivateKeyPEM").as_string())};
  }
  std::shared_ptr<SSL_CTX> client_with(const consul::LeafCertificate& leaf) {
    return client_context(leaf.cert_pem, leaf.private_key_pem);
  }
  Service& keep(std::unique_ptr<Service> service) {
    services_.push_back(std::move(service));
    return *services_.back();
  }
  // Registers `endpoint` as one more Connect-native instance of whoami (no check: passing).
  void register_whoami(const std::string& id, const HandshakeOnlyEndpoint& endpoint) {
    json::object registration{{"ID", id},
                              {"Name", "whoami"},
                              {"Address", "127.0.0.1"},
                              {"Port", endpoint.port()},
                              {"Connect", {{"Native", true}}}};
    const auto answer =
        consul_.api("PUT", "/v1/agent/service/register", json::serialize(registration));
    ASSERT_EQ(answer.status, 200) << answer.body;
  }

  ConsulAgent consul_;
  TempDir logs_{"coromesh-certificate-validity-test"};
  // Not yet the mesh's CA (SetUp makes it so); Consul keeps its trust domain.
  TestCertificateAuthority ca_{
      std::string(json::parse(consul_.api("GET", "/v1/agent/connect/ca/roots").body)
                      .at("TrustDomain")
                      .as_string())};
  std::vector<std::unique_ptr<Service>> services_;
};

TEST_F(CertificateValidity, TheSidecarRefusesClientLeavesOutOfTheirValidityPeriod) {
  TaggedEchoServer backend("b1");
  const auto public_port = free_port();
  SidecarProcess sidecar(
      consul_, logs_.path(), "b-sidecar",
      {"--service", "b", "--service-addr", backend.address(), "--listen",
       "127.0.0.1:" + std::to_string(public_port), "--register", "--handshake-timeout", "2s"});
  const auto good = consul_leaf("a");
  const auto good_client = client_context(good.cert_pem, good.key_pem);
  auto served = [&] { return tls_exchange(public_port, good_client.get(), "hi") == "b1:hi"; };
  ASSERT_TRUE(wait_until(served, 30s, 100ms)) << sidecar.log_tail();
  // The positive control of the test's own CA: a leaf of it in its validity period.
  EXPECT_EQ(tls_exchange(public_port, client_with(ca_.leaf("a")).get(), "ok"), "b1:ok");

  const auto expired = ca_.leaf("a", std::nullopt, kExpired);
  const auto early = ca_.leaf("a", std::nullopt, kNotYetValid);
  EXPECT_EQ(tls_exchange(public_port, client_with(expired).get(), "x"), "");
  EXPECT_EQ(tls_exchange(public_port, client_with(early).get(), "x"), "");

  auto refused = [&](const std::string& reason) {
    return sidecar.metric(
        "coromesh_sidecar_handshakes_total",
        {R"(listener="inbound")", R"(result="refused")", "reason=\"" + reason + "\""});
  };
  EXPECT_TRUE(wait_until(
      [&] {
        return refused("expired_certificate") >= 1 && refused("not_yet_valid_certificate") >= 1;
      },
      5s))
      << sidecar.metrics();
  EXPECT_EQ(refused("untrusted_chain"), 0) << "they chain to the mesh's root";
  EXPECT_TRUE(served()) << sidecar.log_tail();
  EXPECT_TRUE(sidecar.process().running());
}

TEST_F(CertificateValidity, ANativeServiceRefusesClientLeavesOutOfTheirValidityPeriod) {
  auto& callee = keep(start_whoami(consul_, config::MeshMode::native));
  const std::string request =
      "GET /api/v1/whoami HTTP/1.1\r\nHost: whoami\r\nConnection: close\r\n\r\n";
  const auto good = consul_leaf("caller");
  const auto good_client = client_context(good.cert_pem, good.key_pem);
  auto served = [&] {
    return tls_exchange(callee.port(), good_client.get(), request).starts_with("HTTP/1.1 200");
  };
  ASSERT_TRUE(wait_until(served, 30s, 100ms));
  EXPECT_TRUE(tls_exchange(callee.port(), client_with(ca_.leaf("caller")).get(), request)
                  .starts_with("HTTP/1.1 200"))
      << "a valid leaf of the test's CA is served";

  EXPECT_EQ(tls_exchange(callee.port(),
                         client_with(ca_.leaf("caller", std::nullopt, kExpired)).get(), request),
            "");
  EXPECT_EQ(
      tls_exchange(callee.port(), client_with(ca_.leaf("caller", std::nullopt, kNotYetValid)).get(),
                   request),
      "");
  auto failed = [&](const std::string& reason) {
    return metric_sum(callee.metrics().render(), "coromesh_connect_native_handshakes_total",
                      {R"(result="failed")", "reason=\"" + reason + "\""});
  };
  EXPECT_TRUE(wait_until(
      [&] {
        return failed("expired_certificate") >= 1 && failed("not_yet_valid_certificate") >= 1;
      },
      5s))
      << callee.metrics().render();
  EXPECT_EQ(failed("untrusted_chain"), 0);
  EXPECT_TRUE(served());
}

// whoami has three Connect endpoints: a native instance with a valid leaf, and two that
// present a leaf of the mesh's CA for whoami, one expired, one not valid yet. Every kind
// of caller refuses the two (counted by reason) and every call is answered by the valid
// one: tcp mode tries another endpoint for the connection, http mode and the native
// client for the request (GETs; a handshake refused means nothing was sent).
TEST_F(CertificateValidity, CallersRefuseUpstreamLeavesOutOfTheirValidityPeriod) {
  auto& valid = keep(start_whoami(consul_, config::MeshMode::native));
  HandshakeOnlyEndpoint expired(ca_.leaf("whoami", std::nullopt, kExpired), ca_.roots());
  HandshakeOnlyEndpoint early(ca_.leaf("whoami", std::nullopt, kNotYetValid), ca_.roots());
  register_whoami("whoami-expired", expired);
  register_whoami("whoami-not-yet-valid", early);
  ASSERT_TRUE(wait_until([&] { return connect_endpoints_passing(consul_, "whoami", 3); }, 30s));

  const auto ports = free_ports(2);
  SidecarProcess tcp_sidecar(
      consul_, logs_.path(), "tcp-caller-sidecar",
      {"--service", "tcp-caller", "--upstream", "whoami:" + std::to_string(ports[0])});
  SidecarProcess http_sidecar(
      consul_, logs_.path(), "http-caller-sidecar",
      {"--service", "http-caller", "--upstream", "whoami:" + std::to_string(ports[1]) + ":http"});
  auto native_caller_config =
      mesh_service_config(consul_, "native-caller", config::MeshMode::native);
  native_caller_config.consul_register = false;
  auto& native_caller = keep(std::make_unique<Service>(native_caller_config));
  native_caller.start();
  auto& client = native_caller.client(whoami);

  // One call per caller kind; true when it was answered by the valid instance.
  std::string last_error;
  auto through = [&](std::uint16_t port) {
    const auto [status, body] = HttpConnection(port).request("GET", "/api/v1/whoami");
    last_error = std::to_string(status) + " " + body;
    return status == 200 && body.find(valid.instance_id()) != std::string::npos;
  };
  auto native_call = [&] {
    try {
      return call_whoami(native_caller, client).instance == valid.instance_id();
    } catch (const std::exception& e) {
      last_error = e.what();
      return false;
    }
  };
  // First calls: until each caller has its leaf and whoami's endpoints.
  ASSERT_TRUE(wait_until([&] { return through(ports[0]); }, 30s, 200ms))
      << last_error << tcp_sidecar.log_tail();
  ASSERT_TRUE(wait_until([&] { return through(ports[1]); }, 30s, 200ms))
      << last_error << http_sidecar.log_tail();
  ASSERT_TRUE(wait_until(native_call, 30s, 200ms)) << last_error;

  // Round robin over three endpoints: in six calls each caller meets both bad ones
  // (unless its outlier ejection has already set them aside, which is as good).
  int failures = 0;
  for (int i = 0; i < 6; ++i) {
    failures += through(ports[0]) ? 0 : 1;
    failures += through(ports[1]) ? 0 : 1;
    failures += native_call() ? 0 : 1;
  }
  EXPECT_EQ(failures, 0) << "last: " << last_error;
  // For RELIABILITY.md: what the run did, in numbers.
  std::printf(
      "certificate_validity: 18 calls (6 per caller kind) after warm-up, %d failed; "
      "the expired endpoint dialed %d times, the not-yet-valid one %d times\n",
      failures, expired.dialed(), early.dialed());
  EXPECT_GE(expired.dialed(), 3) << "each caller dialed the expired endpoint";
  EXPECT_GE(early.dialed(), 3) << "each caller dialed the not-yet-valid endpoint";

  for (const auto reason : {"expired_certificate", "not_yet_valid_certificate"}) {
    const std::vector<std::string> labels{R"(listener="whoami")", R"(result="refused")",
                                          std::string("reason=\"") + reason + "\""};
    EXPECT_GE(tcp_sidecar.metric("coromesh_sidecar_handshakes_total", labels), 1)
        << reason << "\n"
        << tcp_sidecar.metrics();
    EXPECT_GE(http_sidecar.metric("coromesh_sidecar_handshakes_total", labels), 1)
        << reason << "\n"
        << http_sidecar.metrics();
    EXPECT_GE(metric_sum(native_caller.metrics().render(),
                         "coromesh_connect_native_upstream_handshakes_total",
                         {R"(upstream="whoami")", R"(result="failed")",
                          std::string("reason=\"") + reason + "\""}),
              1)
        << reason << "\n"
        << native_caller.metrics().render();
  }
  // Each mode counts the refused endpoint as a connect failure by the refusal's reason.
  for (const auto* sidecar : {&tcp_sidecar, &http_sidecar}) {
    EXPECT_GE(sidecar->metric("coromesh_sidecar_upstream_connect_failures_total",
                              {R"(reason="expired_certificate")"}),
              1)
        << sidecar->metrics();
  }
  EXPECT_TRUE(tcp_sidecar.process().running());
  EXPECT_TRUE(http_sidecar.process().running());
}

}  // namespace
}  // namespace coromesh::testing
