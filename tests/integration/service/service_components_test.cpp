// The seams a sidecar or a Connect-native service builds on: a component taken through
// the service's start-up and two-phase shutdown, and a registration shaped into
// something else (here, registered on another port, as a sidecar registers its public
// mTLS port) that Prometheus still scrapes on the service's own port (Meta metrics_port).

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <coromesh/consul/agent_client.hpp>
#include <coromesh/runtime/io_pool.hpp>
#include <coromesh/service/service.hpp>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "consul_agent.hpp"
#include "prometheus_server.hpp"

namespace coromesh::testing {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

// Records the order of its lifecycle calls, and what Consul held at each of them.
class RecordingComponent final : public ServiceComponent {
 public:
  RecordingComponent(const ConsulAgent& consul, std::string service_id)
      : consul_(consul), service_id_(std::move(service_id)) {}

  std::string_view name() const noexcept override { return "recorder"; }
  void start(runtime::IoPool& pool) override {
    record("start threads=" + std::to_string(pool.size()));
  }
  asio::awaitable<void> stop_accepting() override {
    const bool registered = consul_.api("GET", "/v1/agent/service/" + service_id_).status == 200;
    record(std::string("stop_accepting registered=") + (registered ? "yes" : "no"));
    co_return;
  }
  asio::awaitable<std::size_t> drain(std::chrono::steady_clock::time_point deadline) override {
    record(std::string("drain deadline_in_future=") +
           (deadline > std::chrono::steady_clock::now() ? "yes" : "no"));
    co_return 2;
  }

  std::vector<std::string> calls() const {
    const std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  void record(std::string call) {
    const std::lock_guard lock(mutex_);
    calls_.push_back(std::move(call));
  }

  const ConsulAgent& consul_;
  std::string service_id_;
  mutable std::mutex mutex_;
  std::vector<std::string> calls_;
};

std::uint16_t unused_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

TEST(ServiceComponents, AComponentStartsBeforeRegistrationAndDrainsAfterDeregistration) {
  ConsulAgent consul;
  PrometheusServer prometheus(PrometheusOptions{.consul_address = consul.http_address()});
  config::ServiceConfig config;
  config.name = "shaped";
  config.instance_id = "shaped-1";
  config.consul = {"127.0.0.1", consul.http_port()};
  config.io_threads = 2;
  config.shutdown_grace = 1s;
  config.check_interval = 1s;
  config.log_level = log::Level::warn;
  Service service(config);
  auto recorder = std::make_shared<RecordingComponent>(consul, "shaped-1");
  service.add_component(recorder);
  const std::uint16_t public_port = unused_port();
  service.shape_registration([public_port](consul::ServiceRegistration& registration) {
    registration.port = public_port;  // what a sidecar does with its public listener
    registration.tags.emplace_back("shaped");
  });
  service.start();

  ASSERT_TRUE(wait_until(
      [&] { return consul.api("GET", "/v1/agent/service/shaped-1").status == 200; }, 15s));
  const auto held = json::parse(consul.api("GET", "/v1/agent/service/shaped-1").body).as_object();
  EXPECT_EQ(held.at("Port").as_int64(), public_port);
  EXPECT_EQ(held.at("Meta").at("metrics_port").as_string(), std::to_string(service.port()));
  bool tagged = false;
  for (const auto& tag : held.at("Tags").as_array()) {
    tagged = tagged || tag.as_string() == "shaped";
  }
  EXPECT_TRUE(tagged);

  // Registered on a port where nothing listens, scraped on its own through metrics_port.
  auto up = prometheus.wait_for_sample(R"(up{service="shaped"})", 30s,
                                       [](const auto& sample) { return sample.value == "1"; });
  ASSERT_TRUE(up) << "Prometheus did not scrape the service on its metrics_port";
  EXPECT_EQ(up->labels.at("instance"), "shaped-1");

  service.request_shutdown();
  EXPECT_EQ(service.wait(), 0);
  const auto calls = recorder->calls();
  const std::vector<std::string> expected{"start threads=2", "stop_accepting registered=no",
                                          "drain deadline_in_future=yes"};
  EXPECT_EQ(calls, expected);
}

// A component whose shutdown steps throw: the service still drains and exits.
class FailingComponent final : public ServiceComponent {
 public:
  std::string_view name() const noexcept override { return "failing"; }
  void start(runtime::IoPool&) override {}
  asio::awaitable<void> stop_accepting() override {
    throw std::runtime_error("stop_accepting failed");
    co_return;
  }
  asio::awaitable<std::size_t> drain(std::chrono::steady_clock::time_point) override {
    throw std::runtime_error("drain failed");
    co_return 0;
  }
};

// The shutdown coroutine used to end at the component's exception, before the pool's
// terminate(): wait() never returned, and only a second signal (a forced exit) ended
// the process.
TEST(ServiceComponents, AComponentThatThrowsInItsShutdownDoesNotHangTheService) {
  config::ServiceConfig config;
  config.name = "failing-part";
  config.consul_register = false;
  config.io_threads = 1;
  config.shutdown_grace = 200ms;
  config.log_level = log::Level::error;
  Service service(config);
  service.add_component(std::make_shared<FailingComponent>());
  service.start();
  service.request_shutdown();
  auto exit_code = std::async(std::launch::async, [&service] { return service.wait(); });
  const bool ended = exit_code.wait_for(20s) == std::future_status::ready;
  if (!ended) {
    service.pool().terminate();  // so that the test itself ends
  }
  EXPECT_TRUE(ended) << "the shutdown stopped at the component's exception";
  exit_code.get();
}

// A component whose drain takes `for_how_long`: a shutdown that is still under way.
class SlowDrainComponent final : public ServiceComponent {
 public:
  explicit SlowDrainComponent(std::chrono::milliseconds for_how_long) : for_(for_how_long) {}
  std::string_view name() const noexcept override { return "slow-drain"; }
  void start(runtime::IoPool& pool) override { executor_ = pool.executor(0); }
  asio::awaitable<void> stop_accepting() override { co_return; }
  asio::awaitable<std::size_t> drain(std::chrono::steady_clock::time_point) override {
    draining = true;
    asio::steady_timer timer(executor_, for_);
    co_await timer.async_wait(asio::use_awaitable);
    co_return 0;
  }
  std::atomic<bool> draining{false};

