// coromesh-sidecar -sidecar-for against a real Consul dev agent: the connect-proxy
// registration is the operator's; the sidecar finds it, follows it with blocking queries
// and registers only its admin port, where Prometheus finds it.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <iostream>

#include "mesh_fixture.hpp"
#include "prometheus_server.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;

class SidecarFor : public ::testing::Test {
 protected:
  // b's own sidecar (standalone form, registering itself): what e's upstreams reach.
  std::unique_ptr<SidecarProcess> b_sidecar_for(const TaggedEchoServer& b, std::uint16_t port) {
    return std::make_unique<SidecarProcess>(
        consul_, logs_.path(), "b-sidecar",
        std::vector<std::string>{"--service", "b", "--service-addr", b.address(), "--listen",
                                 "127.0.0.1:" + std::to_string(port), "--register"});
  }

  // Registers service e-1 (on `port`) whose sidecar (on `sidecar_port`) has one upstream,
  // b, bound on `upstream_port`; returns the agent's status.
  int register_e_with_upstream_b(std::uint16_t port, std::uint16_t sidecar_port,
                                 std::uint16_t upstream_port) {
    json::object upstream{{"DestinationName", "b"}, {"LocalBindPort", upstream_port}};
    json::object body{
        {"Name", "e"},
        {"ID", "e-1"},
        {"Port", port},
        {"Connect",
         json::object{
             {"SidecarService",
              json::object{{"Port", sidecar_port},
                           {"Proxy", json::object{{"Upstreams", json::array{upstream}}}}}}}}};
    return consul_.api("PUT", "/v1/agent/service/register", json::serialize(body)).status;
  }

  ConsulAgent consul_;
  TempDir logs_{"coromesh-sidecar-test"};
};

TEST_F(SidecarFor, ReadsTheRegistrationAndAppliesNewUpstreamsWithoutRestart) {
  TaggedEchoServer b("b1"), e("e1");
  const auto ports = free_ports(4);
  const std::uint16_t b_public = ports[0], e_public = ports[1], e_to_b = ports[2],
                      e_to_b_later = ports[3];
  auto b_sidecar = b_sidecar_for(b, b_public);
  auto register_e = [&](std::uint16_t upstream_port) {
    return register_e_with_upstream_b(e.port(), e_public, upstream_port);
  };
  ASSERT_EQ(register_e(e_to_b), 200);
  // A 30s poll would miss every deadline below: the registration is followed with
  // blocking queries, the poll is only the fallback of an agent that cannot block.
  SidecarProcess e_sidecar(consul_, logs_.path(), "e-sidecar",
                           {"-sidecar-for", "e-1", "--registration-poll", "30s"});
  EXPECT_TRUE(reaches(e_to_b, {"b1"})) << e_sidecar.log_tail();

  ASSERT_EQ(register_e(e_to_b_later), 200);
  const auto changed = std::chrono::steady_clock::now();
  EXPECT_TRUE(reaches(e_to_b_later, {"b1"}, 5s)) << e_sidecar.log_tail();
  std::cout << "new upstream reachable after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - changed)
                   .count()
            << " ms\n";
  EXPECT_TRUE(wait_until([&] { return exchange(e_to_b, "ping", 1s).empty(); }, 5s))
      << "the upstream removed from the registration is closed";
  EXPECT_TRUE(e_sidecar.process().running());
}

// A live change whose new upstream cannot bind (its port is taken) is logged and passed
// over, and the registration is followed on: a later change is applied. Here the failing
// upstream replaces the only one, so no listener is left open when the bind fails.
TEST_F(SidecarFor, AnUpstreamThatCannotBindLeavesTheRegistrationFollowed) {
  TaggedEchoServer b("b1"), e("e1");
  const auto ports = free_ports(4);
  const std::uint16_t b_public = ports[0], e_public = ports[1], e_to_b = ports[2],
                      e_to_b_later = ports[3];
  auto b_sidecar = b_sidecar_for(b, b_public);
  auto register_e = [&](std::uint16_t upstream_port) {
    return register_e_with_upstream_b(e.port(), e_public, upstream_port);
  };
  ASSERT_EQ(register_e(e_to_b), 200);
  SidecarProcess e_sidecar(consul_, logs_.path(), "e-sidecar",
                           {"-sidecar-for", "e-1", "--registration-poll", "30s"});
  ASSERT_TRUE(reaches(e_to_b, {"b1"})) << e_sidecar.log_tail();

  // Someone else listens on the port the next registration names.
  TaggedEchoServer squatter("squatter");
  ASSERT_EQ(register_e(squatter.port()), 200);
  EXPECT_TRUE(wait_until(
      [&] {
        return e_sidecar.log_tail(64 * 1024).find("sidecar.upstream.bind_failed") !=
               std::string::npos;
      },
      10s))
      << e_sidecar.log_tail();

  ASSERT_EQ(register_e(e_to_b_later), 200);
  EXPECT_TRUE(reaches(e_to_b_later, {"b1"}, 10s))
      << "the change after a failed bind was not applied: " << e_sidecar.log_tail(16 * 1024);
  EXPECT_TRUE(e_sidecar.process().running());
}

