#include "coromesh/connect/load_balancer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "endpoint_sets.hpp"

namespace coromesh::connect {
namespace {

using namespace std::chrono_literals;
using testing::endpoints;
using testing::stats_by_id;

LoadBalancerOptions with(BalancePolicy policy, const qos::Clock& clock) {
  return {.policy = policy, .seed = 42, .clock = &clock};
}

TEST(LoadBalancer, EmptyOrMissingSnapshotGivesNoPick) {
  LoadBalancer balancer;
  EXPECT_FALSE(balancer.pick(nullptr));
  EXPECT_FALSE(balancer.pick(endpoints({})));
}

TEST(LoadBalancer, RoundRobinSpreadsExactlyInOrder) {
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::round_robin, clock));
  auto set = endpoints({"p1", "p2", "p3"});
  std::vector<std::string> first_six;
  std::map<std::string, int> served;
  for (int i = 0; i < 300; ++i) {
    auto pick = balancer.pick(set);
    ASSERT_TRUE(pick);
    if (first_six.size() < 6) {
      first_six.push_back(pick.endpoint().instance_id);
    }
    ++served[pick.endpoint().instance_id];
    pick.done(1ms, Outcome::success);
  }
  EXPECT_EQ(first_six, (std::vector<std::string>{"p1", "p2", "p3", "p1", "p2", "p3"}));
  EXPECT_EQ(served, (std::map<std::string, int>{{"p1", 100}, {"p2", 100}, {"p3", 100}}));
  for (const auto& [id, stats] : stats_by_id(balancer)) {
    EXPECT_EQ(stats.picks, 100u) << id;
    EXPECT_EQ(stats.successes, 100u) << id;
    EXPECT_EQ(stats.in_flight, 0u) << id;
  }
}

TEST(LoadBalancer, LeastRequestPrefersTheIdleEndpoint) {
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::least_request, clock));
  auto set = endpoints({"p1", "p2", "p3"});
  // All idle: the ties take turns, so three picks land on three endpoints.
  std::vector<Pick> held;
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    held.push_back(balancer.pick(set));
    ids.push_back(held.back().endpoint().instance_id);
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"p1", "p2", "p3"}));

  // p1 gets a second call; p3's call ends: p3 is the idle one, every time.
  auto p1_again = balancer.pick(set, std::vector<std::string>{"n1/p2", "n1/p3"});
  ASSERT_TRUE(p1_again);
  for (auto& pick : held) {
    if (pick.endpoint().instance_id == "p3") {
      pick.done(1ms, Outcome::success);
    }
  }
  for (int i = 0; i < 5; ++i) {
    auto pick = balancer.pick(set);
    EXPECT_EQ(pick.endpoint().instance_id, "p3");
  }  // (each is abandoned at once, leaving p3 idle again)
  auto stats = stats_by_id(balancer);
  EXPECT_EQ(stats["p1"].in_flight, 2u);
  EXPECT_EQ(stats["p2"].in_flight, 1u);
  EXPECT_EQ(stats["p3"].in_flight, 0u);
}

// Keeps `concurrency` calls in flight against `set`; a call to an endpoint takes
// latency_of(its id), and the manual clock jumps from one completion to the next.
// Returns the calls each endpoint served.
std::map<std::string, int> simulate(
    LoadBalancer& balancer, qos::ManualClock& clock, const std::shared_ptr<const EndpointSet>& set,
    int calls, std::size_t concurrency,
    const std::function<std::chrono::nanoseconds(const std::string&)>& latency_of) {
  struct Call {
    qos::Clock::time_point start;
    qos::Clock::time_point end;
    Pick pick;
  };
  std::vector<Call> pending;
  std::map<std::string, int> served;
  int started = 0;
  while (started < calls || !pending.empty()) {
    while (started < calls && pending.size() < concurrency) {
      auto pick = balancer.pick(set);
      const auto& id = pick.endpoint().instance_id;
      ++served[id];
      pending.push_back({clock.now(), clock.now() + latency_of(id), std::move(pick)});
      ++started;
    }
    auto next = std::min_element(pending.begin(), pending.end(),
                                 [](const Call& a, const Call& b) { return a.end < b.end; });
    clock.set(next->end);
    next->pick.done(next->end - next->start, Outcome::success);
    pending.erase(next);
  }
  return served;
}

