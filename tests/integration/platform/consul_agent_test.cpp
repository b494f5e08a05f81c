#include "consul_agent.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace coromesh::testing {
namespace {

namespace json = boost::json;

TEST(ConsulAgentFixture, RegistersAServiceAndSeesItInTheHealthApi) {
  ConsulAgent consul;
  auto version = consul.api("GET", "/v1/agent/self");
  ASSERT_EQ(version.status, 200) << version.error;
  auto self = json::parse(version.body);
  std::cout << "[ consul ] agent " << self.at("Config").at("Version").as_string()
            << " on 127.0.0.1:" << consul.http_port() << "\n";

  auto registration = R"({"ID":"platform-web-1","Name":"platform-web","Port":18080,
                          "Address":"127.0.0.1","Tags":["metrics"],
                          "Meta":{"metrics_path":"/metrics"}})";
  auto put = consul.api("PUT", "/v1/agent/service/register", registration);
  ASSERT_EQ(put.status, 200) << put.body << put.error;

  auto health = consul.api("GET", "/v1/health/service/platform-web");
  ASSERT_EQ(health.status, 200) << health.error;
  auto entries = json::parse(health.body).as_array();
  ASSERT_EQ(entries.size(), 1u) << health.body;
  const auto& service = entries[0].at("Service");
  EXPECT_EQ(service.at("ID").as_string(), "platform-web-1");
  EXPECT_EQ(service.at("Port").as_int64(), 18080);
  EXPECT_EQ(service.at("Meta").at("metrics_path").as_string(), "/metrics");
  std::cout << "[ consul ] /v1/health/service/platform-web lists " << service.at("ID").as_string()
            << "\n";

  auto del = consul.api("PUT", "/v1/agent/service/deregister/platform-web-1");
  ASSERT_EQ(del.status, 200) << del.body;
  auto after = consul.api("GET", "/v1/health/service/platform-web");
  EXPECT_EQ(json::parse(after.body).as_array().size(), 0u) << after.body;
}

TEST(ConsulAgentFixture, RestartKeepsThePortsAndLosesDevState) {
  ConsulAgent consul;
  auto port = consul.http_port();
  ASSERT_EQ(consul.api("PUT", "/v1/kv/coromesh/probe", "1").status, 200);
  consul.restart();
  EXPECT_EQ(consul.http_port(), port);
  EXPECT_EQ(consul.api("GET", "/v1/kv/coromesh/probe").status, 404)
      << "a dev agent keeps nothing across a restart";
}

TEST(ConsulAgentFixture, StoppedAgentRefusesConnections) {
  ConsulAgent consul;
  consul.stop();
  auto res = consul.api("GET", "/v1/status/leader");
  EXPECT_EQ(res.status, 0);
  EXPECT_NE(res.error.find("connect"), std::string::npos) << res.error;
}

}  // namespace
}  // namespace coromesh::testing
