#include "coromesh/connect/endpoint_watch.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <string>
#include <vector>

#include "consul_test_fixture.hpp"
#include "coromesh/connect/load_balancer.hpp"

namespace coromesh::connect {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::ConsulIntegration;
using consul::eventually;
using consul::off_loop;
using consul::sleep_for;
using EndpointWatchIntegration = ConsulIntegration;

// Registers a `connect-proxy` in front of `destination`, with a TTL check the test passes
// and fails through the agent.
consul::ServiceRegistration sidecar(const std::string& id, const std::string& destination,
                                    std::uint16_t port) {
  return {.id = id,
          .name = destination + "-sidecar-proxy",
          .address = "127.0.0.1",
          .port = port,
          .check = consul::TtlCheck{.ttl = 60s},
          .kind = "connect-proxy",
          .proxy = consul::ProxyConfig{.destination_service_name = destination,
                                       .local_service_address = "127.0.0.1",
                                       .local_service_port = 9000}};
}

std::vector<std::string> ids_of(const EndpointWatch::Snapshot& snapshot) {
  std::vector<std::string> ids;
  if (snapshot) {
    for (const auto& endpoint : snapshot->endpoints) {
      ids.push_back(endpoint.instance_id);
    }
  }
  return ids;
}

TEST_F(EndpointWatchIntegration, FollowsSidecarsComingAndGoingAndOutlivesTheAgent) {
  EndpointWatch watch(agent_, "b", {.backoff_initial = 50ms, .backoff_max = 500ms});
  std::vector<std::vector<std::string>> seen;  // each distinct snapshot, in order
  run([&]() -> asio::awaitable<void> {
    asio::cancellation_signal stop;
    bool finished = false;
    std::exception_ptr error;
    asio::co_spawn(ioc_, watch.run(),
                   asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr e) {
                     finished = true;
                     error = e;
                   }));
    auto now_is = [&](const std::vector<std::string>& ids) {
      auto current = ids_of(watch.snapshot());
      if (watch.snapshot() && (seen.empty() || seen.back() != current)) {
        seen.push_back(current);
      }
      return watch.snapshot() && current == ids;
    };

    auto first = co_await watch.ready();
    EXPECT_TRUE(first->empty());
    EXPECT_TRUE(now_is({}));

    // A sidecar is an endpoint only once its check passes.
    co_await agent_.register_service(sidecar("p1", "b", 21001));
    co_await sleep_for(300ms);
    EXPECT_TRUE(now_is({})) << "a critical sidecar was published";
    co_await agent_.pass_ttl(consul::ttl_check_id("p1"));
    EXPECT_TRUE(co_await eventually([&] { return now_is({"p1"}); }, 5s));

    co_await agent_.register_service(sidecar("p2", "b", 21002));
    co_await agent_.pass_ttl(consul::ttl_check_id("p2"));
    EXPECT_TRUE(co_await eventually([&] { return now_is({"p1", "p2"}); }, 5s));

    // What the upstream listener will see: the sidecar's address, the destination's name.
    auto both = watch.snapshot();
    for (const auto& endpoint : both->endpoints) {
      EXPECT_EQ(endpoint.service, "b");
      EXPECT_EQ(endpoint.address, "127.0.0.1");
      EXPECT_EQ(endpoint.node, "coromesh-test");
    }
    EXPECT_EQ(both->endpoints[1].port, 21002);
    LoadBalancer balancer({.policy = BalancePolicy::round_robin});
    std::vector<std::string> picked;
    for (int i = 0; i < 4; ++i) {
      auto pick = balancer.pick(watch.snapshot());
      picked.push_back(pick.endpoint().instance_id);
      pick.done(1ms, Outcome::success);
    }
    EXPECT_EQ(picked, (std::vector<std::string>{"p1", "p2", "p1", "p2"}));

    co_await agent_.fail_ttl(consul::ttl_check_id("p1"), "test fails p1");
    EXPECT_TRUE(co_await eventually([&] { return now_is({"p2"}); }, 5s));

    // The agent goes away: the watch fails and retries, and the last answer stands.
    auto last = watch.snapshot();
    co_await off_loop([&] { consul_.stop(); });
    co_await sleep_for(2s);
    EXPECT_EQ(watch.snapshot(), last);
    EXPECT_TRUE(now_is({"p2"}));
    auto pick = balancer.pick(watch.snapshot());
    EXPECT_TRUE(pick);

    stop.emit(asio::cancellation_type::terminal);
    EXPECT_TRUE(co_await eventually([&] { return finished; }, 2s));
    EXPECT_FALSE(error);
  }());
  using Ids = std::vector<std::string>;
  EXPECT_EQ(seen, (std::vector<Ids>{{}, {"p1"}, {"p1", "p2"}, {"p2"}}));
}

// A sidecar of "b" whose check passes: an endpoint of b.
asio::awaitable<void> add_passing_sidecar(consul::AgentClient& agent, const std::string& id,
                                          std::uint16_t port) {
  co_await agent.register_service(sidecar(id, "b", port));
  co_await agent.pass_ttl(consul::ttl_check_id(id));
}