TEST(LoadBalancer, P2cEwmaMovesTrafficAwayFromASlowEndpoint) {
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::p2c_ewma, clock));
  auto set = endpoints({"fast", "slow"});
  // Warm-up: both answer in 1ms, and share the load.
  auto warm = simulate(balancer, clock, set, 2000, 10, [](const std::string&) { return 1ms; });
  EXPECT_GT(warm["slow"], 600) << "fast=" << warm["fast"];
  EXPECT_GT(warm["fast"], 600) << "slow=" << warm["slow"];

  // Then "slow" takes 20ms: most of the traffic moves to "fast".
  auto later = simulate(balancer, clock, set, 2000, 10, [](const std::string& id) {
    return id == "slow" ? std::chrono::nanoseconds(20ms) : std::chrono::nanoseconds(1ms);
  });
  EXPECT_GT(later["fast"], 1600) << "slow=" << later["slow"];
  EXPECT_GT(stats_by_id(balancer)["slow"].latency_estimate, 10ms);
}

TEST(LoadBalancer, RoundRobinDoesNotAvoidASlowEndpoint) {
  // The control for the test above: the same load under round robin stays 50/50, so
  // the shift there is the policy's doing.
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::round_robin, clock));
  auto set = endpoints({"fast", "slow"});
  auto served = simulate(balancer, clock, set, 2000, 10, [](const std::string& id) {
    return id == "slow" ? std::chrono::nanoseconds(20ms) : std::chrono::nanoseconds(1ms);
  });
  EXPECT_EQ(served["fast"], 1000);
}

TEST(LoadBalancer, P2cEwmaAvoidsTheSlowOneOfFour) {
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::p2c_ewma, clock));
  auto set = endpoints({"a", "b", "c", "slow"});
  simulate(balancer, clock, set, 400, 8, [](const std::string&) { return 1ms; });
  auto served = simulate(balancer, clock, set, 4000, 8, [](const std::string& id) {
    return id == "slow" ? std::chrono::nanoseconds(50ms) : std::chrono::nanoseconds(1ms);
  });
  EXPECT_LT(served["slow"], 200) << "a=" << served["a"] << " b=" << served["b"];
}

TEST(LoadBalancer, P2cEwmaProbesANewEndpointOneCallAtATime) {
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::p2c_ewma, clock));
  auto old_set = endpoints({"known"}, 1);
  balancer.pick(old_set).done(5ms, Outcome::success);

  // "fresh" has never answered: while idle it costs nothing, so it gets the next call;
  // while that call is out, it is not piled on.
  auto set = endpoints({"fresh", "known"}, 2);
  auto probe = balancer.pick(set);
  EXPECT_EQ(probe.endpoint().instance_id, "fresh");
  std::vector<Pick> held;
  for (int i = 0; i < 10; ++i) {
    held.push_back(balancer.pick(set));
    EXPECT_EQ(held.back().endpoint().instance_id, "known");
  }
}

