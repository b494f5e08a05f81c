#include "json_codec.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace coromesh::consul::detail {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// Trimmed from a real /v1/health/service/web answer of Consul 1.15.
constexpr const char* kHealthAnswer = R"([
  {"Node": {"ID": "0dbf", "Node": "node-a", "Address": "10.0.0.1", "Datacenter": "dc1"},
   "Service": {"ID": "web-1", "Service": "web", "Tags": ["a", "metrics"], "Address": "127.0.0.1",
               "Meta": {"metrics_path": "/metrics"}, "Port": 8080, "Kind": ""},
   "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
              {"CheckID": "service:web-1", "Status": "warning"}]},
  {"Node": {"Node": "node-b", "Address": "10.0.0.2"},
   "Service": {"ID": "web-2", "Service": "web", "Tags": null, "Address": "", "Port": 8081,
               "Meta": null},
   "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
              {"CheckID": "_service_maintenance:web-2", "Status": "critical"},
              {"CheckID": "service:web-2", "Status": "passing"}]}
])";

TEST(ConsulJsonCodec, DecodesHealthEntries) {
  auto instances = decode_health(kHealthAnswer);
  ASSERT_EQ(instances.size(), 2u);
  const auto& a = instances[0];
  EXPECT_EQ(a.node, "node-a");
  EXPECT_EQ(a.id, "web-1");
  EXPECT_EQ(a.name, "web");
  EXPECT_EQ(a.address, "127.0.0.1");
  EXPECT_EQ(a.port, 8080);
  EXPECT_EQ(a.tags, (std::vector<std::string>{"a", "metrics"}));
  EXPECT_EQ(a.meta.at("metrics_path"), "/metrics");
  EXPECT_EQ(a.status, HealthStatus::warning) << "the worst check wins";

  const auto& b = instances[1];
  EXPECT_EQ(b.address, "10.0.0.2") << "no service address: the node's";
  EXPECT_TRUE(b.tags.empty());
  EXPECT_TRUE(b.meta.empty());
  EXPECT_EQ(b.status, HealthStatus::critical) << "maintenance is a critical check";
}

TEST(ConsulJsonCodec, EmptyHealthAnswerIsNoInstances) {
  EXPECT_TRUE(decode_health("[]").empty());
}

TEST(ConsulJsonCodec, RejectsMalformedHealthAnswers) {
  EXPECT_THROW(decode_health(""), DecodeError);
  EXPECT_THROW(decode_health("[{"), DecodeError);
  EXPECT_THROW(decode_health(R"({"Node": {}})"), DecodeError) << "not an array";
  EXPECT_THROW(decode_health(R"([{"Node": {}}])"), DecodeError) << "no Service";
  EXPECT_THROW(decode_health(R"([{"Node": {}, "Service": {"Port": "80"}}])"), DecodeError);
  EXPECT_THROW(decode_health(R"([{"Node": {}, "Service": {"Port": 70000}}])"), DecodeError);
  EXPECT_THROW(decode_health(R"([{"Node": {}, "Service": {"Port": -1}}])"), DecodeError);
  EXPECT_THROW(decode_health(R"([{"Node": {}, "Service": {"Tags": [1]}}])"), DecodeError);
  EXPECT_THROW(decode_health(R"([{"Node": {}, "Service": {}, "Checks": [{"Status": "odd"}]}])"),
               DecodeError);
}

TEST(ConsulJsonCodec, EncodesARegistrationWithAnHttpCheck) {
  ServiceRegistration registration{.id = "add-1",
                                   .name = "add",
                                   .tags = {"metrics"},
                                   .address = "127.0.0.1",
                                   .port = 9001,
                                   .meta = {{"metrics_path", "/metrics"}},
                                   .check = HttpCheck{.url = "http://127.0.0.1:9001/health",
                                                      .interval = 1s,
                                                      .timeout = 500ms,
                                                      .deregister_critical_service_after = 1min}};
  auto body = json::parse(encode_registration(registration)).as_object();
  EXPECT_EQ(body.at("ID"), "add-1");
  EXPECT_EQ(body.at("Name"), "add");
  EXPECT_EQ(body.at("Tags"), json::array{"metrics"});
  EXPECT_EQ(body.at("Address"), "127.0.0.1");
  EXPECT_EQ(body.at("Port"), 9001);
  EXPECT_EQ(body.at("Meta").at("metrics_path"), "/metrics");
  const auto& check = body.at("Check").as_object();
  EXPECT_EQ(check.at("HTTP"), "http://127.0.0.1:9001/health");
  EXPECT_EQ(check.at("Interval"), "1000ms");
  EXPECT_EQ(check.at("Timeout"), "500ms");
  EXPECT_EQ(check.at("DeregisterCriticalServiceAfter"), "60000ms");
  EXPECT_FALSE(body.contains("Kind"));
  EXPECT_FALSE(body.contains("Proxy"));
}

