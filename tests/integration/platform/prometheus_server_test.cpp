#include "prometheus_server.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "consul_agent.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;

TEST(PrometheusServerFixture, ScrapesItselfAndAnswersUpQuery) {
  PrometheusServer prometheus;
  auto up = prometheus.wait_for_sample("up", std::chrono::seconds(20));
  ASSERT_TRUE(up) << "Prometheus on port " << prometheus.port()
                  << " never produced a sample for `up`";
  auto value = up->value;
  EXPECT_EQ(value, "1");
  std::cout << "[ prometheus ] up{job=\"prometheus\"} = " << value
            << " (127.0.0.1:" << prometheus.port() << ")\n";
}

TEST(PrometheusServerFixture, RejectsAMalformedQueryWithAClearError) {
  PrometheusServer prometheus;
  auto res = prometheus.query("sum(");
  EXPECT_EQ(res.status, 400) << res.body;
  EXPECT_NE(res.body.find("\"errorType\":\"bad_data\""), std::string::npos) << res.body;
}

// The shipped configuration (ops/prometheus/prometheus.yml.in) finds a service through
// Consul: here Prometheus itself, registered with the `metrics` tag and a
// `metrics_path` Meta key exactly as the framework registers services.
TEST(PrometheusServerFixture, ShippedConfigDiscoversServicesTaggedMetricsInConsul) {
  ConsulAgent consul;
  PrometheusServer prometheus(PrometheusOptions{.consul_address = consul.http_address()});
  auto registration = R"({"ID":"prom-self","Name":"prom-self","Address":"127.0.0.1","Port":)" +
                      std::to_string(prometheus.port()) +
                      R"(,"Tags":["metrics"],"Meta":{"metrics_path":"/metrics"}})";
  ASSERT_EQ(consul.api("PUT", "/v1/agent/service/register", registration).status, 200);

  auto up = prometheus.wait_for_sample(R"(up{job="coromesh",service="prom-self"})",
                                       std::chrono::seconds(30),
                                       [](const auto& sample) { return sample.value == "1"; });
  ASSERT_TRUE(up) << "no up=1 sample for the Consul-discovered service";
  auto instance = up->labels["instance"];
  EXPECT_EQ(instance, "prom-self");
  std::cout << "[ prometheus ] consul_sd found service prom-self, up=1\n";
}

}  // namespace
}  // namespace coromesh::testing
