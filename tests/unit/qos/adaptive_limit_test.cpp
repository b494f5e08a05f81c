#include "coromesh/qos/adaptive_limit.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace coromesh::qos {
namespace {

using namespace std::chrono_literals;

// Runs `n` calls concurrently (all admitted first, then all sampled with `latency`).
// Returns how many were admitted.
std::uint32_t wave(AdaptiveLimit& limit, std::uint32_t n, Duration latency, bool ok = true) {
  std::uint32_t admitted = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    admitted += limit.acquire().is_granted() ? 1U : 0U;
  }
  for (std::uint32_t i = 0; i < admitted; ++i) {
    limit.on_sample(latency, ok);
  }
  return admitted;
}

TEST(AdaptiveLimit, DefaultsAreAimdLimit) {
  const AdaptiveLimitConfig c;
  EXPECT_EQ(c.initial_limit, 20U);
  EXPECT_EQ(c.max_limit, 200U);
  EXPECT_EQ(c.backoff_ratio, 0.9);
  EXPECT_EQ(c.timeout, 5s);
}

TEST(AdaptiveLimit, RejectsAtTheLimit) {
  ManualClock clock;
  AdaptiveLimit limit({.initial_limit = 3, .min_limit = 1, .max_limit = 10}, clock);
  EXPECT_TRUE(limit.acquire());
  EXPECT_TRUE(limit.acquire());
  EXPECT_TRUE(limit.acquire());
  auto a = limit.acquire();
  ASSERT_FALSE(a);
  EXPECT_EQ(a.reason(), Reason::concurrency_limited);
  EXPECT_EQ(limit.in_flight(), 3U);
  limit.release();
  EXPECT_TRUE(limit.acquire());
}

TEST(AdaptiveLimit, ShrinksUnderInjectedLatencyAndRecovers) {
  ManualClock clock;
  AdaptiveLimit limit({.initial_limit = 20, .min_limit = 2, .max_limit = 40}, clock);
  // Healthy and busy: the limit grows by one per good sample at full use.
  EXPECT_EQ(wave(limit, 20, 10ms), 20U);
  EXPECT_EQ(limit.baseline(), 10ms);
  EXPECT_GT(limit.limit(), 20U);
  const auto healthy = limit.limit();

  // Latency triples (past 2 x baseline): every sample is bad, the limit backs off.
  for (int i = 0; i < 5; ++i) {
    wave(limit, limit.limit(), 30ms);
  }
  const auto degraded = limit.limit();
  EXPECT_LT(degraded, healthy / 2);
  EXPECT_GE(degraded, 2U);
  EXPECT_EQ(wave(limit, 100, 30ms), degraded);  // admits no more than the limit

  // Latency back to normal: the limit climbs back.
  for (int i = 0; i < 20 && limit.limit() < healthy; ++i) {
    wave(limit, limit.limit(), 10ms);
  }
  EXPECT_GE(limit.limit(), healthy);
}

TEST(AdaptiveLimit, FailuresAndTimeoutsShrinkToTheFloor) {
  ManualClock clock;
  AdaptiveLimit limit({.initial_limit = 50, .min_limit = 5, .max_limit = 100}, clock);
  for (int i = 0; i < 100; ++i) {
    wave(limit, 1, 1ms, false);
  }
  EXPECT_EQ(limit.limit(), 5U);
  AdaptiveLimit timeouts({.initial_limit = 50, .min_limit = 5, .timeout = 1s}, clock);
  wave(timeouts, 1, 2s);
  EXPECT_EQ(timeouts.limit(), 45U);
}

TEST(AdaptiveLimit, IdleServiceDoesNotInflateTheLimit) {
  ManualClock clock;
  AdaptiveLimit limit({.initial_limit = 20, .max_limit = 100}, clock);
  for (int i = 0; i < 1000; ++i) {
    wave(limit, 1, 1ms);  // one in flight of 20: not using the limit
  }
  EXPECT_EQ(limit.limit(), 20U);
}

TEST(AdaptiveLimit, FixedTargetAndBaselineWindow) {
  ManualClock clock;
  AdaptiveLimit fixed({.initial_limit = 10, .latency_target = 50ms}, clock);
  wave(fixed, 10, 40ms);
  // +1 per good sample while in flight x 2 >= limit: 10 -> 11 -> 12 -> 13 -> 14.
  EXPECT_EQ(fixed.limit(), 14U);
  wave(fixed, 1, 60ms);
  EXPECT_EQ(fixed.limit(), 12U);  // 14 x 0.9

  AdaptiveLimit drifting({.initial_limit = 10, .baseline_window = 10s}, clock);
  wave(drifting, 1, 5ms);
  EXPECT_EQ(drifting.baseline(), 5ms);
  clock.advance(10s);
  wave(drifting, 1, 8ms);
  EXPECT_EQ(drifting.baseline(), 5ms);  // previous window still counts
  clock.advance(10s);
  wave(drifting, 1, 9ms);
  EXPECT_EQ(drifting.baseline(), 8ms);  // two windows back is forgotten
}

// New bounds keep the learned limit inside them and the calls in flight counted; a new
// initial_limit restarts the limit there.
TEST(AdaptiveLimit, ReconfigureClampsTheLearnedLimitAndKeepsTheCallsInFlight) {
  ManualClock clock;
  AdaptiveLimit limit({.initial_limit = 10, .latency_target = 50ms}, clock);
  wave(limit, 10, 40ms);
  ASSERT_EQ(limit.limit(), 14U);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(limit.acquire());
  }
  limit.reconfigure({.initial_limit = 10, .max_limit = 12, .latency_target = 50ms});
  EXPECT_EQ(limit.limit(), 12U) << "the learned 14, clamped";
  EXPECT_EQ(limit.in_flight(), 5U);
  limit.reconfigure({.initial_limit = 3, .max_limit = 12, .latency_target = 50ms});
  EXPECT_EQ(limit.limit(), 3U) << "a new initial_limit restarts there";
  EXPECT_FALSE(limit.acquire());
  for (int i = 0; i < 3; ++i) {
    limit.release();
  }
  EXPECT_TRUE(limit.acquire()) << "2 in flight, limit 3";
  EXPECT_FALSE(limit.acquire());
  EXPECT_THROW(limit.reconfigure({.initial_limit = 20, .max_limit = 4}), std::invalid_argument);
  EXPECT_EQ(limit.limit(), 3U);
  EXPECT_EQ(limit.config().max_limit, 12U);
}

TEST(AdaptiveLimit, RejectsNonsenseConfig) {
  EXPECT_THROW(AdaptiveLimit({.min_limit = 0}), std::invalid_argument);
  EXPECT_THROW(AdaptiveLimit({.initial_limit = 300}), std::invalid_argument);
  EXPECT_THROW(AdaptiveLimit({.backoff_ratio = 1.0}), std::invalid_argument);
}

}  // namespace
}  // namespace coromesh::qos
