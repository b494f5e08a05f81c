// The hello example as users run it: a real process, a real Consul, real Prometheus.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <boost/json.hpp>
#include <fstream>

#include "prometheus_server.hpp"
#include "service_process.hpp"

namespace coromesh::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// The instances Consul reports for `name`; `passing` adds ?passing.
json::array health_of(const ConsulAgent& consul, const std::string& name, bool passing) {
  auto res = consul.api("GET", "/v1/health/service/" + name + (passing ? "?passing" : ""));
  if (res.status != 200) {
    return {};
  }
  return json::parse(res.body).as_array();
}

TEST(HelloService, ServesItsOperationsHealthAndMetrics) {
  HelloService hello(nullptr);
  auto greet = hello.get("/api/v1/hello?name=mesh");
  EXPECT_EQ(greet.status, 200);
  EXPECT_EQ(greet.body, R"({"message":"hello, mesh"})");
  auto bad = hello.get("/api/v1/hello?delay_ms=x&name=a");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(
      bad.body,
      R"({"error":"invalid_field","reason":"query parameter 'delay_ms': 'x' is not an integer"})");
  auto metrics = hello.get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  for (const char* expected :
       {R"(coromesh_http_server_requests_total{code="200",operation="greet",service="hello"} 1)",
        R"(coromesh_http_server_requests_total{code="400",operation="greet",service="hello"} 1)",
        "# TYPE coromesh_http_server_request_duration_seconds histogram",
        "# TYPE coromesh_http_server_requests_in_flight gauge", "process_resident_memory_bytes",
        "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds"}) {
    EXPECT_NE(metrics.body.find(expected), std::string::npos) << expected;
  }
}

// Resident memory of a process, from /proc/<pid>/status, in KiB.
long resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return -1;
}

TEST(HelloService, IdlesUnder16MiBResident) {
  // The 16 MiB target is for release builds; ASan's shadow memory and TSan's history
  // multiply resident memory, so those builds only guard against a blow-up.
  constexpr std::string_view kSanitizer = COROMESH_TEST_SANITIZER;
  const long limit_kib = kSanitizer.empty() ? 16 * 1024 : 128 * 1024;
  HelloService hello(nullptr);
  ASSERT_EQ(hello.get("/api/v1/hello?name=rss").status, 200);
  auto kib = resident_kib(hello.process().pid());
  std::cout << "[ memory ] hello-svc idle RSS " << kib << " KiB (limit " << limit_kib << " KiB)\n";
  EXPECT_GT(kib, 0);
  EXPECT_LT(kib, limit_kib);
}

TEST(HelloService, HelpListsEverySettingAndBadSettingsStopStartUp) {
  TempDir dir;
  ChildProcess help({(binary_dir() / "hello-svc").string(), "--help"}, dir.path() / "help.log");
  auto status = help.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  auto text = help.log_tail(100000);
  for (const char* flag : {"--port", "--bind", "--threads", "--consul=", "--log-level",
                           "--http-max-body-bytes", "--shutdown-grace", "NOMAD_PORT_http"}) {
    EXPECT_NE(text.find(flag), std::string::npos) << flag;
  }

  ChildProcess bad({(binary_dir() / "hello-svc").string(), "--threads=zero"},
                   dir.path() / "bad.log");
  status = bad.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  auto line = bad.log_tail();
  EXPECT_EQ(line.rfind("config error: --threads (flag): ", 0), 0u) << line;
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << "one line: " << line;
}

TEST(HelloService, RegistersWithConsulAndPassesItsCheck) {
  ConsulAgent consul;
  HelloService hello(&consul);
  json::array passing;
  ASSERT_TRUE(wait_until(
      [&] {
        passing = health_of(consul, "hello", true);
        return passing.size() == 1;
      },
      15s, 100ms))
      << "hello never became passing in Consul";
  const auto& service = passing[0].at("Service");
  EXPECT_EQ(service.at("ID").as_string(), hello.instance_id());
  EXPECT_EQ(service.at("Port").as_int64(), hello.port());
  EXPECT_EQ(service.at("Address").as_string(), "127.0.0.1");
  const auto& tags = service.at("Tags").as_array();
  EXPECT_NE(std::find(tags.begin(), tags.end(), json::value("metrics")), tags.end());
  EXPECT_EQ(service.at("Meta").at("metrics_path").as_string(), "/metrics");
  EXPECT_EQ(service.at("Meta").at("operations").as_string(), "greet,plain");
  std::cout << "[ consul ] " << hello.instance_id() << " registered and passing\n";
}

TEST(HelloService, ReRegistersAfterTheConsulAgentRestarts) {
  ConsulAgent consul;
  HelloService hello(&consul);
  ASSERT_TRUE(wait_until([&] { return health_of(consul, "hello", false).size() == 1; }, 15s));
  consul.restart();  // a dev agent forgets every registration
  EXPECT_TRUE(wait_until([&] { return health_of(consul, "hello", true).size() == 1; }, 20s))
      << "hello did not re-register after the agent restarted";
}

TEST(HelloService, PrometheusFindsItThroughConsulAndScrapesIt) {
  ConsulAgent consul;
  HelloService hello(&consul);
  ASSERT_EQ(hello.get("/api/v1/hello?name=p").status, 200);
  PrometheusServer prometheus(PrometheusOptions{.consul_address = consul.http_address()});
  auto greeted = prometheus.wait_for_sample(
      R"(coromesh_http_server_requests_total{job="coromesh",service="hello",operation="greet",code="200"})",
      30s);
  ASSERT_TRUE(greeted) << "Prometheus never scraped hello through consul_sd_configs";
  auto value = greeted->value;
  EXPECT_EQ(value, "1");
  std::cout << "[ prometheus ] scraped hello via Consul: greet 200 = " << value << "\n";
}

}  // namespace
}  // namespace coromesh::testing
