// Prometheus as a person meets it: its own web UI (built into ops/.tools/bin/prometheus
// by ops/build-prometheus.sh, from the module's web/ui sources) looked at with headless
// Chromium through ops/prometheus/screenshot.sh, and the mesh's rules loaded by the
// shipped configuration.

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "child_process.hpp"
#include "consul_agent.hpp"
#include "prometheus_server.hpp"

namespace coromesh::testing {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs ops/prometheus/screenshot.sh with `args`; returns its output (stdout and stderr)
// and fails the test if it does not exit 0 within three minutes.
std::string run_screenshot_script(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<std::string> argv{(source_dir() / "ops/prometheus/screenshot.sh").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess script(argv, log);
  auto status = script.wait_exit(std::chrono::minutes(3));
  std::string output = read_file(log);
  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "screenshot.sh did not succeed; its output:\n"
      << output;
  return output;
}

void wait_until_self_scraped(const PrometheusServer& prometheus) {
  auto up = prometheus.wait_for_sample(R"(up{job="prometheus"})", std::chrono::seconds(30),
                                       [](const auto& sample) { return sample.value == "1"; });
  ASSERT_TRUE(up) << "Prometheus on port " << prometheus.port() << " never scraped itself";
}

TEST(PrometheusWebUi, RootLeadsToTheEmbeddedReactApp) {
  PrometheusServer prometheus;
  auto root = http_fetch("127.0.0.1", prometheus.port(), "/");
  EXPECT_EQ(root.status, 302) << root.body;
  EXPECT_EQ(root.headers["location"], "/graph");
  auto graph = http_fetch("127.0.0.1", prometheus.port(), "/graph");
  ASSERT_EQ(graph.status, 200) << graph.body.substr(0, 300);
  EXPECT_NE(graph.body.find(R"(<div id="root">)"), std::string::npos) << graph.body.substr(0, 300);
}

// The Targets page, rendered by a real browser: the React app fetched
// /api/v1/targets and drew the scrape pool with its healthy target.
TEST(PrometheusWebUi, TargetsPageRendersInHeadlessChromium) {
  PrometheusServer prometheus;
  wait_until_self_scraped(prometheus);
  TempDir dir("coromesh-prometheus-ui");
  auto url = "http://127.0.0.1:" + std::to_string(prometheus.port()) + "/targets";
  auto dom = run_screenshot_script({"--dump-dom", url}, dir.path() / "dom.html");
  EXPECT_NE(dom.find("<h2>Targets</h2>"), std::string::npos) << dom.substr(0, 2000);
  EXPECT_NE(dom.find("prometheus (1/1 up)"), std::string::npos) << dom.substr(0, 2000);
  EXPECT_NE(dom.find(">UP<"), std::string::npos) << dom.substr(0, 2000);
}

TEST(PrometheusWebUi, ScreenshotOfTheTargetsPageIsAPicture) {
  PrometheusServer prometheus;
  wait_until_self_scraped(prometheus);
  TempDir dir("coromesh-prometheus-ui");
  auto png = dir.path() / "targets.png";
  auto url = "http://127.0.0.1:" + std::to_string(prometheus.port()) + "/targets";
  run_screenshot_script({url, png.string(), "1200x700"}, dir.path() / "screenshot.log");
  auto bytes = read_file(png);
  ASSERT_GE(bytes.size(), 24U) << "no PNG written";
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // Width and height, big-endian, in the IHDR chunk.
  auto be32 = [&](std::size_t at) {
    return (static_cast<unsigned>(static_cast<unsigned char>(bytes[at])) << 24) |
           (static_cast<unsigned>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
           (static_cast<unsigned>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
           static_cast<unsigned>(static_cast<unsigned char>(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 1200U);
  EXPECT_EQ(be32(20), 700U);
  // A blank or error page compresses to a few kB; the rendered page (navbar, the pool's
  // table, labels) does not.
  EXPECT_GT(bytes.size(), 20000U) << "the screenshot looks empty";
}

// The shipped configuration names ops/prometheus/rules/*.rules.yml: Prometheus loads both
// groups (a rule file it cannot parse would stop it from starting).
TEST(PrometheusRules, ShippedConfigLoadsTheMeshRules) {
  ConsulAgent consul;
  PrometheusServer prometheus(PrometheusOptions{.consul_address = consul.http_address()});
  auto res = http_fetch("127.0.0.1", prometheus.port(), "/api/v1/rules");
  ASSERT_EQ(res.status, 200) << res.body;
  std::set<std::string> groups;
  std::set<std::string> alerts;
  const auto doc = boost::json::parse(res.body);  // named: the loop below walks into it
  for (const auto& group : doc.at("data").at("groups").as_array()) {
    groups.insert(std::string(group.at("name").as_string()));
    for (const auto& rule : group.at("rules").as_array()) {
      if (rule.at("type").as_string() == "alerting") {
        alerts.insert(std::string(rule.at("name").as_string()));
      }
    }
  }
  EXPECT_EQ(groups, (std::set<std::string>{"coromesh.alerts", "coromesh.recording"}));
  EXPECT_TRUE(alerts.count("CoromeshInstanceDown")) << res.body.substr(0, 500);
  EXPECT_TRUE(alerts.count("CoromeshCircuitBreakerOpen")) << res.body.substr(0, 500);
}

}  // namespace
}  // namespace coromesh::testing