TEST(ConsulJsonCodec, EncodesAConnectNativeService) {
  ServiceRegistration registration{.name = "add", .port = 9001};
  EXPECT_FALSE(json::parse(encode_registration(registration)).as_object().contains("Connect"));
  registration.connect_native = true;
  auto body = json::parse(encode_registration(registration)).as_object();
  EXPECT_EQ(body.at("Connect"), (json::object{{"Native", true}}));
  EXPECT_FALSE(body.contains("Kind"));
}

TEST(ConsulJsonCodec, EncodesTtlChecksAndConnectProxies) {
  ServiceRegistration registration{
      .name = "add-sidecar-proxy",
      .port = 21000,
      .check = TtlCheck{.ttl = 15s},
      .kind = "connect-proxy",
      .proxy = ProxyConfig{.destination_service_name = "add", .local_service_port = 9001}};
  auto body = json::parse(encode_registration(registration)).as_object();
  EXPECT_FALSE(body.contains("ID")) << "empty ID: Consul uses the name";
  EXPECT_FALSE(body.contains("Tags"));
  EXPECT_EQ(body.at("Check").as_object(), (json::object{{"TTL", "15000ms"}}));
  EXPECT_EQ(body.at("Kind"), "connect-proxy");
  EXPECT_EQ(body.at("Proxy"),
            (json::object{{"DestinationServiceName", "add"}, {"LocalServicePort", 9001}}));
}

TEST(ConsulJsonCodec, EncodesASidecarWithUpstreamsAndSeveralChecks) {
  ServiceRegistration registration{
      .id = "b-sidecar-proxy",
      .name = "b-sidecar-proxy",
      .port = 21000,
      .check = TcpCheck{.address = "127.0.0.1:21000", .interval = 1s, .timeout = 1s},
      .extra_checks = {AliasCheck{.service_id = "b-1"}},
      .kind = "connect-proxy",
      .proxy = ProxyConfig{.destination_service_name = "b",
                           .destination_service_id = "b-1",
                           .upstreams = {{.destination_name = "c", .local_bind_port = 9191},
                                         {.destination_name = "d",
                                          .local_bind_address = "127.0.0.2",
                                          .local_bind_port = 9192,
                                          .protocol = "http"}}}};
  auto body = json::parse(encode_registration(registration)).as_object();
  EXPECT_EQ(
      body.at("Check").as_object(),
      (json::object{{"TCP", "127.0.0.1:21000"}, {"Interval", "1000ms"}, {"Timeout", "1000ms"}}));
  EXPECT_EQ(body.at("Checks"), (json::array{json::object{{"AliasService", "b-1"}}}));
  EXPECT_EQ(body.at("Proxy").at("Upstreams"),
            (json::array{json::object{{"DestinationType", "service"},
                                      {"DestinationName", "c"},
                                      {"LocalBindPort", 9191}},
                         json::object{{"DestinationType", "service"},
                                      {"DestinationName", "d"},
                                      {"LocalBindAddress", "127.0.0.2"},
                                      {"LocalBindPort", 9192},
                                      {"Config", json::object{{"protocol", "http"}}}}}));
}

