// mod-svc, the Python operator, in the mesh as a user would put an existing service
// there (README: "Bringing an existing non-C++ service into the mesh"): it registers
// itself in a real Consul agent, a coromesh-sidecar fronts it with Consul Connect mTLS,
// and the frontend reaches it only through a second sidecar's upstream listener.
//
//   frontend --mod=127.0.0.1:U--> frontend sidecar ==mTLS==> mod-svc sidecar :Q --> mod-svc :P
//
// The other operators are called directly: what is under test is the path to mod-svc.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>
#include <string>

#include "calculator_processes.hpp"
#include "consul_agent.hpp"
#include "mesh_fixture.hpp"
#include "prometheus_server.hpp"
#include "suite_setup.hpp"
#include "test_certificate_authority.hpp"

namespace calculator::testing {
namespace {

using namespace std::chrono_literals;
using coromesh::testing::ChildProcess;
using coromesh::testing::ConsulAgent;
using coromesh::testing::SidecarProcess;
using coromesh::testing::wait_until;
namespace json = boost::json;

// mod-svc as its user would start it: registering itself with the agent.
std::unique_ptr<ChildProcess> start_mod_svc(const ConsulAgent& consul,
                                            const std::filesystem::path& log_dir,
                                            const std::string& instance_id, std::uint16_t port) {
  auto process = std::make_unique<ChildProcess>(
      std::vector<std::string>{(coromesh::testing::binary_dir() / "mod-svc").string(), "--port",
                               std::to_string(port), "--consul", consul.http_address(),
                               "--instance-id", instance_id, "--consul-check-interval", "1s",
                               "--shutdown-grace", "2s"},
      log_dir / (instance_id + ".log"));
  const bool registered = wait_until(
      [&] {
        return !process->running() ||
               consul.api("GET", "/v1/agent/service/" + instance_id).status == 200;
      },
      30s);
  if (!registered || !process->running()) {
    throw std::runtime_error(instance_id + " did not register:\n" + process->log_tail());
  }
  return process;
}

double mod_svc_requests(std::uint16_t port, const std::string& code) {
  const auto metrics = coromesh::testing::http_fetch("127.0.0.1", port, "/metrics");
  return coromesh::testing::metric_sum(metrics.body, "coromesh_http_server_requests_total",
                                       {R"(operation="mod")", "code=\"" + code + "\""});
}

class ModSvcMeshTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    coromesh::testing::suite_set_up_or_exit("ModSvcMeshTest", [] {
      dir_ = new coromesh::testing::TempDir("coromesh-mod-svc");
      consul_ = new ConsulAgent();
      const auto ports = coromesh::testing::free_ports(3);
      mod_port_ = ports[0];
      public_port_ = ports[1];
      upstream_port_ = ports[2];
      mod_svc_ = start_mod_svc(*consul_, dir_->path(), "mod-svc-1", mod_port_).release();
      mod_sidecar_ =
          new SidecarProcess(*consul_, dir_->path(), "mod-svc-sidecar",
                             {"--service", "mod-svc", "--service-id", "mod-svc-1", "--service-addr",
                              "127.0.0.1:" + std::to_string(mod_port_), "--listen",
                              "127.0.0.1:" + std::to_string(public_port_), "--register"});
      frontend_sidecar_ = new SidecarProcess(
          *consul_, dir_->path(), "frontend-sidecar",
          {"--service", "frontend", "--upstream", "mod-svc:" + std::to_string(upstream_port_)});
      if (!wait_until(
              [] { return coromesh::testing::connect_endpoints_passing(*consul_, "mod-svc", 1); },
              60s, 100ms)) {
        throw std::runtime_error("mod-svc's sidecar never passed its checks:\n" +
                                 mod_sidecar_->log_tail());
      }
      for (const char* op : {"add", "sub", "mul", "div"}) {
        operators_[op] = new ServiceProcess(std::string(op) + "-svc", dir_->path());
      }
      std::string upstreams = "mod=127.0.0.1:" + std::to_string(upstream_port_);
      for (const auto& [op, service] : operators_) {
        upstreams += "," + op + "=" + service->address();
      }
      frontend_ = new ServiceProcess("frontend", dir_->path(), {"--upstreams=" + upstreams});
    });
  }

  static void TearDownTestSuite() {
    delete frontend_;
    for (auto& [op, service] : operators_) {
      delete service;
    }
    delete frontend_sidecar_;
    delete mod_sidecar_;
    delete mod_svc_;
    delete consul_;
    delete dir_;
  }

  static inline coromesh::testing::TempDir* dir_ = nullptr;
  static inline ConsulAgent* consul_ = nullptr;
  static inline ChildProcess* mod_svc_ = nullptr;
  static inline SidecarProcess* mod_sidecar_ = nullptr;
  static inline SidecarProcess* frontend_sidecar_ = nullptr;
  static inline std::map<std::string, ServiceProcess*> operators_;
  static inline ServiceProcess* frontend_ = nullptr;
  static inline std::uint16_t mod_port_ = 0;
  static inline std::uint16_t public_port_ = 0;
  static inline std::uint16_t upstream_port_ = 0;
};

