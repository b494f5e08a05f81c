#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "coromesh/connect/load_balancer.hpp"
#include "endpoint_sets.hpp"

namespace coromesh::connect {
namespace {

using namespace std::chrono_literals;
using testing::endpoints;
using testing::stats_by_id;

class Ejection : public ::testing::Test {
 protected:
  // Fails `times` calls on endpoint `id` (picked by excluding every other endpoint).
  void fail(const std::string& id, int times, Outcome outcome = Outcome::callee_failure) {
    for (int i = 0; i < times; ++i) {
      auto pick = balancer_.pick(set_, others_than(id));
      ASSERT_TRUE(pick);
      ASSERT_EQ(pick.endpoint().instance_id, id);
      pick.done(1ms, outcome);
    }
  }
  std::vector<std::string> others_than(const std::string& id) const {
    std::vector<std::string> keys;
    for (const auto& endpoint : set_->endpoints) {
      if (endpoint.instance_id != id) {
        keys.push_back(endpoint.key);
      }
    }
    return keys;
  }
  // The ids of `n` round-robin picks, each finished as a success.
  std::vector<std::string> next_picks(int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      auto pick = balancer_.pick(set_);
      ids.push_back(pick.endpoint().instance_id);
      pick.done(1ms, Outcome::success);
    }
    return ids;
  }

  qos::ManualClock clock_;
  std::shared_ptr<const EndpointSet> set_ = endpoints({"p1", "p2"});
  LoadBalancer balancer_{{.policy = BalancePolicy::round_robin, .seed = 7, .clock = &clock_}};
};

TEST_F(Ejection, FiveConsecutiveFailuresEjectForTheBaseTime) {
  fail("p1", 4);
  fail("p1", 1, Outcome::connect_failure);  // connect failures count too
  EXPECT_TRUE(stats_by_id(balancer_)["p1"].ejected);
  EXPECT_EQ(next_picks(4), (std::vector<std::string>{"p2", "p2", "p2", "p2"}));

  clock_.advance(29s);
  EXPECT_EQ(next_picks(2), (std::vector<std::string>{"p2", "p2"}));
  clock_.advance(1s);  // the default base ejection time has passed: p1 is back
  EXPECT_FALSE(stats_by_id(balancer_)["p1"].ejected);
  auto back = next_picks(4);
  EXPECT_EQ(std::count(back.begin(), back.end(), "p1"), 2);
}

TEST_F(Ejection, ASuccessBreaksTheStreak) {
  fail("p1", 4);
  balancer_.pick(set_, others_than("p1")).done(1ms, Outcome::success);
  fail("p1", 4);
  EXPECT_FALSE(stats_by_id(balancer_)["p1"].ejected);
  fail("p1", 1);
  EXPECT_TRUE(stats_by_id(balancer_)["p1"].ejected);
}

TEST_F(Ejection, AbandonedPicksAreNotFailures) {
  fail("p1", 4);
  for (int i = 0; i < 10; ++i) {
    auto pick = balancer_.pick(set_, others_than("p1"));  // cancelled: never done()
  }
  EXPECT_FALSE(stats_by_id(balancer_)["p1"].ejected);
}

TEST_F(Ejection, EachEjectionLastsLongerAndAReturnNeedsAFreshStreak) {
  fail("p1", 5);
  clock_.advance(30s);
  EXPECT_FALSE(stats_by_id(balancer_)["p1"].ejected);
  fail("p1", 4);  // back with a clean count: four failures do not eject it again
  EXPECT_FALSE(stats_by_id(balancer_)["p1"].ejected);
  fail("p1", 1);
  EXPECT_EQ(stats_by_id(balancer_)["p1"].ejections, 2u);
  clock_.advance(59s);
  EXPECT_TRUE(stats_by_id(balancer_)["p1"].ejected);  // 2 × 30s this time
  clock_.advance(1s);
  EXPECT_FALSE(stats_by_id(balancer_)["p1"].ejected);
}

TEST_F(Ejection, CallsOutWhenEjectedDoNotCountTowardTheNextStreak) {
  std::vector<Pick> out_on_p1;
  for (int i = 0; i < 3; ++i) {
    out_on_p1.push_back(balancer_.pick(set_, others_than("p1")));
  }
  fail("p1", 5);
  for (auto& pick : out_on_p1) {
    pick.done(1ms, Outcome::callee_failure);  // they fail too, after the ejection
  }
  clock_.advance(30s);
  fail("p1", 4);
  EXPECT_FALSE(stats_by_id(balancer_)["p1"].ejected);
  EXPECT_EQ(stats_by_id(balancer_)["p1"].failures, 12u);
}

TEST_F(Ejection, NeverMoreThanTheMaxPercentOfTheSet) {
  set_ = endpoints({"p1", "p2", "p3", "p4"});
  for (const auto* id : {"p1", "p2", "p3", "p4"}) {
    fail(id, 5);
  }
  int ejected = 0;
  for (const auto& [id, stats] : stats_by_id(balancer_)) {
    ejected += stats.ejected ? 1 : 0;
  }
  EXPECT_EQ(ejected, 2);  // 50% of 4
  // p3 and p4 failed as much but stay: traffic goes only to them.
  auto ids = next_picks(4);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), "p3") + std::count(ids.begin(), ids.end(), "p4"), 4);
}

TEST_F(Ejection, WhenEveryEndpointIsEjectedAllAreCandidatesAgain) {
  set_ = endpoints({"only"});
  fail("only", 5);
  EXPECT_TRUE(stats_by_id(balancer_)["only"].ejected);
  auto pick = balancer_.pick(set_);
  ASSERT_TRUE(pick);
  EXPECT_EQ(pick.endpoint().instance_id, "only");
}

TEST_F(Ejection, EjectionSurvivesASnapshotChange) {
  fail("p1", 5);
  set_ = endpoints({"p1", "p2", "p3"}, 2);
  balancer_.update(set_);
  EXPECT_TRUE(stats_by_id(balancer_)["p1"].ejected);
  auto ids = next_picks(6);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), "p1"), 0);
}

TEST(EjectionOptions, ZeroConsecutiveFailuresDisablesEjection) {
  qos::ManualClock clock;
  LoadBalancer balancer({.ejection = {.consecutive_failures = 0}, .clock = &clock});
  auto set = endpoints({"p1", "p2"});
  for (int i = 0; i < 50; ++i) {
    balancer.pick(set).done(1ms, Outcome::connect_failure);
  }
  for (const auto& [id, stats] : stats_by_id(balancer)) {
    EXPECT_FALSE(stats.ejected) << id;
  }
}

}  // namespace
}  // namespace coromesh::connect
