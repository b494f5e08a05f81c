#include "coromesh/consul/registrar.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>

#include "async_test.hpp"
#include "coromesh/log/logger.hpp"
#include "fake_agent_client.hpp"

namespace coromesh::consul {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using coromesh::testing::eventually;
using coromesh::testing::run_async;
using coromesh::testing::sleep_for;

const ServiceRegistration kWeb{.id = "web-1", .name = "web", .port = 8080};
const RegistrarOptions kFast{.resync_interval = 20ms,
                             .retry_initial = 5ms,
                             .retry_max = 20ms,
                             .shutdown_step_timeout = 100ms,
                             .maintenance_reason = "bye"};

class ConsulRegistrar : public ::testing::Test {
 protected:
  // Starts registrar.run() in the background; `finished` and `error` report its end.
  void start(Registrar& registrar) {
    asio::co_spawn(ioc_, registrar.run(), [this](std::exception_ptr e) {
      finished_ = true;
      error_ = e;
    });
  }

  asio::io_context ioc_;
  FakeAgentClient agent_;
  bool finished_ = false;
  std::exception_ptr error_;
};

TEST_F(ConsulRegistrar, RegistersThenShutsDownWithMaintenanceBeforeDeregistering) {
  Registrar registrar(agent_, kWeb, kFast);
  EXPECT_EQ(registrar.service_id(), "web-1");
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 2s));
    co_await registrar.shutdown();
    EXPECT_TRUE(finished_) << "shutdown() returns after run() did";
    EXPECT_FALSE(error_);
  }());
  EXPECT_FALSE(registrar.registered());
  EXPECT_TRUE(agent_.services.empty());
  ASSERT_GE(agent_.calls.size(), 3u);
  EXPECT_EQ(agent_.calls.front(), "register web-1");
  EXPECT_EQ(agent_.calls[agent_.calls.size() - 2], "maintenance web-1 on bye");
  EXPECT_EQ(agent_.calls.back(), "deregister web-1");
}

TEST_F(ConsulRegistrar, RetriesUntilTheAgentIsReachable) {
  agent_.reachable = false;
  Registrar registrar(agent_, kWeb, kFast);
  ::testing::internal::CaptureStderr();
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return agent_.count("register") >= 4; }, 2s));
    EXPECT_FALSE(registrar.registered());
    agent_.reachable = true;
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 2s));
    co_await registrar.shutdown();
  }());
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  auto log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(registrar.registrations(), 1u);
  auto first = log.find("event=consul.register.error");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("event=consul.register.error", first + 1), std::string::npos)
      << "one line per failure streak\n"
      << log;
}

TEST_F(ConsulRegistrar, ARejectedRegistrationEndsRunWithTheConsulError) {
  agent_.reject_status = 400;
  Registrar registrar(agent_, kWeb, kFast);
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return finished_; }, 2s));
  }());
  ASSERT_TRUE(error_);
  try {
    std::rethrow_exception(error_);
  } catch (const ConsulError& e) {
    EXPECT_EQ(e.status(), 400);
  }
  EXPECT_EQ(agent_.count("register"), 1u) << "a 4xx is not retried";
}

TEST_F(ConsulRegistrar, RegistersAgainWhenTheAgentLostTheService) {
  Registrar registrar(agent_, kWeb, kFast);
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 2s));
    EXPECT_TRUE(co_await eventually([&] { return agent_.count("agent_service") >= 2; }, 2s));
    agent_.services.clear();  // as after an agent restart
    EXPECT_TRUE(co_await eventually([&] { return registrar.registrations() == 2; }, 2s));
    EXPECT_TRUE(agent_.services.contains("web-1"));
    co_await registrar.shutdown();
  }());
}

TEST_F(ConsulRegistrar, AnUpdateIsSentAtOnceAndRetriedUntilTheAgentTakesIt) {
  // A long resync interval: the update must not wait for it.
  RegistrarOptions slow = kFast;
  slow.resync_interval = 10s;
  Registrar registrar(agent_, kWeb, slow);
  ServiceRegistration changed = kWeb;
  changed.meta["qos_add"] = "rate_limit=2/1s";
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 2s));
    registrar.update(changed);
    EXPECT_TRUE(
        co_await eventually([&] { return agent_.services["web-1"].meta.contains("qos_add"); }, 2s))
        << "the update waited for the 10 s resync";
    co_await registrar.shutdown();
  }());
  EXPECT_EQ(registrar.registrations(), 1u) << "an update is not a re-registration";
  EXPECT_THROW(registrar.update(ServiceRegistration{.id = "web-2", .name = "web"}),
               std::invalid_argument);
}