TEST(LoadBalancer, StateSurvivesSnapshotChangesAndLeavingEndpointsAreForgotten) {
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::round_robin, clock));
  auto first = endpoints({"p1", "p2"}, 1);
  for (int i = 0; i < 4; ++i) {
    balancer.pick(first).done(1ms, i < 2 ? Outcome::success : Outcome::callee_failure);
  }
  auto held_on_p2 = balancer.pick(first, std::vector<std::string>{"n1/p1"});

  // p2 leaves, p3 arrives: p1 keeps its counts, p3 starts from nothing.
  auto second = endpoints({"p1", "p3"}, 2);
  balancer.update(second);
  auto stats = stats_by_id(balancer);
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats["p1"].picks, 2u);
  EXPECT_EQ(stats["p1"].successes, 1u);
  EXPECT_EQ(stats["p1"].failures, 1u);
  EXPECT_EQ(stats["p3"].picks, 0u);
  EXPECT_EQ(stats.count("p2"), 0u);

  // A call still out on the departed p2 finishes harmlessly.
  held_on_p2.done(1ms, Outcome::callee_failure);

  // p2 comes back: a new endpoint as far as the balancer knows.
  auto third = endpoints({"p1", "p2", "p3"}, 3);
  balancer.update(third);
  stats = stats_by_id(balancer);
  EXPECT_EQ(stats["p1"].picks, 2u);
  EXPECT_EQ(stats["p2"].picks, 0u);
  EXPECT_EQ(stats["p2"].failures, 0u);
}

TEST(LoadBalancer, AnOlderSnapshotIsServedButDoesNotReplaceTheNewer) {
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::round_robin, clock));
  auto older = endpoints({"p1", "p2"}, 1);
  auto newer = endpoints({"p1", "p3"}, 2);
  balancer.update(newer);
  balancer.pick(newer, std::vector<std::string>{"n1/p3"}).done(1ms, Outcome::success);

  // A reader that still holds the older snapshot: its p1 is the same endpoint.
  auto pick = balancer.pick(older, std::vector<std::string>{"n1/p2"});
  ASSERT_TRUE(pick);
  EXPECT_EQ(pick.endpoint().instance_id, "p1");
  pick.done(1ms, Outcome::success);

  auto stats = stats_by_id(balancer);
  EXPECT_EQ(stats.count("p2"), 0u);
  EXPECT_EQ(stats.count("p3"), 1u);
  EXPECT_EQ(stats["p1"].picks, 2u);
}

TEST(LoadBalancer, ExcludingSkipsTriedEndpoints) {
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::p2c_ewma, clock));
  auto set = endpoints({"p1", "p2", "p3"});
  std::vector<std::string> tried{"n1/p1"};
  for (int i = 0; i < 20; ++i) {
    auto pick = balancer.pick(set, tried);
    ASSERT_TRUE(pick);
    EXPECT_NE(pick.endpoint().instance_id, "p1");
  }
  tried = {"n1/p1", "n1/p2", "n1/p3"};
  EXPECT_FALSE(balancer.pick(set, tried));
}

TEST(LoadBalancer, AnAbandonedPickOnlyLeavesTheInFlightCount) {
  qos::ManualClock clock;
  LoadBalancer balancer(with(BalancePolicy::round_robin, clock));
  auto set = endpoints({"p1"});
  {
    auto pick = balancer.pick(set);
    auto moved = std::move(pick);
    EXPECT_FALSE(pick);  // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(stats_by_id(balancer)["p1"].in_flight, 1u);
  }
  auto stats = stats_by_id(balancer)["p1"];
  EXPECT_EQ(stats.in_flight, 0u);
  EXPECT_EQ(stats.picks, 1u);
  EXPECT_EQ(stats.successes + stats.failures, 0u);

  auto pick = balancer.pick(set);
  pick.done(1ms, Outcome::success);
  EXPECT_FALSE(pick);
  pick.done(1ms, Outcome::success);  // a second done() is a no-op
  EXPECT_EQ(stats_by_id(balancer)["p1"].successes, 1u);
  EXPECT_EQ(stats_by_id(balancer)["p1"].in_flight, 0u);
}

TEST(LoadBalancer, APickOutlivesItsBalancer) {
  auto set = endpoints({"p1"});
  Pick pick;
  {
    LoadBalancer balancer;
    pick = balancer.pick(set);
  }
  ASSERT_TRUE(pick);
  EXPECT_EQ(pick.endpoint().port, 21000);
  pick.done(1ms, Outcome::callee_failure);
}

}  // namespace
}  // namespace coromesh::connect
