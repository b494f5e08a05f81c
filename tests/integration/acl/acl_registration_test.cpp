// A coromesh service on an ACL-enabled Consul (default policy deny): it registers with
// its own service-identity token, a token of another service cannot register it (the
// start-up error names the permission, not the secret), a missing right at run time is
// counted as forbidden while the service keeps serving, and no secret is ever printed.
#include <gtest/gtest.h>

#include <memory>

#include "child_process.hpp"
#include "consul_acl.hpp"
#include "consul_agent.hpp"
#include "http_fetch.hpp"
#include "mesh_fixture.hpp"
#include "prometheus_server.hpp"
#include "suite_setup.hpp"
#include "test_env.hpp"

namespace coromesh::testing {
namespace {

class AclRegistration : public ::testing::Test {
 protected:
  // One locked-down agent for the suite: each test uses service names of its own.
  static void SetUpTestSuite() {
    coromesh::testing::suite_set_up_or_exit("AclRegistration",
                                            [] { consul_ = new ConsulAgent({.acl = true}); });
  }
  static void TearDownTestSuite() {
    delete consul_;
    consul_ = nullptr;
  }

  // hello-svc named `name`, on a free port, with the token in a file.
  std::unique_ptr<ChildProcess> start_hello(const std::string& name, const AclToken& token,
                                            std::uint16_t port) {
    const auto file = dir_.path() / (name + "-" + std::to_string(port) + ".token");
    write_token_file(file, token.secret_id);
    secrets_.push_back(token.secret_id);
    return std::make_unique<ChildProcess>(
        std::vector<std::string>{(binary_dir() / "hello-svc").string(), "--name=" + name,
                                 "--port=" + std::to_string(port), "--threads=2",
                                 "--consul=" + consul_->http_address(),
                                 "--consul-token-file=" + file.string(),
                                 "--consul-check-interval=500ms", "--shutdown-grace=2s"},
        dir_.path() / (name + "-" + std::to_string(port) + ".log"));
  }

  static bool registered(const std::string& id) {
    return consul_->api("GET", "/v1/agent/service/" + id).status == 200;
  }

  // No secret made by the test in any log of the directory, nor in `extra`.
  void expect_no_secret(const std::string& extra = {}) {
    std::string text = extra + consul_->log_text();
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      if (entry.path().extension() == ".log") {
        text += read_file(entry.path());
      }
    }
    ASSERT_FALSE(text.empty());
    for (const auto& secret : secrets_) {
      EXPECT_EQ(text.find(secret), std::string::npos) << "a token was printed";
    }
  }

  static ConsulAgent* consul_;
  TempDir dir_{"coromesh-acl"};
  std::vector<std::string> secrets_;
};

ConsulAgent* AclRegistration::consul_ = nullptr;

double forbidden(const std::string& metrics) {
  return metric_sum(metrics, "coromesh_consul_requests_total", {R"(outcome="forbidden")"});
}

TEST_F(AclRegistration, AServiceRegistersWithItsOwnTokenAndNeedsNoOtherRight) {
  // What README "Running with ACLs" gives a service: its service identity, and read on its
  // own QoS override keys.
  create_policy(*consul_, "hello-overrides",
                R"(key_prefix "coromesh/qos/hello/" { policy = "read" })");
  const auto token = create_service_token(*consul_, "hello", {"hello-overrides"});
  const auto port = free_port();
  auto hello = start_hello("hello", token, port);
  const std::string id = "hello-" + std::to_string(port);
  ASSERT_TRUE(wait_until([&] { return !hello->running() || registered(id); }, 20s))
      << hello->log_tail();
  ASSERT_TRUE(hello->running()) << hello->log_tail();
  // The agent syncs the registration (and its check) to the catalog with the same token.
  EXPECT_TRUE(wait_until(
      [&] {
        const auto res = consul_->api("GET", "/v1/health/service/hello?passing");
        return res.status == 200 && res.body.find(id) != std::string::npos;
      },
      20s))
      << hello->log_tail();

  // Every call it made so far (registration, resyncs, the override watch) was allowed.
  const auto metrics = http_fetch("127.0.0.1", port, "/metrics").body;
  EXPECT_EQ(forbidden(metrics), 0) << metrics;
  EXPECT_GT(metric_sum(metrics, "coromesh_consul_requests_total", {R"(outcome="ok")"}), 0)
      << metrics;
  hello->stop();
  expect_no_secret(metrics);
}

TEST_F(AclRegistration, AnotherServicesTokenCannotRegisterAndTheErrorNamesThePermission) {
  const auto borrowed = create_service_token(*consul_, "greeter");
  auto hello = start_hello("hello", borrowed, free_port());
  const auto status = hello->wait_exit(30s);
  ASSERT_TRUE(status.has_value()) << "still running with a token that cannot register:\n"
                                  << hello->log_tail();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0);
  const auto log = read_file(hello->log_file());
  EXPECT_NE(log.find(R"(lacks permission 'service:write' on \"hello\")"), std::string::npos) << log;
  EXPECT_NE(log.find(borrowed.accessor_id), std::string::npos)
      << "Consul names the token by its public accessor ID:\n"
      << log;
  expect_no_secret();
}