TEST_F(SidecarFor, FindsAProxyRegisteredUnderAnotherIdByItsDestination) {
  TaggedEchoServer b("b1"), f("f1");
  const auto ports = free_ports(3);
  auto b_sidecar = b_sidecar_for(b, ports[0]);
  ASSERT_EQ(consul_
                .api("PUT", "/v1/agent/service/register",
                     R"({"Name": "f", "ID": "f-1", "Port": )" + std::to_string(f.port()) + "}")
                .status,
            200);
  json::object proxy{
      {"Kind", "connect-proxy"},
      {"Name", "f-sidecar-proxy"},
      {"ID", "my-own-proxy-id"},
      {"Port", ports[1]},
      {"Proxy",
       json::object{{"DestinationServiceName", "f"},
                    {"DestinationServiceID", "f-1"},
                    {"LocalServicePort", f.port()},
                    {"Upstreams", json::array{json::object{{"DestinationName", "b"},
                                                           {"LocalBindPort", ports[2]}}}}}}};
  ASSERT_EQ(consul_.api("PUT", "/v1/agent/service/register", json::serialize(proxy)).status, 200);
  SidecarProcess f_sidecar(consul_, logs_.path(), "f-sidecar", {"-sidecar-for", "f-1"});
  EXPECT_TRUE(reaches(ports[2], {"b1"})) << f_sidecar.log_tail();

  // Nothing to find: one line naming what is missing, exit 2.
  ChildProcess missing({(binary_dir() / "coromesh-sidecar").string(), "--consul",
                        consul_.http_address(), "-sidecar-for", "nobody"},
                       logs_.path() / "missing.log");
  EXPECT_EQ(missing.wait_exit(10s), 2 << 8);
  EXPECT_NE(missing.log_tail().find("no connect-proxy for nobody"), std::string::npos)
      << missing.log_tail();
}

TEST_F(SidecarFor, RegistersItsAdminPortWherePrometheusFindsIt) {
  TaggedEchoServer g("g1");
  const auto ports = free_ports(2);
  const std::uint16_t g_public = ports[0], admin = ports[1];
  json::object body{
      {"Name", "g"},
      {"ID", "g-1"},
      {"Port", g.port()},
      {"Connect",
       json::object{
           {"SidecarService",
            json::object{{"Port", g_public},
                         {"Proxy", json::object{{"Config", json::object{{"coromesh_admin_port",
                                                                         admin}}}}}}}}}};
  ASSERT_EQ(consul_.api("PUT", "/v1/agent/service/register", json::serialize(body)).status, 200);
  PrometheusServer prometheus(PrometheusOptions{.consul_address = consul_.http_address()});
  // No --port: the admin port comes from Proxy.Config.coromesh_admin_port.
  ChildProcess g_sidecar(
      {(binary_dir() / "coromesh-sidecar").string(), "--consul", consul_.http_address(),
       "--consul-check-interval", "1s", "-sidecar-for", "g-1"},
      logs_.path() / "g-sidecar.log");
  ASSERT_TRUE(wait_until(
      [&] { return http_fetch("127.0.0.1", admin, "/health", {.timeout = 1s}).status == 200; },
      15s))
      << g_sidecar.log_tail();

  const auto registered = consul_.api("GET", "/v1/agent/service/g-1-sidecar-proxy-admin");
  ASSERT_EQ(registered.status, 200) << registered.body;
  const auto admin_registration = json::parse(registered.body);
  EXPECT_EQ(admin_registration.at("Service"), "g-sidecar-proxy-admin");
  EXPECT_EQ(admin_registration.at("Port"), admin);
  EXPECT_EQ(admin_registration.at("Meta").at("proxy_id"), "g-1-sidecar-proxy");
  EXPECT_EQ(admin_registration.at("Meta").at("metrics_port"), json::value(std::to_string(admin)));
  EXPECT_EQ(admin_registration.at("Tags").at(0), "metrics");
  const auto sample = prometheus.wait_for_sample(
      R"(coromesh_sidecar_tls_material_generation{job="coromesh",instance="g-1-sidecar-proxy-admin"})",
      60s);
  EXPECT_TRUE(sample) << "Prometheus never scraped the sidecar through consul_sd_configs";

  // On stop it leaves Consul; the operator's connect-proxy registration stays.
  EXPECT_EQ(g_sidecar.stop(10s), 0) << g_sidecar.log_tail();
  EXPECT_EQ(consul_.api("GET", "/v1/agent/service/g-1-sidecar-proxy-admin").status, 404);
  EXPECT_EQ(consul_.api("GET", "/v1/agent/service/g-1-sidecar-proxy").status, 200);
}

}  // namespace
}  // namespace coromesh::testing
