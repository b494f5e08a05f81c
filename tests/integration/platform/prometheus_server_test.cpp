#include "prometheus_server.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "consul_agent.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;

TEST(PrometheusServerFixture, ScrapesItselfAndAnswersUpQuery) {
  PrometheusServer prometheus;
  std::string value;
  bool scraped = wait_until(
      [&] {
        auto res = prometheus.query("up");
        if (res.status != 200) {
          return false;
        }
        auto doc = json::parse(res.body);
        const auto& result = doc.at("data").at("result").as_array();
        if (result.empty()) {
          return false;
        }
        value = std::string(result[0].at("value").as_array()[1].as_string());
        return true;
      },
      std::chrono::seconds(20), std::chrono::milliseconds(250));
  ASSERT_TRUE(scraped) << "Prometheus on port " << prometheus.port()
                       << " never produced a sample for `up`";
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

  std::string instance;
  bool discovered = wait_until(
      [&] {
        auto res = prometheus.query(R"(up{job="coromesh",service="prom-self"})");
        if (res.status != 200) {
          return false;
        }
        auto doc = json::parse(res.body);
        const auto& result = doc.at("data").at("result").as_array();
        if (result.empty() || result[0].at("value").as_array()[1].as_string() != "1") {
          return false;
        }
        instance = std::string(result[0].at("metric").at("instance").as_string());
        return true;
      },
      std::chrono::seconds(30), std::chrono::milliseconds(250));
  ASSERT_TRUE(discovered) << "no up=1 sample for the Consul-discovered service";
  EXPECT_EQ(instance, "prom-self");
  std::cout << "[ prometheus ] consul_sd found service prom-self, up=1\n";
}

}  // namespace
}  // namespace coromesh::testing