TEST_F(AclRegistration, AMissingRightAtRunTimeIsCountedAsForbiddenWhileTheServiceServes) {
  // No read on its override keys: the override watch is refused, the service is not.
  const auto token = create_service_token(*consul_, "hello-nokv");
  const auto port = free_port();
  auto hello = start_hello("hello-nokv", token, port);
  double refused = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        refused = forbidden(http_fetch("127.0.0.1", port, "/metrics").body);
        return !hello->running() || refused > 0;
      },
      20s))
      << hello->log_tail();
  ASSERT_TRUE(hello->running()) << hello->log_tail();
  EXPECT_TRUE(registered("hello-nokv-" + std::to_string(port)));
  EXPECT_EQ(http_fetch("127.0.0.1", port, "/health").status, 200);
  const auto log = read_file(hello->log_file());
  EXPECT_NE(log.find("lacks permission 'key:read'"), std::string::npos) << log;
  hello->stop();
  expect_no_secret();
}

TEST_F(AclRegistration, PrometheusDiscoversTheServicesWithItsReadOnlyToken) {
  const auto token = create_service_token(*consul_, "scraped");
  const auto port = free_port();
  auto service = start_hello("scraped", token, port);
  ASSERT_TRUE(wait_until([&] { return registered("scraped-" + std::to_string(port)); }, 20s))
      << service->log_tail();
  const auto reader = create_prometheus_token(*consul_);
  secrets_.push_back(reader.secret_id);
  const auto file = dir_.path() / "prometheus.token";
  write_token_file(file, reader.secret_id);
  PrometheusServer prometheus(
      {.consul_address = consul_->http_address(), .consul_token_file = file.string()});
  // Without the token the default-deny agent would list no service at all.
  const auto up = prometheus.wait_for_sample(R"(up{service="scraped"})", 60s,
                                             [](const auto& s) { return s.value == "1"; });
  EXPECT_TRUE(up.has_value()) << prometheus.query("up").body;
  service->stop();
  expect_no_secret();
}

TEST_F(AclRegistration, AnUnreadableTokenFileIsAStartUpErrorNamingTheSetting) {
  ChildProcess hello(
      {(binary_dir() / "hello-svc").string(), "--port=0", "--consul=" + consul_->http_address(),
       "--consul-token-file=" + (dir_.path() / "missing.token").string()},
      dir_.path() / "missing.log");
  const auto status = hello.wait_exit(15s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2);
  const auto log = read_file(hello.log_file());
  EXPECT_NE(log.find("--consul-token-file (flag): token file "), std::string::npos) << log;
  EXPECT_NE(log.find("missing.token"), std::string::npos) << log;
}

TEST_F(AclRegistration, HelpNeverShowsAToken) {
  const std::string secret = "0b7ec0f2-5ec2-4e7a-9d51-7a3d1d1f00d5";
  ChildProcess help({(binary_dir() / "hello-svc").string(), "--consul-token", secret, "--help"},
                    dir_.path() / "help.txt", {"CONSUL_HTTP_TOKEN=" + secret});
  ASSERT_TRUE(help.wait_exit(15s).has_value());
  const auto text = read_file(help.log_file());
  EXPECT_NE(text.find("--consul-token-file"), std::string::npos) << text;
  EXPECT_EQ(text.find(secret), std::string::npos) << text;
}

}  // namespace
}  // namespace coromesh::testing