// Runs an EndpointWatch in the background until stop().
struct RunningWatch {
  RunningWatch(asio::io_context& ioc, EndpointWatch& watch) {
    asio::co_spawn(ioc, watch.run(),
                   asio::bind_cancellation_slot(stop_signal.slot(), [this](std::exception_ptr e) {
                     finished = true;
                     error = e;
                   }));
  }
  asio::awaitable<bool> stop() {
    stop_signal.emit(asio::cancellation_type::terminal);
    co_return co_await eventually([this] { return finished; }, 2s) && !error;
  }
  asio::cancellation_signal stop_signal;
  bool finished = false;
  std::exception_ptr error;
};

// A -dev agent restarts empty and the instances come back as their registrars resync:
// the empty answer in between must not empty the snapshot.
TEST_F(EndpointWatchIntegration, KeepsItsEndpointsWhileARestartedAgentIsEmpty) {
  EndpointWatch watch(agent_, "b", {.backoff_initial = 50ms, .backoff_max = 500ms},
                      EndpointKind::connect, /*restart_grace=*/60s);
  run([&]() -> asio::awaitable<void> {
    co_await add_passing_sidecar(agent_, "p1", 21201);
    RunningWatch running(ioc_, watch);
    EXPECT_EQ(ids_of(co_await watch.ready()), (std::vector<std::string>{"p1"}));

    co_await off_loop([&] { consul_.restart(); });
    // The watch reconnects (backoff ≤ 500 ms) and sees the empty agent; sample well past.
    bool emptied = false;
    for (int i = 0; i < 100 && !emptied; ++i) {
      emptied = ids_of(watch.snapshot()).empty();
      co_await sleep_for(30ms);
    }
    EXPECT_FALSE(emptied) << "the empty answer of the restarted agent was published";

    // The instance registers again (a new ID here, to see the answer applied).
    co_await add_passing_sidecar(agent_, "p1-again", 21202);
    EXPECT_TRUE(co_await eventually(
        [&] { return ids_of(watch.snapshot()) == std::vector<std::string>{"p1-again"}; }, 10s));

    // With the agent up, a deregistration empties the set at once: no grace.
    co_await agent_.deregister_service("p1-again");
    EXPECT_TRUE(co_await eventually([&] { return ids_of(watch.snapshot()).empty(); }, 5s));
    EXPECT_TRUE(co_await running.stop());
  }());
}

// Nobody comes back: after the grace the empty set is published.
TEST_F(EndpointWatchIntegration, PublishesTheEmptySetOnceTheGraceRunsOut) {
  EndpointWatch watch(agent_, "b", {.backoff_initial = 50ms, .backoff_max = 500ms},
                      EndpointKind::connect, /*restart_grace=*/1500ms);
  run([&]() -> asio::awaitable<void> {
    co_await add_passing_sidecar(agent_, "p1", 21301);
    RunningWatch running(ioc_, watch);
    EXPECT_EQ(ids_of(co_await watch.ready()), (std::vector<std::string>{"p1"}));
    auto held = watch.snapshot();

    co_await off_loop([&] { consul_.restart(); });
    EXPECT_TRUE(co_await eventually([&] { return ids_of(watch.snapshot()).empty(); }, 10s))
        << "the held endpoints were never given up";
    EXPECT_EQ(watch.snapshot()->generation, held->generation + 1);
    EXPECT_TRUE(co_await running.stop());
  }());
}

// Stopped in the middle of a hold: run() ends promptly, the grace timer with it.
TEST_F(EndpointWatchIntegration, StopsPromptlyDuringAHold) {
  EndpointWatch watch(agent_, "b", {.backoff_initial = 50ms, .backoff_max = 500ms},
                      EndpointKind::connect, /*restart_grace=*/60s);
  run([&]() -> asio::awaitable<void> {
    co_await add_passing_sidecar(agent_, "p1", 21401);
    RunningWatch running(ioc_, watch);
    co_await watch.ready();
    co_await off_loop([&] { consul_.restart(); });
    co_await sleep_for(1500ms);  // the empty answer arrived and is held
    EXPECT_EQ(ids_of(watch.snapshot()), (std::vector<std::string>{"p1"}));
    EXPECT_TRUE(co_await running.stop());
  }());
}

TEST_F(EndpointWatchIntegration, OtherServicesSidecarsAreNotEndpoints) {
  EndpointWatch watch(agent_, "b", {.backoff_initial = 50ms, .backoff_max = 500ms});
  run([&]() -> asio::awaitable<void> {
    // A sidecar of "c", a plain (not Connect) instance named "b": neither fronts b over
    // Connect.
    co_await agent_.register_service(sidecar("c1", "c", 21101));
    co_await agent_.pass_ttl(consul::ttl_check_id("c1"));
    co_await agent_.register_service({.id = "b-plain", .name = "b", .port = 9001});
    co_await add_passing_sidecar(agent_, "b1", 21102);

    asio::cancellation_signal stop;
    bool finished = false;
    asio::co_spawn(ioc_, watch.run(),
                   asio::bind_cancellation_slot(stop.slot(), [&](auto) { finished = true; }));
    auto set = co_await watch.ready();
    EXPECT_EQ(ids_of(set), (std::vector<std::string>{"b1"}));
    stop.emit(asio::cancellation_type::terminal);
    co_await eventually([&] { return finished; }, 2s);
  }());
}

}  // namespace
}  // namespace coromesh::connect
