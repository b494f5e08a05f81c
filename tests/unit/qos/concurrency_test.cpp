#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "coromesh/qos/adaptive_limit.hpp"
#include "coromesh/qos/circuit_breaker.hpp"
#include "coromesh/qos/rate_limiter.hpp"
#include "coromesh/qos/retry.hpp"

// The policies documented as thread-safe, hammered from several threads with the clock
// frozen, so the exact totals are known. (Also run under ThreadSanitizer.)
namespace coromesh::qos {
namespace {

using namespace std::chrono_literals;

template <class F>
void on_threads(int threads, F f) {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back(f);
  }
  for (auto& t : pool) {
    t.join();
  }
}

TEST(Concurrency, TokenBucketNeverOverAdmits) {
  ManualClock clock;
  TokenBucket bucket({.permits = 10, .period = 1s, .burst = 1000}, clock);
  std::atomic<int> admitted{0};
  on_threads(4, [&] {
    for (int i = 0; i < 2000; ++i) {
      admitted += bucket.try_acquire().is_granted() ? 1 : 0;
    }
  });
  EXPECT_EQ(admitted.load(), 1000);
}

TEST(Concurrency, LeakyBucketNeverOverAdmits) {
  ManualClock clock;
  LeakyBucket bucket({.rate = 10, .period = 1s, .capacity = 500}, clock);
  std::atomic<int> admitted{0};
  on_threads(4, [&] {
    for (int i = 0; i < 2000; ++i) {
      admitted += bucket.try_acquire().is_granted() ? 1 : 0;
    }
  });
  EXPECT_EQ(admitted.load(), 500);
}

TEST(Concurrency, AdaptiveLimitBalancesInFlight) {
  ManualClock clock;
  AdaptiveLimit limit({.initial_limit = 8, .max_limit = 64}, clock);
  on_threads(4, [&] {
    for (int i = 0; i < 5000; ++i) {
      if (limit.acquire()) {
        limit.on_sample(1ms, i % 50 != 0);
      }
    }
  });
  EXPECT_EQ(limit.in_flight(), 0U);
  EXPECT_GE(limit.limit(), 1U);
  EXPECT_LE(limit.limit(), 64U);
}

TEST(Concurrency, BreakerOpensOnceUnderConcurrentFailures) {
  ManualClock clock;
  CircuitBreaker cb({.window_size = 50, .minimum_calls = 50}, clock);
  std::atomic<int> rejected{0};
  on_threads(4, [&] {
    for (int i = 0; i < 1000; ++i) {
      if (cb.acquire()) {
        cb.on_failure(1ms);
      } else {
        ++rejected;
      }
    }
  });
  EXPECT_EQ(cb.state(), CircuitBreaker::State::open);
  EXPECT_EQ(cb.transitions(), 1U);
  EXPECT_GE(rejected.load(), 4000 - 50 - 4);  // at most a few calls raced past the opening
}

TEST(Concurrency, RetryBudgetNeverOverSpends) {
  ManualClock clock;
  RetryBudget budget({.ratio = 0.0, .min_retries_per_second = 10, .ttl = 10s}, clock);
  std::atomic<int> granted{0};
  on_threads(4, [&] {
    for (int i = 0; i < 500; ++i) {
      granted += budget.try_retry().is_granted() ? 1 : 0;
    }
  });
  EXPECT_EQ(granted.load(), 100);
}

}  // namespace
}  // namespace coromesh::qos