TEST_F(ModSvcMeshTest, TheFrontendComputesRemaindersThroughBothSidecars) {
  const double answered_before = mod_svc_requests(mod_port_, "200");
  const struct {
    std::string expression;
    int status;
    std::string body_or_error;
  } table[] = {
      {"17 % 5", 200, R"({"result":2})"},
      {"(7 % 3) * 4", 200, R"({"result":4})"},
      {"-17 % 5", 200, R"({"result":-2})"},
      {"7 % 0", 422, "division_by_zero"},
  };
  for (const auto& row : table) {
    SCOPED_TRACE(row.expression);
    const auto result = compute(*frontend_, row.expression);
    ASSERT_EQ(result.status, row.status) << result.body << frontend_sidecar_->log_tail();
    if (row.status == 200) {
      EXPECT_EQ(result.body, row.body_or_error);
    } else {
      const auto error = json::parse(result.body).as_object();
      EXPECT_EQ(error.at("error").as_string(), row.body_or_error);
      EXPECT_EQ(error.at("reason").as_string(),
                "operation mod(7, 0) failed: 7 % 0: division by zero");
    }
  }
  // The calls went through the two sidecars to this mod-svc, not around them.
  EXPECT_EQ(mod_svc_requests(mod_port_, "200"), answered_before + 3);
  EXPECT_GE(frontend_sidecar_->metric("coromesh_sidecar_upstream_connections_total",
                                      {R"(upstream="mod-svc")"}),
            1.0)
      << frontend_sidecar_->metrics();
  EXPECT_GE(mod_sidecar_->metric("coromesh_sidecar_handshakes_total",
                                 {R"(listener="inbound")", R"(result="accepted")"}),
            1.0)
      << mod_sidecar_->metrics();
}

TEST_F(ModSvcMeshTest, ModSvcRegistersForPrometheusAndItsSidecarIsItsConnectEndpoint) {
  const auto service = json::parse(consul_->api("GET", "/v1/agent/service/mod-svc-1").body);
  EXPECT_EQ(service.at("Service").as_string(), "mod-svc");
  EXPECT_EQ(service.at("Address").as_string(), "127.0.0.1");
  EXPECT_EQ(service.at("Port").as_int64(), mod_port_);
  const auto& tags = service.at("Tags").as_array();
  EXPECT_NE(std::find(tags.begin(), tags.end(), json::value("metrics")), tags.end());
  EXPECT_EQ(service.at("Meta").at("metrics_path").as_string(), "/metrics");
  const auto checks = json::parse(consul_->api("GET", "/v1/health/checks/mod-svc").body);
  ASSERT_FALSE(checks.as_array().empty());
  EXPECT_TRUE(wait_until(
      [&] {
        const auto now = json::parse(consul_->api("GET", "/v1/health/checks/mod-svc").body);
        return now.as_array().at(0).at("Status").as_string() == "passing";
      },
      30s))
      << "mod-svc's /health check never passed";
  // Callers are sent to the sidecar's public mTLS port, never to mod-svc's own.
  const auto endpoints = json::parse(consul_->api("GET", "/v1/health/connect/mod-svc").body);
  ASSERT_EQ(endpoints.as_array().size(), 1U);
  EXPECT_EQ(endpoints.as_array().at(0).at("Service").at("Port").as_int64(), public_port_);
}

TEST_F(ModSvcMeshTest, PrometheusScrapesItThroughTheShippedConsulDiscovery) {
  using coromesh::testing::PrometheusOptions;
  const coromesh::testing::PrometheusServer prometheus(
      PrometheusOptions{.consul_address = consul_->http_address()});
  const auto up =
      prometheus.wait_for_sample(R"(up{job="coromesh",service="mod-svc"})", 60s,
                                 [](const auto& sample) { return sample.value == "1"; });
  ASSERT_TRUE(up) << "Prometheus never scraped mod-svc";
  EXPECT_EQ(up->labels.at("instance"), "mod-svc-1");
  // Its exposition parsed: the health checks Consul made are there, by code.
  EXPECT_TRUE(prometheus.wait_for_sample(
      R"(coromesh_http_server_requests_total{service="mod-svc",operation="health",code="200"})",
      60s));
}

TEST_F(ModSvcMeshTest, ThePublicPortServesNothingWithoutAMeshCertificate) {
  const double reached_before = mod_svc_requests(mod_port_, "200");
  const std::string request = "GET /api/v1/execute?l=17&r=5 HTTP/1.1\r\nHost: mod-svc\r\n\r\n";
  const auto plain = coromesh::testing::raw_exchange("127.0.0.1", public_port_, request, 3s);
  EXPECT_EQ(plain.find("HTTP/1.1"), std::string::npos) << plain;
  using coromesh::testing::client_context;
  using coromesh::testing::tls_exchange;
  EXPECT_EQ(tls_exchange(public_port_, client_context("", "").get(), request), "")
      << "TLS without a client certificate";
  const auto impostor = coromesh::testing::self_signed(
      "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/"
      "default/dc/dc1/svc/frontend");
  EXPECT_EQ(tls_exchange(public_port_, client_context(impostor.cert_pem, impostor.key_pem).get(),
                         request),
            "")
      << "a certificate outside Consul's CA";
  EXPECT_EQ(mod_svc_requests(mod_port_, "200"), reached_before) << "nothing reached mod-svc";
  EXPECT_EQ(compute(*frontend_, "17 % 5").body, R"({"result":2})") << "the mesh path still works";
}

TEST_F(ModSvcMeshTest, ModSvcLeavesConsulOnSigterm) {
  auto second = start_mod_svc(*consul_, dir_->path(), "mod-svc-2", coromesh::testing::free_port());
  const auto status = second->stop(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << second->log_tail();
  EXPECT_EQ(consul_->api("GET", "/v1/agent/service/mod-svc-2").status, 404) << second->log_tail();
  EXPECT_NE(second->log_tail().find("event=consul.deregistered id=mod-svc-2"), std::string::npos)
      << second->log_tail();
}

}  // namespace
}  // namespace calculator::testing