TEST(ConsulJsonCodec, DecodesAConnectProxyRegistration) {
  // Trimmed from GET /v1/agent/service/b-1-sidecar-proxy of Consul 1.15.
  auto service = decode_agent_service(
      R"({"Kind": "connect-proxy", "ID": "b-1-sidecar-proxy", "Service": "b-sidecar-proxy",
          "Port": 21000, "Address": "",
          "Proxy": {"DestinationServiceName": "b", "DestinationServiceID": "b-1",
                    "LocalServiceAddress": "127.0.0.1", "LocalServicePort": 8080,
                    "Mode": "", "MeshGateway": {}, "Expose": {},
                    "Config": {"protocol": "http", "coromesh_admin_port": 9102,
                               "local_request_timeout_ms": 0, "flag": true,
                               "nested": {"a": 1}, "list": [1]},
                    "Upstreams": [
                      {"DestinationType": "service", "DestinationName": "c",
                       "LocalBindPort": 9191, "MeshGateway": {}},
                      {"DestinationType": "prepared_query", "DestinationName": "q",
                       "LocalBindPort": 9192},
                      {"DestinationName": "d", "LocalBindAddress": "127.0.0.2",
                       "LocalBindPort": 9193, "Config": {"protocol": "http"}}]}})");
  EXPECT_EQ(service.kind, "connect-proxy");
  ASSERT_TRUE(service.proxy);
  EXPECT_EQ(service.proxy->destination_service_name, "b");
  EXPECT_EQ(service.proxy->destination_service_id, "b-1");
  EXPECT_EQ(service.proxy->local_service_address, "127.0.0.1");
  EXPECT_EQ(service.proxy->local_service_port, 8080);
  EXPECT_EQ(service.proxy->upstreams,
            (std::vector<ProxyUpstream>{{.destination_name = "c", .local_bind_port = 9191},
                                        {.destination_name = "d",
                                         .local_bind_address = "127.0.0.2",
                                         .local_bind_port = 9193,
                                         .protocol = "http"}}))
      << "prepared queries are skipped";
  EXPECT_EQ(service.proxy->config,
            (std::map<std::string, std::string>{{"protocol", "http"},
                                                {"coromesh_admin_port", "9102"},
                                                {"local_request_timeout_ms", "0"},
                                                {"flag", "true"}}))
      << "scalars as text, nested values left out";
  EXPECT_FALSE(decode_agent_service(R"({"ID": "web-1", "Service": "web"})").proxy);
}

TEST(ConsulJsonCodec, EncodesCheckUpdates) {
  EXPECT_EQ(json::parse(encode_check_update(HealthStatus::warning, "slow")),
            (json::object{{"Status", "warning"}, {"Output", "slow"}}));
}

TEST(ConsulJsonCodec, DecodesAgentService) {
  auto service = decode_agent_service(
      R"({"ID": "web-1", "Service": "web", "Tags": ["a"], "Meta": {"k": "v"}, "Port": 8080,
          "Address": "127.0.0.1", "ContentHash": "9f53", "Datacenter": "dc1"})");
  EXPECT_EQ(service.id, "web-1");
  EXPECT_EQ(service.name, "web");
  EXPECT_EQ(service.port, 8080);
  EXPECT_EQ(service.meta.at("k"), "v");
  EXPECT_THROW(decode_agent_service(R"({"Port": 1})"), DecodeError);
}

TEST(ConsulJsonCodec, DecodesKvEntries) {
  auto entry = decode_kv_entry(
      R"([{"LockIndex": 0, "Key": "config/add", "Flags": 3, "Value": "aGVsbG8=",
           "CreateIndex": 23, "ModifyIndex": 25}])");
  EXPECT_EQ(entry.key, "config/add");
  EXPECT_EQ(entry.value, "hello");
  EXPECT_EQ(entry.modify_index, 25u);
  EXPECT_EQ(entry.flags, 3u);
  EXPECT_EQ(decode_kv_entry(R"([{"Key": "k", "Value": null}])").value, "")
      << "Consul sends null for an empty value";
  EXPECT_THROW(decode_kv_entry(R"([{"Key": "k", "Value": "not base64!"}])"), DecodeError);
  EXPECT_THROW(decode_kv_entry("[]"), DecodeError);
}

TEST(ConsulJsonCodec, DecodesARecursiveKvAnswer) {
  auto entries = decode_kv_entries(
      R"([{"Key": "qos/add/", "Value": null, "ModifyIndex": 3, "Flags": 0},
          {"Key": "qos/add/execute", "Value": "e30=", "ModifyIndex": 9, "Flags": 0}])");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].key, "qos/add/");
  EXPECT_EQ(entries[0].value, "");
  EXPECT_EQ(entries[1].key, "qos/add/execute");
  EXPECT_EQ(entries[1].value, "{}");
  EXPECT_EQ(entries[1].modify_index, 9u);
  EXPECT_TRUE(decode_kv_entries("[]").empty());
  // One bad entry fails the answer, naming the key: no partial set of overrides.
  try {
    decode_kv_entries(
        R"([{"Key": "a", "Value": "e30=", "ModifyIndex": 1}, {"Key": "b", "Value": "%%"}])");
    ADD_FAILURE() << "a non-base64 value was decoded";
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("'b'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(decode_kv_entries(R"({"Key": "a"})"), DecodeError);
  EXPECT_THROW(decode_kv_entries(R"([1])"), DecodeError);
}

TEST(ConsulJsonCodec, DecodesBooleans) {
  EXPECT_TRUE(decode_bool("true"));
  EXPECT_FALSE(decode_bool("false\n"));
  EXPECT_THROW(decode_bool("1"), DecodeError);
}

}  // namespace
}  // namespace coromesh::consul::detail
