// Concurrent pick()/done() from two threads while a third publishes new snapshots. Run
// it in a TSan build (-DCOROMESH_SANITIZER=thread) to check the lock-free paths; in any
// build it checks that no pick is lost or counted twice.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "coromesh/connect/atomic_snapshot.hpp"
#include "coromesh/connect/load_balancer.hpp"
#include "endpoint_sets.hpp"

namespace coromesh::connect {
namespace {

using namespace std::chrono_literals;
using testing::endpoints;

class Concurrency : public ::testing::TestWithParam<BalancePolicy> {};

TEST_P(Concurrency, PickAndDoneFromTwoThreadsWhileSnapshotsChange) {
  LoadBalancer balancer(
      {.policy = GetParam(),
       .ejection = {.consecutive_failures = 3, .base_ejection_time = 1ms, .max_ejection_time = 5ms},
       .seed = 1});
  // The watch's side: a snapshot anyone may load while it is replaced.
  AtomicSnapshot<EndpointSet> current{endpoints({"p1", "p2", "p3"}, 1)};
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    const std::vector<std::vector<std::string>> shapes{
        {"p1", "p2", "p3"}, {"p1", "p3", "p4"}, {"p2", "p4"}, {"p1", "p2", "p3", "p4"}};
    for (std::uint64_t generation = 2; !stop.load(); ++generation) {
      current.store(endpoints(shapes[generation % shapes.size()], generation));
      std::this_thread::sleep_for(200us);
    }
  });

  constexpr int kCallsPerThread = 20000;
  std::atomic<std::uint64_t> picked{0};
  auto caller = [&](unsigned seed) {
    std::minstd_rand random(seed);
    std::vector<Pick> held;  // a few calls in flight at a time, finished out of order
    for (int i = 0; i < kCallsPerThread; ++i) {
      auto pick = balancer.pick(current.load());
      if (!pick) {
        continue;
      }
      picked.fetch_add(1);
      held.push_back(std::move(pick));
      if (held.size() >= 4) {
        auto victim = random() % held.size();
        switch (random() % 4) {
          case 0:
            held[victim].done(std::chrono::microseconds(random() % 1000), Outcome::callee_failure);
            break;
          case 1:
            held[victim] = Pick();  // abandoned (cancelled)
            break;
          default:
            held[victim].done(std::chrono::microseconds(random() % 1000), Outcome::success);
            break;
        }
        held.erase(held.begin() + static_cast<std::ptrdiff_t>(victim));
      }
      if (i % 64 == 0) {
        (void)balancer.endpoint_stats();  // a /metrics scrape meanwhile
      }
    }
    for (auto& pick : held) {
      pick.done(1us, Outcome::success);
    }
  };
  std::thread first(caller, 1U);
  std::thread second(caller, 2U);
  first.join();
  second.join();
  stop = true;
  publisher.join();

  EXPECT_EQ(picked.load(), 2U * kCallsPerThread);  // every snapshot has endpoints
  balancer.update(endpoints({"p1", "p2", "p3", "p4"}, 1U << 30U));
  for (const auto& stats : balancer.endpoint_stats()) {
    EXPECT_EQ(stats.in_flight, 0u) << stats.key;
  }
}

TEST(AtomicSnapshot, ReadersSeeWholeValuesInOrderWhileAWriterReplacesThem) {
  struct Value {
    std::uint64_t number;
    std::uint64_t twice;  // written with `number`: a torn or stale-half read breaks it
  };
  AtomicSnapshot<Value> cell{std::make_shared<const Value>(Value{0, 0})};
  constexpr std::uint64_t kLast = 20000;
  std::thread writer([&] {
    for (std::uint64_t n = 1; n <= kLast; ++n) {
      cell.store(std::make_shared<const Value>(Value{n, 2 * n}));
    }
  });
  auto reader = [&] {
    std::uint64_t seen = 0;
    while (seen < kLast) {
      auto value = cell.load();
      EXPECT_EQ(value->twice, 2 * value->number);
      EXPECT_GE(value->number, seen);  // never goes back
      seen = value->number;
    }
  };
  std::thread first(reader);
  std::thread second(reader);
  writer.join();
  first.join();
  second.join();
}

INSTANTIATE_TEST_SUITE_P(Policies, Concurrency,
                         ::testing::Values(BalancePolicy::round_robin, BalancePolicy::least_request,
                                           BalancePolicy::p2c_ewma),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace coromesh::connect
