#include "coromesh/qos/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace coromesh::qos {
namespace {

using namespace std::chrono_literals;

int admitted(TokenBucket& bucket, int tries) {
  int n = 0;
  for (int i = 0; i < tries; ++i) {
    n += bucket.try_acquire().is_granted() ? 1 : 0;
  }
  return n;
}

int admitted(LeakyBucket& bucket, int tries) {
  int n = 0;
  for (int i = 0; i < tries; ++i) {
    n += bucket.try_acquire().is_granted() ? 1 : 0;
  }
  return n;
}

TEST(TokenBucket, StartsFullAndAdmitsTheBurst) {
  ManualClock clock;
  TokenBucket bucket({.permits = 10, .period = 1s, .burst = 5}, clock);
  EXPECT_EQ(admitted(bucket, 100), 5);
  auto a = bucket.try_acquire();
  ASSERT_FALSE(a);
  EXPECT_EQ(a.reason(), Reason::rate_limited);
}

TEST(TokenBucket, RefillsAtTheRate) {
  ManualClock clock;
  TokenBucket bucket({.permits = 10, .period = 1s, .burst = 5}, clock);
  EXPECT_EQ(admitted(bucket, 5), 5);
  clock.advance(99ms);
  EXPECT_FALSE(bucket.try_acquire());
  EXPECT_EQ(bucket.time_until(1), 1ms);
  clock.advance(1ms);
  EXPECT_TRUE(bucket.try_acquire());
  EXPECT_FALSE(bucket.try_acquire());
  clock.advance(350ms);  // 3.5 tokens
  EXPECT_EQ(admitted(bucket, 10), 3);
}

TEST(TokenBucket, HoldsTheLongRunRate) {
  ManualClock clock;
  TokenBucket bucket({.permits = 1000, .period = 1s, .burst = 10}, clock);
  int total = 0;
  for (int ms = 0; ms < 10'000; ++ms) {  // 10 s, offered 5 per ms
    total += admitted(bucket, 5);
    clock.advance(1ms);
  }
  EXPECT_EQ(total, 10 + 9'999);  // the burst, then one per ms
}

TEST(TokenBucket, BurstCapsIdleAccumulation) {
  ManualClock clock;
  TokenBucket bucket({.permits = 100, .period = 1s, .burst = 20}, clock);
  clock.advance(1h);
  EXPECT_DOUBLE_EQ(bucket.available(), 20.0);
  EXPECT_EQ(admitted(bucket, 100), 20);
}

TEST(TokenBucket, MultiTokenAcquire) {
  ManualClock clock;
  TokenBucket bucket({.permits = 10, .period = 1s, .burst = 10}, clock);
  EXPECT_TRUE(bucket.try_acquire(7));
  EXPECT_FALSE(bucket.try_acquire(4));
  EXPECT_TRUE(bucket.try_acquire(3));
}

// A burst of 128 or more is handed out in per-thread leases: one thread still gets the
// burst exactly, then exactly the refill.
TEST(TokenBucket, LeasedTokensAreTheBurstExactly) {
  ManualClock clock;
  TokenBucket bucket({.permits = 100, .period = 1s, .burst = 1000}, clock);
  EXPECT_EQ(admitted(bucket, 2000), 1000);
  EXPECT_NEAR(bucket.available(), 0.0, 1e-6);
  clock.advance(1s);
  EXPECT_NEAR(bucket.available(), 100.0, 1e-6);
  EXPECT_EQ(admitted(bucket, 500), 100);
}

// Two threads sharing the bucket never get more than the burst between them, and no
// more than the leases they leave unused short of it.
TEST(TokenBucket, LeasesOnTwoThreadsNeverExceedTheBurst) {
  ManualClock clock;
  TokenBucket bucket({.permits = 100, .period = 1s, .burst = 1000}, clock);
  std::atomic<int> total{0};
  auto drain = [&] { total += admitted(bucket, 1500); };
  std::thread a(drain);
  std::thread b(drain);
  a.join();
  b.join();
  EXPECT_LE(total.load(), 1000);
  EXPECT_GE(total.load(), 1000 - 2 * 15);  // a lease is burst / 64 = 15 tokens
  // What either thread left in its lease still counts against the burst.
  clock.advance(100s);
  EXPECT_LE(bucket.available(), 1000.0 + 1e-6);
}

TEST(TokenBucket, RejectsZeroRate) {
  EXPECT_THROW(TokenBucket({.permits = 0}), std::invalid_argument);
  EXPECT_THROW(TokenBucket({.burst = 0}), std::invalid_argument);
  EXPECT_THROW(TokenBucket({.period = 0s}), std::invalid_argument);
  static_assert(!validate(TokenBucketConfig{.permits = 0}).empty());
}

TEST(LeakyBucket, AdmitsUpToCapacityThenLeaksAtTheRate) {
  ManualClock clock;
  LeakyBucket bucket({.rate = 10, .period = 1s, .capacity = 3}, clock);
  EXPECT_EQ(admitted(bucket, 10), 3);
  EXPECT_DOUBLE_EQ(bucket.level(), 3.0);
  clock.advance(50ms);  // half a unit leaked: level 2.5, 2.5 + 1 > 3
  EXPECT_FALSE(bucket.try_acquire());
  clock.advance(50ms);
  EXPECT_TRUE(bucket.try_acquire());
  EXPECT_FALSE(bucket.try_acquire());
}

TEST(LeakyBucket, HoldsTheLongRunRate) {
  ManualClock clock;
  LeakyBucket bucket({.rate = 100, .period = 1s, .capacity = 5}, clock);
  int total = 0;
  for (int ms = 0; ms < 10'000; ++ms) {
    total += admitted(bucket, 3);
    clock.advance(1ms);
  }
  // 5 up front, then one per 10 ms for the remaining 9.999 s.
  EXPECT_NEAR(total, 5 + 999, 1);
}

// The wait for each turn, or nullopt when refused.
std::optional<Duration> wait_for_turn(LeakyBucket& bucket, Duration max_wait = Duration::max()) {
  const auto turn = bucket.try_schedule(max_wait);
  return turn.admission ? std::optional(turn.wait) : std::nullopt;
}

TEST(LeakyBucket, ScheduleSmoothsTheOutput) {
  ManualClock clock;
  LeakyBucket bucket({.rate = 10, .period = 1s, .capacity = 3}, clock);
  EXPECT_EQ(wait_for_turn(bucket), Duration::zero());
  EXPECT_EQ(wait_for_turn(bucket), Duration(100ms));
  EXPECT_EQ(wait_for_turn(bucket), Duration(200ms));
  EXPECT_EQ(wait_for_turn(bucket), std::nullopt);
  EXPECT_EQ(bucket.try_schedule().admission.reason(), Reason::rate_limited);
  clock.advance(100ms);
  const auto turn = bucket.try_schedule();
  EXPECT_EQ(turn.wait, Duration(200ms));
  EXPECT_EQ(turn.start, clock.now() + 200ms);
}

TEST(LeakyBucket, ATurnPastTheMaxWaitIsRefusedAndTakesNothing) {
  ManualClock clock;
  LeakyBucket bucket({.rate = 10, .period = 1s, .capacity = 5}, clock);
  EXPECT_EQ(wait_for_turn(bucket, 0ms), Duration::zero()) << "a turn now is never too late";
  EXPECT_EQ(bucket.try_schedule(100ms).admission.reason(), Reason::deadline_exceeded);
  EXPECT_EQ(bucket.try_schedule(50ms).admission.reason(), Reason::deadline_exceeded);
  EXPECT_DOUBLE_EQ(bucket.level(), 1.0);
  EXPECT_EQ(wait_for_turn(bucket, 101ms), Duration(100ms));
}

TEST(LeakyBucket, TheLastTurnGivenBackShortensTheSchedule) {
  ManualClock clock;
  LeakyBucket bucket({.rate = 10, .period = 1s, .capacity = 3}, clock);
  EXPECT_EQ(wait_for_turn(bucket), Duration::zero());
  const auto second = bucket.try_schedule();
  ASSERT_EQ(second.wait, Duration(100ms));
  clock.advance(30ms);
  bucket.give_back(second.start);
  EXPECT_NEAR(bucket.level(), 0.7, 1e-9);
  EXPECT_EQ(wait_for_turn(bucket), Duration(70ms)) << "the turn given back, not one after it";
}

// A turn given back in the middle of the schedule is a hole the next call fills; the
// turns after it keep their times and the end of the schedule stays where it was.
TEST(LeakyBucket, ATurnGivenBackInTheMiddleIsTakenByTheNextCall) {
  ManualClock clock;
  LeakyBucket bucket({.rate = 10, .period = 1s, .capacity = 4}, clock);
  std::vector<LeakyBucket::Turn> turns;
  for (int i = 0; i < 4; ++i) {
    turns.push_back(bucket.try_schedule());
  }
  EXPECT_EQ(wait_for_turn(bucket), std::nullopt) << "full";
  bucket.give_back(turns[1].start);
  bucket.give_back(turns[2].start);
  EXPECT_DOUBLE_EQ(bucket.level(), 2.0);
  EXPECT_EQ(wait_for_turn(bucket, 150ms), Duration(100ms));
  EXPECT_EQ(wait_for_turn(bucket, 150ms), std::nullopt) << "the next hole is 200 ms away";
  EXPECT_EQ(wait_for_turn(bucket), Duration(200ms));
  EXPECT_EQ(wait_for_turn(bucket), std::nullopt) << "full again";
  // Given back again, the last two turns shorten the schedule, over the hole before them.
  bucket.give_back(turns[2].start);
  bucket.give_back(turns[3].start);
  EXPECT_DOUBLE_EQ(bucket.level(), 2.0);
  EXPECT_EQ(wait_for_turn(bucket), Duration(200ms));
}

TEST(LeakyBucket, ATurnGivenBackTooLateIsLost) {
  ManualClock clock;
  LeakyBucket bucket({.rate = 10, .period = 1s, .capacity = 3}, clock);
  const auto first = bucket.try_schedule();
  EXPECT_EQ(wait_for_turn(bucket), Duration(100ms));
  EXPECT_EQ(wait_for_turn(bucket), Duration(200ms));
  clock.advance(150ms);  // the first turn is over, the second half spent
  bucket.give_back(first.start);
  EXPECT_NEAR(bucket.level(), 1.5, 1e-9) << "nothing left of the first turn to give back";
  EXPECT_EQ(wait_for_turn(bucket), Duration(150ms));
}

TEST(LeakyBucket, RejectsZeroRate) {
  EXPECT_THROW(LeakyBucket({.rate = 0}), std::invalid_argument);
  EXPECT_THROW(LeakyBucket({.capacity = 0}), std::invalid_argument);
}

TEST(TokenBucket, ReconfigureKeepsTheTokensAvailableUpToTheNewBurst) {
  ManualClock clock;
  TokenBucket bucket({.permits = 10, .period = 1s, .burst = 10}, clock);
  ASSERT_TRUE(bucket.try_acquire());
  ASSERT_TRUE(bucket.try_acquire());
  bucket.reconfigure({.permits = 20, .period = 1s, .burst = 20});
  EXPECT_DOUBLE_EQ(bucket.available(), 8.0) << "a larger burst adds no tokens";
  bucket.reconfigure({.permits = 5, .period = 1s, .burst = 5});
  EXPECT_DOUBLE_EQ(bucket.available(), 5.0) << "clamped to the smaller burst";
  clock.advance(200ms);
  EXPECT_DOUBLE_EQ(bucket.available(), 5.0);
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(bucket.try_acquire());
  }
  EXPECT_FALSE(bucket.try_acquire());
  clock.advance(200ms);  // one token at 5/s
  EXPECT_TRUE(bucket.try_acquire());
  EXPECT_FALSE(bucket.try_acquire());
  EXPECT_EQ(bucket.config().burst, 5U);
  EXPECT_THROW(bucket.reconfigure({.permits = 0}), std::invalid_argument);
  EXPECT_EQ(bucket.config().permits, 5U);
}

// A lease held by a thread comes back: its tokens count, and a smaller burst holds them.
TEST(TokenBucket, ReconfigureTakesTheLeasesBack) {
  ManualClock clock;
  TokenBucket bucket({.permits = 1024, .period = 1s, .burst = 1024}, clock);
  ASSERT_TRUE(bucket.try_acquire());  // takes a lease
  EXPECT_DOUBLE_EQ(bucket.available(), 1023.0);
  bucket.reconfigure({.permits = 1024, .period = 1s, .burst = 1024});
  EXPECT_DOUBLE_EQ(bucket.available(), 1023.0);
  bucket.reconfigure({.permits = 100, .period = 1s, .burst = 100});
  EXPECT_DOUBLE_EQ(bucket.available(), 100.0);
  int admitted = 0;
  for (int i = 0; i < 200; ++i) {
    admitted += bucket.try_acquire().is_granted() ? 1 : 0;
  }
  EXPECT_EQ(admitted, 100);
  bucket.reconfigure({.permits = 1024, .period = 1s, .burst = 1024});  // leasing again
  clock.advance(1s);
  admitted = 0;
  for (int i = 0; i < 2000; ++i) {
    admitted += bucket.try_acquire().is_granted() ? 1 : 0;
  }
  EXPECT_EQ(admitted, 1024);
}

TEST(LeakyBucket, ReconfigureLeaksAtTheNewRateFromNow) {
  ManualClock clock;
  LeakyBucket bucket({.rate = 10, .period = 1s, .capacity = 10}, clock);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(bucket.try_acquire());
  }
  clock.advance(500ms);  // 5 leaked at 10/s
  bucket.reconfigure({.rate = 1, .period = 1s, .capacity = 20});
  EXPECT_NEAR(bucket.level(), 5.0, 1e-6);
  clock.advance(1s);  // 1 leaked at 1/s
  EXPECT_NEAR(bucket.level(), 4.0, 1e-6);
  for (int i = 0; i < 16; ++i) {
    EXPECT_TRUE(bucket.try_acquire()) << "unit " << i << " of the new capacity";
  }
  EXPECT_FALSE(bucket.try_acquire());
  // A shaped call's turn follows the new rate: the 20 units ahead leak at 1/s.
  bucket.reconfigure({.rate = 1, .period = 1s, .capacity = 21});
  const auto turn = bucket.try_schedule();
  ASSERT_TRUE(turn.admission);
  EXPECT_NEAR(std::chrono::duration<double>(turn.wait).count(), 20.0, 1e-6);
  EXPECT_EQ(bucket.config().capacity, 21U);
}

}  // namespace
}  // namespace coromesh::qos
