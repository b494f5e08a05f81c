#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <thread>
#include <vector>

#include "coromesh/qos/adaptive_limit.hpp"
#include "coromesh/qos/bulkhead.hpp"
#include "coromesh/qos/circuit_breaker.hpp"
#include "coromesh/qos/operation_qos.hpp"
#include "coromesh/qos/rate_limiter.hpp"
#include "coromesh/qos/retry.hpp"

// The policies documented as thread-safe, hammered from several threads with the clock
// frozen, so the exact totals are known. (Also run under ThreadSanitizer.)
namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
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

// Samples on four threads while a fifth moves the bounds: the limit ends inside the
// bounds in force, every call counted out. A sample computed under bounds replaced since
// (the lock-free update) must not land.
TEST(Concurrency, AdaptiveLimitSamplesWhileItsBoundsMove) {
  ManualClock clock;
  AdaptiveLimit limit({.initial_limit = 8, .max_limit = 64}, clock);
  std::atomic<bool> sampling{true};
  std::thread mover([&] {
    for (std::uint32_t i = 0; sampling.load(); ++i) {
      limit.reconfigure({.initial_limit = 8, .min_limit = 2 + i % 3, .max_limit = 12 + i % 40});
    }
  });
  on_threads(4, [&] {
    for (int i = 0; i < 5000; ++i) {
      if (limit.acquire()) {
        limit.on_sample(1ms, i % 97 != 0);
      }
    }
  });
  sampling = false;
  mover.join();
  const auto bounds = limit.config();
  EXPECT_EQ(limit.in_flight(), 0U);
  EXPECT_GE(limit.limit(), bounds.min_limit);
  EXPECT_LE(limit.limit(), bounds.max_limit);
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

namespace coromesh::qos {
namespace {

TEST(Concurrency, QueuelessBulkheadNeverOverAdmitsAndEndsEmpty) {
  Bulkhead bulkhead({.max_concurrent = 3});
  std::atomic<int> inside{0};
  std::atomic<int> worst{0};
  on_threads(4, [&] {
    for (int i = 0; i < 5000; ++i) {
      if (bulkhead.try_enter()) {
        const int now = ++inside;
        int seen = worst.load();
        while (now > seen && !worst.compare_exchange_weak(seen, now)) {
        }
        --inside;
        bulkhead.leave();
      }
    }
  });
  EXPECT_LE(worst.load(), 3);
  EXPECT_EQ(bulkhead.in_use(), 0U);
  // Wherever the four threads left their permits, this one can hold all three again.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(bulkhead.try_enter()) << "permit " << i;
  }
  EXPECT_FALSE(bulkhead.try_enter());
  EXPECT_EQ(bulkhead.in_use(), 3U);
}

// Two threads take and give back permits (each holding up to 6) while a third resizes the
// bulkhead between 8 and 2, with and without a queue. Once a resize to 2 has returned, a
// permit taken while it is in force leaves at most 2 held: the calls from before may still
// run, but nothing is admitted beside them until fewer than 2 do. At the end every permit
// is back, wherever the threads and the resizes left it. (Also run under ThreadSanitizer.)
TEST(Concurrency, ResizingABulkheadUnderLoadKeepsTheNewLimit) {
  Bulkhead bulkhead({.max_concurrent = 8});
  const BulkheadConfig configs[] = {
      {.max_concurrent = 8},
      {.max_concurrent = 2},
      {.max_concurrent = 8, .max_queue = 4, .max_wait = 1s},
      {.max_concurrent = 2, .max_queue = 4, .max_wait = 1s},
  };
  std::atomic<int> held{0};             // raised after a permit is taken, lowered before it goes
  std::atomic<std::uint64_t> epoch{0};  // odd while a resize to 2 has returned and holds
  std::atomic<std::uint64_t> steps{0};
  std::atomic<int> checked{0};  // permits taken wholly within an odd epoch
  std::atomic<int> over{0};     // ... that left more than 2 held
  std::atomic<bool> done{false};
  std::thread resizer([&] {
    bool small = false;
    // At least 200 rounds, and on until 50 permits were taken under a limit of 2: the
    // workers may hold more than 2 through a whole short round, so that none is taken in
    // it (bounded: 20,000 rounds).
    for (int round = 0; round < 200 || (checked.load() < 50 && round < 20'000); ++round) {
      if (round % 2 == 0) {
        if (small) {
          epoch.fetch_add(1);  // even before it grows
        }
        small = false;
        bulkhead.reconfigure(configs[round % 4]);
      } else {
        bulkhead.reconfigure(configs[round % 4]);
        epoch.fetch_add(1);  // odd once the shrink has returned
        small = true;
      }
      const std::uint64_t until = steps.load() + 400;
      for (int spin = 0; steps.load() < until && spin < 1'000'000; ++spin) {
        std::this_thread::yield();
      }
    }
    done = true;
  });
  auto worker = [&](std::uint32_t rng) {
    int mine = 0;
    while (!done.load()) {
      rng = rng * 1664525U + 1013904223U;
      if (mine < 6 && (rng >> 16) % 3 != 0) {
        const std::uint64_t before = epoch.load();
        if (bulkhead.try_enter()) {
          ++mine;
          const int now = ++held;
          if (before % 2 == 1 && epoch.load() == before) {
            ++checked;
            if (now > 2) {
              ++over;
            }
          }
        }
      } else if (mine > 0) {
        --mine;
        --held;
        bulkhead.leave();
      }
      ++steps;
    }
    for (; mine > 0; --mine) {
      --held;
      bulkhead.leave();
    }
  };
  std::thread a(worker, 1U);
  std::thread b(worker, 2U);
  a.join();
  b.join();
  resizer.join();
  EXPECT_EQ(over.load(), 0) << "of " << checked.load() << " taken under a limit of 2";
  EXPECT_GT(checked.load(), 0);
  EXPECT_EQ(bulkhead.in_use(), 0U);
  for (const auto& config : {configs[0], configs[3]}) {
    bulkhead.reconfigure(config);
    for (std::uint32_t i = 0; i < config.max_concurrent; ++i) {
      EXPECT_TRUE(bulkhead.try_enter()) << "permit " << i << " of " << config.max_concurrent;
    }
    EXPECT_FALSE(bulkhead.try_enter());
    for (std::uint32_t i = 0; i < config.max_concurrent; ++i) {
      bulkhead.leave();
    }
    EXPECT_EQ(bulkhead.in_use(), 0U);
  }
}

// Calls on two threads while a third reconfigures the breaker and both rate limiters, the
// way live overrides do (also run under ThreadSanitizer). The clock is frozen, so nothing
// refills or leaks: whatever reconfigure() does, the token bucket admits at most its first
// burst and the leaky bucket at most its largest capacity; the breaker's window (resized
// with successes batched in the shards meanwhile) keeps its counts consistent.
TEST(Concurrency, ReconfiguringTheBreakerAndRateLimitersUnderLoad) {
  ManualClock clock;
  auto breaker_config = [](bool small) {
    return CircuitBreakerConfig{.window_size = small ? 16U : 64U,
                                .failure_rate_threshold = 0.9,
                                .slow_call_duration = small ? 30s : 60s,
                                .minimum_calls = 64,
                                .wait_in_open = 1h,
                                .permitted_calls_in_half_open = small ? 2U : 4U};
  };
  CircuitBreaker breaker(breaker_config(false), clock);
  TokenBucket tokens({.permits = 4096, .period = 1s, .burst = 4096}, clock);
  LeakyBucket leaky({.rate = 10, .period = 1s, .capacity = 1000}, clock);
  std::atomic<int> token_admitted{0};
  std::atomic<int> leaky_admitted{0};
  std::atomic<int> workers_left{2};
  std::thread reconfigurer([&] {
    for (int round = 0; workers_left.load() > 0 && round < 100'000; ++round) {
      const bool small = round % 2 == 1;
      breaker.reconfigure(breaker_config(small));
      tokens.reconfigure(
          {.permits = small ? 100U : 4096U, .period = 1s, .burst = small ? 100U : 4096U});
      leaky.reconfigure({.rate = 10, .period = 1s, .capacity = small ? 100U : 1000U});
      std::this_thread::yield();
    }
  });
  auto worker = [&](std::uint32_t rng) {
    for (int i = 0; i < 20'000; ++i) {
      rng = rng * 1664525U + 1013904223U;
      if (breaker.acquire()) {
        (rng >> 16) % 8 == 0 ? breaker.on_failure(1ms) : breaker.on_success(1ms);
      }
      token_admitted += tokens.try_acquire().is_granted() ? 1 : 0;
      leaky_admitted += leaky.try_acquire().is_granted() ? 1 : 0;
    }
    --workers_left;
  };
  std::thread a(worker, 1U);
  std::thread b(worker, 2U);
  a.join();
  b.join();
  reconfigurer.join();
  EXPECT_LE(token_admitted.load(), 4096);
  EXPECT_LE(leaky_admitted.load(), 1000);
  EXPECT_EQ(breaker.state(), CircuitBreaker::State::closed) << "12.5 % failures, threshold 90 %";
  breaker.reconfigure(breaker_config(false));
  const auto s = breaker.snapshot();
  EXPECT_LE(s.calls, 64U);
  EXPECT_LE(s.failures, s.calls);
  EXPECT_LE(s.slow_calls, s.calls);
  // Tokens are only taken or clamped away, never added: what is left and what was taken
  // (leases included) fit in the first burst.
  tokens.reconfigure({.permits = 4096, .period = 1s, .burst = 4096});
  EXPECT_LE(tokens.available() + token_admitted.load(), 4096.0 + 1e-6);
}

// Calls on two threads while overrides are applied on a third: every call completes on
// some published chain, none is lost or sees a half-built one.
TEST(Concurrency, OperationQosSwapsUnderLoad) {
  const auto declared = to_policy_set(server(rate_limit{.permits = 1'000'000, .period = 1s},
                                             bulkhead{.max_concurrent = 64}, circuit_breaker{}));
  OperationQos<int> op("op", declared, nullptr, {}, {});
  std::atomic<bool> done{false};
  std::atomic<int> answered{0};
  std::thread swapper([&] {
    for (std::uint64_t permits = 1'000'001; !done.load(); ++permits) {
      PolicySet next = declared;
      next.rate_limit_policy->permits = permits;
      op.apply(next);
    }
  });
  // The load starts once the swapper is swapping: on a busy machine the calls could
  // otherwise all be done before its first swap, and the test would prove nothing.
  while (op.generations() < 2) {
    std::this_thread::yield();
  }
  on_threads(2, [&] {
    asio::io_context io;
    for (int i = 0; i < 2000; ++i) {
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            int v = co_await op.execute([]() -> asio::awaitable<int> { co_return 1; });
            answered += v;
          },
          asio::detached);
    }
    io.run();
  });
  done = true;
  swapper.join();
  EXPECT_EQ(answered.load(), 4000);
  EXPECT_GT(op.generations(), 1U);
  EXPECT_EQ(op.objects()->bulkhead->in_use(), 0U);
}

}  // namespace
}  // namespace coromesh::qos