 private:
  std::chrono::milliseconds for_;
  asio::any_io_executor executor_;
};

// A service shutting itself down (as when Consul refuses its registration) took the
// operator's first SIGTERM for a second one and exited 130 at once, cutting off what it
// was draining. The first signal now joins the graceful shutdown; only a second forces.
TEST(ServiceComponentsDeathTest, TheOperatorsFirstSignalDuringASelfShutdownDrainsGracefully) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        config::ServiceConfig config;
        config.name = "self-stopping";
        config.consul_register = false;
        config.io_threads = 1;
        config.log_level = log::Level::error;
        Service service(config);
        auto slow = std::make_shared<SlowDrainComponent>(500ms);
        service.add_component(slow);
        service.start();
        service.request_shutdown();
        for (int i = 0; i < 500 && !slow->draining; ++i) {
          std::this_thread::sleep_for(10ms);
        }
        ::kill(::getpid(), SIGTERM);
        std::_Exit(service.wait() == 0 && slow->draining ? 7 : 1);
      },
      ::testing::ExitedWithCode(7), "");
}

TEST(ServiceComponents, TheAgentClientIsThereWithoutSelfRegistration) {
  ConsulAgent consul;
  config::ServiceConfig config;
  config.name = "unregistered";
  config.consul = {"127.0.0.1", consul.http_port()};
  config.consul_register = false;
  config.io_threads = 1;
  Service service(config);
  consul::AgentClient& agent = service.consul_agent();
  service.start();
  auto found = asio::co_spawn(
                   service.pool().executor(0),
                   [&]() -> asio::awaitable<bool> {
                     co_await agent.kv_put("coromesh/test/seam", "yes");
                     auto entry = co_await agent.kv_get("coromesh/test/seam", {});
                     co_return entry.value&& entry.value->value == "yes";
                   },
                   asio::use_future)
                   .get();
  EXPECT_TRUE(found);
  // The io threads read the routes without a lock from start() on: a route added then is
  // refused, as serve() is, rather than racing them.
  EXPECT_THROW(service.route(http::Verb::get, "/late", "late",
                             [](http::RequestContext&) -> asio::awaitable<http::Response> {
                               co_return http::make_text_response(http::Status::ok, "late");
                             }),
               std::logic_error);
  service.request_shutdown();
  EXPECT_EQ(service.wait(), 0);
}

}  // namespace
}  // namespace coromesh::testing
