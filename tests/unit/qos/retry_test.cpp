#include "coromesh/qos/retry.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

namespace coromesh::qos {
namespace {

using namespace std::chrono_literals;

TEST(Retry, DefaultsAreEnvoyLike) {
  const RetryConfig c;
  EXPECT_EQ(c.max_attempts, 3U);
  EXPECT_EQ(c.base_backoff, 25ms);
  EXPECT_EQ(c.max_backoff, 250ms);
  EXPECT_EQ(c.jitter, Jitter::full);
  EXPECT_TRUE(c.retryable_statuses.contains(503));
  EXPECT_FALSE(c.retryable_statuses.contains(500));
  EXPECT_FALSE(c.retryable_statuses.contains(429));
}

TEST(Retry, NominalBackoffGrowsExponentiallyToTheCap) {
  constexpr RetryConfig c{.max_attempts = 10};
  static_assert(nominal_backoff(c, 1) == 25ms);
  static_assert(nominal_backoff(c, 2) == 50ms);
  static_assert(nominal_backoff(c, 3) == 100ms);
  static_assert(nominal_backoff(c, 4) == 200ms);
  static_assert(nominal_backoff(c, 5) == 250ms);
  static_assert(nominal_backoff(c, 9) == 250ms);
  EXPECT_EQ(max_total_backoff(c), 25ms + 50ms + 100ms + 200ms + 5 * 250ms);
  static_assert(min_total_backoff(RetryConfig{.jitter = Jitter::full}) == Duration::zero());
  static_assert(min_total_backoff(RetryConfig{.jitter = Jitter::equal}) == 12500us + 25ms);
  static_assert(min_total_backoff(RetryConfig{.jitter = Jitter::none}) == 25ms + 50ms);
  // A flat or zero backoff answers at once for any retry number.
  EXPECT_EQ(nominal_backoff(RetryConfig{.multiplier = 1.0}, 4'000'000'000U), 25ms);
  EXPECT_EQ(nominal_backoff(RetryConfig{.base_backoff = 0ms}, 4'000'000'000U), 0ms);
}

TEST(Retry, AttemptCountsAndRetryableOutcomes) {
  RetryPolicy policy;
  EXPECT_TRUE(policy.should_retry(1, 503, true));
  EXPECT_TRUE(policy.should_retry(2, 502, true));
  EXPECT_FALSE(policy.should_retry(3, 503, true));  // three attempts made: done
  EXPECT_FALSE(policy.should_retry(1, 500, true));
  EXPECT_FALSE(policy.should_retry(1, 503, false));  // not idempotent
  const std::system_error transport(std::make_error_code(std::errc::connection_refused));
  EXPECT_TRUE(policy.should_retry(1, transport, true));
  EXPECT_FALSE(policy.should_retry(1, QosRejected("cb", Reason::circuit_open), true));

  RetryPolicy any_method({.idempotent_only = false});
  EXPECT_TRUE(any_method.should_retry(1, 503, false));
  RetryPolicy custom({.retryable_exception = [](const std::exception&) noexcept { return false; }});
  EXPECT_FALSE(custom.should_retry(1, transport, true));
}

TEST(Retry, JitteredBackoffStaysInBounds) {
  std::mt19937_64 rng(42);
  RetryPolicy full({.max_attempts = 6, .jitter = Jitter::full});
  RetryPolicy equal({.max_attempts = 6, .jitter = Jitter::equal});
  RetryPolicy none({.max_attempts = 6, .jitter = Jitter::none});
  for (std::uint32_t n = 1; n <= 5; ++n) {
    const auto nominal = nominal_backoff(full.config(), n);
    EXPECT_EQ(none.backoff(n, rng), nominal);
    for (int i = 0; i < 200; ++i) {
      const auto f = full.backoff(n, rng);
      EXPECT_GE(f, Duration::zero());
      EXPECT_LE(f, nominal);
      const auto e = equal.backoff(n, rng);
      EXPECT_GE(e, nominal / 2);
      EXPECT_LE(e, nominal);
    }
  }
}

TEST(Retry, JitterIsDeterministicForASeed) {
  RetryPolicy policy({.max_attempts = 5});
  auto draw = [&](std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<Duration> out;
    for (std::uint32_t n = 1; n < 5; ++n) {
      out.push_back(policy.backoff(n, rng));
    }
    return out;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
}

TEST(Retry, AttemptsMustFitTheOverallTimeout) {
  constexpr RetryConfig three{};  // waits at most 25 + 50 ms
  static_assert(validate(three, 100ms).empty());
  static_assert(!validate(three, 75ms).empty());
  static_assert(!validate(three, 100ms, 200ms).empty());  // per attempt > overall
  static_assert(!validate(RetryConfig{.max_attempts = 0}).empty());
  static_assert(!validate(RetryConfig{.base_backoff = 1s, .max_backoff = 1ms}).empty());
  EXPECT_NO_THROW(check(three, 100ms));
  try {
    check(three, 50ms, 0ms, "add.retry");
    FAIL() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind("add.retry: retry: the backoffs", 0), 0U) << e.what();
  }
  EXPECT_THROW(RetryPolicy({.multiplier = 0.5}), std::invalid_argument);
}

TEST(RetryBudget, DefaultsAreLinkerd) {
  const RetryBudgetConfig c;
  EXPECT_EQ(c.ratio, 0.2);
  EXPECT_EQ(c.min_retries_per_second, 10U);
  EXPECT_EQ(c.ttl, 10s);
}

TEST(RetryBudget, RatioOfRequestsPlusFloor) {
  ManualClock clock;
  RetryBudget budget({.ratio = 0.2, .min_retries_per_second = 1, .ttl = 10s}, clock);
  EXPECT_EQ(budget.available(), 10U);  // the floor: 1/s over 10 s
  for (int i = 0; i < 100; ++i) {
    budget.on_request();
  }
  EXPECT_EQ(budget.available(), 30U);  // 10 + 20 % of 100
  int granted = 0;
  for (int i = 0; i < 50; ++i) {
    granted += budget.try_retry().is_granted() ? 1 : 0;
  }
  EXPECT_EQ(granted, 30);
  auto a = budget.try_retry();
  ASSERT_FALSE(a);
  EXPECT_EQ(a.reason(), Reason::budget_exhausted);
}

TEST(RetryBudget, RecoversAsTheWindowSlides) {
  ManualClock clock;
  RetryBudget budget({.ratio = 0.5, .min_retries_per_second = 0, .ttl = 10s}, clock);
  EXPECT_FALSE(budget.try_retry());  // no floor, no requests
  for (int i = 0; i < 4; ++i) {
    budget.on_request();
  }
  EXPECT_TRUE(budget.try_retry());
  EXPECT_TRUE(budget.try_retry());
  EXPECT_FALSE(budget.try_retry());
  clock.advance(10s);  // everything ages out
  EXPECT_EQ(budget.available(), 0U);
  budget.on_request();
  budget.on_request();
  EXPECT_TRUE(budget.try_retry());
  EXPECT_FALSE(budget.try_retry());
}

// A successor (a live override of the budget's fields) inherits the window: requests
// seen raise its allowance by its own ratio, retries spent count against it, each leaving
// the window at its own time under the successor's ttl and buckets.
TEST(RetryBudget, ASuccessorCarriesTheWindowOverWithItsTimes) {
  ManualClock clock;
  RetryBudget first({.ratio = 0.5, .min_retries_per_second = 0, .ttl = 10s}, clock);
  for (int i = 0; i < 10; ++i) {
    first.on_request();
  }
  clock.advance(4s);
  for (int i = 0; i < 4; ++i) {
    first.on_request();
  }
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(first.try_retry());  // 0.5 * 14 = 7 allowed
  }
  ASSERT_EQ(first.available(), 0U);

  RetryBudget second({.ratio = 1.0, .min_retries_per_second = 0, .ttl = 8s, .buckets = 4}, first);
  EXPECT_EQ(second.available(), 7U) << "14 allowed, 7 spent";
  clock.advance(4s + 1ms);  // the 10 requests made 8 s ago have left the 8 s window
  EXPECT_EQ(second.available(), 0U) << "4 allowed, 7 spent";
  clock.advance(4s);  // so have the 4 later ones and the 7 retries
  EXPECT_EQ(second.available(), 0U);
  second.on_request();
  EXPECT_EQ(second.available(), 1U);
}

TEST(RetryBudget, OldRetriesStopCounting) {
  ManualClock clock;
  RetryBudget budget({.ratio = 0.0, .min_retries_per_second = 1, .ttl = 10s}, clock);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(budget.try_retry());
  }
  EXPECT_FALSE(budget.try_retry());
  clock.advance(5s);
  EXPECT_FALSE(budget.try_retry());  // all ten still inside the 10 s window
  clock.advance(5s);
  EXPECT_TRUE(budget.try_retry());
}

// on_request(now) counts at the time it is given (the chain's read, handed down), not
// at the budget clock's own time.
TEST(RetryBudget, OnRequestCountsAtTheTimeGiven) {
  ManualClock clock;
  RetryBudget budget({.ratio = 1.0, .min_retries_per_second = 0, .ttl = 10s}, clock);
  budget.on_request(clock.now() + 9500ms);  // the last bucket of the first window
  clock.advance(10200ms);                   // a request counted at the start is gone here
  EXPECT_EQ(budget.available(), 1U);
  clock.advance(9s);  // and this one is gone too, 10 s after its own bucket
  EXPECT_EQ(budget.available(), 0U);
}

// Requests are counted without the lock while their bucket is current; each still
// lands in its own bucket and ages out with it.
TEST(RetryBudget, EachRequestAgesOutWithItsOwnBucket) {
  ManualClock clock;
  RetryBudget budget({.ratio = 1.0, .min_retries_per_second = 0, .ttl = 10s}, clock);
  const auto start = clock.now();
  for (int second = 0; second < 15; ++second) {
    budget.on_request(start + std::chrono::seconds(second) + 500ms);
    budget.on_request(start + std::chrono::seconds(second) + 700ms);
    clock.set(start + std::chrono::seconds(second) + 800ms);
    // The requests of the last 10 one-second buckets, two in each.
    EXPECT_EQ(budget.available(), static_cast<std::uint64_t>(2 * std::min(second + 1, 10)))
        << "at second " << second;
  }
}

// A request at an earlier time than the one before (a time read before another
// thread's) is counted in its own, earlier bucket, not in the last one used.
TEST(RetryBudget, AnEarlierTimeCountsInItsOwnBucket) {
  ManualClock clock;
  RetryBudget budget({.ratio = 1.0, .min_retries_per_second = 0, .ttl = 10s}, clock);
  const auto start = clock.now();
  budget.on_request(start + 5500ms);
  budget.on_request(start + 2500ms);
  clock.set(start + 12700ms);  // buckets up to 2 s have aged out, the one at 5 s has not
  EXPECT_EQ(budget.available(), 1U);
}

TEST(RetryBudget, RequestsFromManyThreadsAllCount) {
  ManualClock clock;
  RetryBudget budget({.ratio = 1.0, .min_retries_per_second = 0, .ttl = 10s}, clock);
  constexpr int kThreads = 12;  // more than the budget's shards: some threads share one
  constexpr int kEach = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&budget, &clock] {
      for (int i = 0; i < kEach; ++i) {
        budget.on_request(clock.now());
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(budget.available(), static_cast<std::uint64_t>(kThreads * kEach));
}

}  // namespace
}  // namespace coromesh::qos