TEST_F(ConsulRegistrar, AnUpdateTheAgentRefusesIsSentAgainAtTheNextResync) {
  Registrar registrar(agent_, kWeb, kFast);
  ServiceRegistration changed = kWeb;
  changed.meta["qos_add"] = "bulkhead=1";
  ::testing::internal::CaptureStderr();
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 2s));
    agent_.reachable = false;
    registrar.update(changed);
    co_await sleep_for(100ms);  // five resync intervals with the agent down
    const auto attempts_while_down = agent_.count("register");
    EXPECT_LE(attempts_while_down, 8u) << "retried without waiting between attempts";
    agent_.reachable = true;
    EXPECT_TRUE(
        co_await eventually([&] { return agent_.services["web-1"].meta.contains("qos_add"); }, 2s));
    co_await registrar.shutdown();
  }());
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  ::testing::internal::GetCapturedStderr();
}

TEST_F(ConsulRegistrar, AnUpdateThatPutsALostServiceBackLeavesItRegistered) {
  // The agent lost the instance (a restart) and refused it back for a while; the update
  // that then reaches it registers the instance again, as a re-registration would.
  Registrar registrar(agent_, kWeb, kFast);
  ServiceRegistration changed = kWeb;
  changed.meta["qos_add"] = "bulkhead=1";
  ::testing::internal::CaptureStderr();
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 2s));
    agent_.reject_status = 500;
    agent_.services.clear();
    EXPECT_TRUE(co_await eventually([&] { return !registrar.registered(); }, 2s));
    registrar.update(changed);
    agent_.reject_status = 0;
    EXPECT_TRUE(co_await eventually(
        [&] {
          return agent_.services.contains("web-1") &&
                 agent_.services.at("web-1").meta.contains("qos_add");
        },
        2s));
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 1s))
        << "the agent holds the registration, yet registered() says it does not";
    co_await registrar.shutdown();
  }());
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(registrar.registrations(), 2u) << "the update was the instance's re-registration";
  EXPECT_EQ(agent_.count("maintenance web-1 on"), 1u)
      << "shutdown must take the registered instance through maintenance";
}

TEST_F(ConsulRegistrar, RegistersAgainWithNewCredentials) {
  // The agent syncs a registration with the token it came with: a rotated (and the old
  // one revoked) token must be handed over by registering again.
  Registrar registrar(agent_, kWeb, kFast);
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 2s));
    co_await sleep_for(100ms);  // several resyncs: nothing changed, nothing sent again
    EXPECT_EQ(agent_.count("register"), 1u);
    agent_.credentials = 1;
    EXPECT_TRUE(co_await eventually([&] { return agent_.count("register") == 2; }, 2s));
    co_await sleep_for(100ms);
    EXPECT_EQ(agent_.count("register"), 2u) << "once per change of credentials";
    co_await registrar.shutdown();
  }());
}

TEST_F(ConsulRegistrar, ShutdownInterruptsAStuckCallAndBoundsEachStep) {
  Registrar registrar(agent_, kWeb, kFast);
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 2s));
    agent_.hang = 1h;  // the next resync call never returns
    EXPECT_TRUE(co_await eventually([&] { return agent_.count("agent_service") >= 1; }, 2s));
    auto start_time = std::chrono::steady_clock::now();
    co_await registrar.shutdown();
    auto elapsed = std::chrono::steady_clock::now() - start_time;
    EXPECT_TRUE(finished_);
    EXPECT_GE(elapsed, 200ms) << "two steps, each cut off at 100ms";
    EXPECT_LT(elapsed, 1s);
  }());
  EXPECT_EQ(agent_.count("maintenance"), 1u);
  EXPECT_EQ(agent_.count("deregister"), 1u);
}

TEST_F(ConsulRegistrar, ShutdownWithoutRunDoesNothingAndTwiceIsHarmless) {
  Registrar registrar(agent_, kWeb, kFast);
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    co_await registrar.shutdown();
    co_await registrar.shutdown();
  }());
  EXPECT_TRUE(agent_.calls.empty());
}

TEST_F(ConsulRegistrar, ShutdownWhileTheAgentIsDownDoesNotThrow) {
  Registrar registrar(agent_, kWeb, kFast);
  run_async(ioc_, [&]() -> asio::awaitable<void> {
    start(registrar);
    EXPECT_TRUE(co_await eventually([&] { return registrar.registered(); }, 2s));
    agent_.reachable = false;
    co_await registrar.shutdown();
  }());
  EXPECT_EQ(agent_.calls.back(), "deregister web-1");
}

}  // namespace
}  // namespace coromesh::consul
