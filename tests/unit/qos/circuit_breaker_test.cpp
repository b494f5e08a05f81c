#include "coromesh/qos/circuit_breaker.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>

namespace coromesh::qos {
namespace {

using namespace std::chrono_literals;
using State = CircuitBreaker::State;

CircuitBreakerConfig small_count_window() {
  return {.window_size = 4,
          .failure_rate_threshold = 0.5,
          .slow_call_duration = 100ms,
          .minimum_calls = 4,
          .wait_in_open = 10s,
          .permitted_calls_in_half_open = 2};
}

void call(CircuitBreaker& cb, bool ok, Duration d = 1ms) {
  ASSERT_TRUE(cb.acquire().is_granted());
  ok ? cb.on_success(d) : cb.on_failure(d);
}

void open(CircuitBreaker& cb) {
  for (int i = 0; i < 4; ++i) {
    call(cb, false);
  }
  ASSERT_EQ(cb.state(), State::open);
}

TEST(CircuitBreaker, DefaultsAreResilience4j) {
  const CircuitBreakerConfig c;
  EXPECT_EQ(c.window_type, WindowType::count_based);
  EXPECT_EQ(c.window_size, 100U);
  EXPECT_EQ(c.failure_rate_threshold, 0.5);
  EXPECT_EQ(c.slow_call_rate_threshold, 1.0);
  EXPECT_EQ(c.slow_call_duration, 60s);
  EXPECT_EQ(c.minimum_calls, 100U);
  EXPECT_EQ(c.wait_in_open, 60s);
  EXPECT_EQ(c.permitted_calls_in_half_open, 10U);
  EXPECT_EQ(to_string(State::half_open), "half_open");
}

TEST(CircuitBreaker, StaysClosedBelowMinimumCalls) {
  ManualClock clock;
  CircuitBreaker cb(small_count_window(), clock);
  for (int i = 0; i < 3; ++i) {
    call(cb, false);
  }
  EXPECT_EQ(cb.state(), State::closed);
  EXPECT_EQ(cb.snapshot().failure_rate, -1.0);
  call(cb, false);
  EXPECT_EQ(cb.state(), State::open);
  EXPECT_EQ(cb.snapshot().calls, 4U);
}

TEST(CircuitBreaker, OpensAtFailureRateThresholdOnly) {
  ManualClock clock;
  CircuitBreaker cb(small_count_window(), clock);
  call(cb, true);
  call(cb, true);
  call(cb, true);
  call(cb, false);  // 25 %
  EXPECT_EQ(cb.state(), State::closed);
  EXPECT_DOUBLE_EQ(cb.snapshot().failure_rate, 0.25);
  call(cb, false);  // window now: ok ok ok(evicted first) -> ok ok fail fail = 50 %
  EXPECT_EQ(cb.state(), State::open);
}

TEST(CircuitBreaker, CountWindowSlides) {
  ManualClock clock;
  auto config = small_count_window();
  config.failure_rate_threshold = 0.75;
  CircuitBreaker cb(config, clock);
  call(cb, false);
  call(cb, false);
  call(cb, true);
  call(cb, true);  // 50 %
  call(cb, true);  // evicts a failure: 25 %
  call(cb, true);  // 0 %
  EXPECT_EQ(cb.snapshot().failures, 0U);
  EXPECT_EQ(cb.state(), State::closed);
}

TEST(CircuitBreaker, RejectsWhileOpenThenHalfOpensAfterWait) {
  ManualClock clock;
  CircuitBreaker cb(small_count_window(), clock);
  open(cb);
  auto a = cb.acquire();
  ASSERT_FALSE(a);
  EXPECT_EQ(a.reason(), Reason::circuit_open);
  clock.advance(9999ms);
  EXPECT_FALSE(cb.acquire());
  clock.advance(1ms);
  EXPECT_TRUE(cb.acquire());  // first probe, state now half-open
  EXPECT_EQ(cb.state(), State::half_open);
  EXPECT_TRUE(cb.acquire());   // second probe
  EXPECT_FALSE(cb.acquire());  // no more probes
}

TEST(CircuitBreaker, HalfOpenSuccessCloses) {
  ManualClock clock;
  CircuitBreaker cb(small_count_window(), clock);
  open(cb);
  clock.advance(10s);
  call(cb, true);
  EXPECT_EQ(cb.state(), State::half_open);
  call(cb, true);
  EXPECT_EQ(cb.state(), State::closed);
  // A fresh window: three failures are again below minimum calls.
  for (int i = 0; i < 3; ++i) {
    call(cb, false);
  }
  EXPECT_EQ(cb.state(), State::closed);
}

TEST(CircuitBreaker, HalfOpenFailureReopensForAnotherWait) {
  ManualClock clock;
  CircuitBreaker cb(small_count_window(), clock);
  open(cb);
  clock.advance(10s);
  call(cb, true);
  call(cb, false);  // 50 % of probes failed
  EXPECT_EQ(cb.state(), State::open);
  EXPECT_EQ(cb.transitions(), 3U);  // closed->open->half_open->open
  clock.advance(5s);
  EXPECT_FALSE(cb.acquire());
  clock.advance(5s);
  EXPECT_TRUE(cb.acquire());
}

TEST(CircuitBreaker, ReleasedProbeCanBeReissued) {
  ManualClock clock;
  CircuitBreaker cb(small_count_window(), clock);
  open(cb);
  clock.advance(10s);
  EXPECT_TRUE(cb.acquire());
  EXPECT_TRUE(cb.acquire());
  EXPECT_FALSE(cb.acquire());
  cb.release_permission();
  EXPECT_TRUE(cb.acquire());
}

// Was: a call admitted while the breaker was CLOSED that ended after it had gone
// HALF_OPEN counted as a probe: its late outcome decided HALF_OPEN while the real probe
// was still out (this one, slow, reopened the breaker; a fast one closed it), and its
// cancellation gave back a probe permit it never held.
TEST(CircuitBreaker, CallsAdmittedBeforeItOpenedDoNotDecideTheProbes) {
  ManualClock clock;
  auto config = small_count_window();
  config.permitted_calls_in_half_open = 1;
  CircuitBreaker cb(config, clock);
  ASSERT_TRUE(cb.acquire());  // two old calls, admitted while CLOSED, still out
  ASSERT_TRUE(cb.acquire());
  clock.advance(1ms);
  open(cb);
  clock.advance(10s);
  ASSERT_TRUE(cb.acquire());  // the one probe
  ASSERT_EQ(cb.state(), State::half_open);
  const Duration old_call = 10s + 1ms;  // how long the old calls have been out
  cb.on_success(old_call);
  EXPECT_EQ(cb.state(), State::half_open);
  cb.release_permission(old_call);  // the other one cancelled
  EXPECT_FALSE(cb.acquire()) << "a second probe was let in";
  cb.on_success(1ms);  // the probe
  EXPECT_EQ(cb.state(), State::closed);
}

TEST(CircuitBreaker, SlowCallsOpenIt) {
  ManualClock clock;
  auto config = small_count_window();
  config.slow_call_rate_threshold = 0.5;
  CircuitBreaker cb(config, clock);
  call(cb, true, 150ms);
  call(cb, true, 1ms);
  call(cb, true, 99ms);
  EXPECT_EQ(cb.state(), State::closed);
  call(cb, true, 100ms);  // at the slow-call duration counts as slow: 2 of 4
  EXPECT_EQ(cb.state(), State::open);
  EXPECT_EQ(cb.snapshot().slow_calls, 2U);
}

TEST(CircuitBreaker, IgnoresResultsWhileOpen) {
  ManualClock clock;
  CircuitBreaker cb(small_count_window(), clock);
  open(cb);
  cb.on_success(1ms);
  cb.on_success(1ms);
  EXPECT_EQ(cb.state(), State::open);
}

TEST(CircuitBreaker, TimeWindowForgetsOldCalls) {
  ManualClock clock;
  CircuitBreaker cb({.window_type = WindowType::time_based,
                     .window_duration = 10s,
                     .window_buckets = 10,
                     .failure_rate_threshold = 0.5,
                     .minimum_calls = 4,
                     .wait_in_open = 10s,
                     .permitted_calls_in_half_open = 1},
                    clock);
  call(cb, false);
  call(cb, false);
  call(cb, false);
  EXPECT_EQ(cb.snapshot().calls, 3U);
  clock.advance(10s);  // the three failures age out
  EXPECT_EQ(cb.snapshot().calls, 0U);
  call(cb, false);
  EXPECT_EQ(cb.state(), State::closed);
  EXPECT_EQ(cb.snapshot().calls, 1U);
  clock.advance(5s);
  call(cb, true);
  call(cb, false);
  call(cb, false);  // 3 failures of 4 within 10 s
  EXPECT_EQ(cb.state(), State::open);
}

TEST(CircuitBreaker, TimeWindowPartialExpiry) {
  ManualClock clock;
  CircuitBreaker cb({.window_type = WindowType::time_based,
                     .window_duration = 10s,
                     .window_buckets = 10,
                     .minimum_calls = 100},
                    clock);
  call(cb, false);
  clock.advance(5s);
  call(cb, true);
  clock.advance(5s);  // the first bucket is out, the second still in
  EXPECT_EQ(cb.snapshot().calls, 1U);
  EXPECT_EQ(cb.snapshot().failures, 0U);
}

// Fast successes with a full window under the thresholds are counted per thread and
// folded in later: the transitions and the snapshot must be those of one-by-one recording.
TEST(CircuitBreaker, BatchedSuccessesKeepTheWindowExact) {
  ManualClock clock;
  CircuitBreaker cb({.window_size = 10, .failure_rate_threshold = 0.5, .minimum_calls = 10}, clock);
  for (int i = 0; i < 10; ++i) {
    call(cb, true);
  }
  for (int i = 0; i < 4; ++i) {
    call(cb, false);
  }
  for (int i = 0; i < 3; ++i) {
    call(cb, true);  // replace the three oldest successes
  }
  auto snapshot = cb.snapshot();
  EXPECT_EQ(snapshot.calls, 10U);
  EXPECT_EQ(snapshot.failures, 4U);
  EXPECT_DOUBLE_EQ(snapshot.failure_rate, 0.4);
  call(cb, false);  // 5 of the last 10: opens, as it would without batching
  EXPECT_EQ(cb.state(), State::open);
}

TEST(CircuitBreaker, ManySuccessesThenFailuresOpenAtTheSameCallAsOneByOne) {
  ManualClock clock;
  const CircuitBreakerConfig config{
      .window_size = 100, .failure_rate_threshold = 0.5, .minimum_calls = 100};
  CircuitBreaker cb(config, clock);
  for (int i = 0; i < 1000 + 7; ++i) {  // not a multiple of the batch
    call(cb, true);
  }
  EXPECT_EQ(cb.snapshot().failures, 0U);
  int failures = 0;
  while (cb.state() == State::closed && failures < 100) {
    call(cb, false);
    ++failures;
  }
  EXPECT_EQ(failures, 50);  // the 50th failure makes 50 of the last 100
}

// A folded batch replaces the oldest outcomes across the ring's end, failures among them.
TEST(CircuitBreaker, AFoldedBatchReplacesOldFailuresAcrossTheRingsEnd) {
  ManualClock clock;
  CircuitBreaker cb({.window_size = 40, .failure_rate_threshold = 0.5, .minimum_calls = 40}, clock);
  for (int i = 0; i < 40; ++i) {
    call(cb, i % 4 != 0);  // 10 failures
  }
  for (int i = 0; i < 5; ++i) {
    call(cb, false);  // the ring's next slot is now 5
  }
  EXPECT_EQ(cb.snapshot().failures, 13U);
  for (std::uint32_t i = 0; i < 2 * CircuitBreaker::kSuccessBatch; ++i) {
    call(cb, true);  // two batches: slots 5..36, then 37..39 and 0..28
  }
  auto snapshot = cb.snapshot();
  EXPECT_EQ(snapshot.calls, 40U);
  EXPECT_EQ(snapshot.failures, 0U);
  int failures = 0;
  while (cb.state() == State::closed && failures < 40) {
    call(cb, false);
    ++failures;
  }
  EXPECT_EQ(failures, 20);  // 20 of the last 40
}

TEST(CircuitBreaker, BatchedSuccessesFromTwoThreadsAreAllCounted) {
  CircuitBreaker cb({.window_size = 100, .minimum_calls = 100});
  for (int i = 0; i < 100; ++i) {
    cb.on_success(1ms);
  }
  auto work = [&cb] {
    for (int i = 0; i < 20000; ++i) {
      cb.on_success(1ms);
    }
  };
  std::thread a(work);
  std::thread b(work);
  a.join();
  b.join();
  const auto snapshot = cb.snapshot();
  EXPECT_EQ(snapshot.calls, 100U);
  EXPECT_EQ(snapshot.failures, 0U);
  for (int i = 0; i < 49; ++i) {
    cb.on_failure(1ms);
  }
  EXPECT_EQ(cb.state(), State::closed);
  cb.on_failure(1ms);
  EXPECT_EQ(cb.state(), State::open);
}

TEST(CircuitBreaker, RejectsNonsenseConfig) {
  EXPECT_THROW(CircuitBreaker({.window_size = 0}), std::invalid_argument);
  EXPECT_THROW(CircuitBreaker({.failure_rate_threshold = 0.0}), std::invalid_argument);
  EXPECT_THROW(CircuitBreaker({.failure_rate_threshold = 1.5}), std::invalid_argument);
  EXPECT_THROW(CircuitBreaker({.permitted_calls_in_half_open = 0}), std::invalid_argument);
  static_assert(validate(CircuitBreakerConfig{}).empty());
  static_assert(!validate(CircuitBreakerConfig{.minimum_calls = 0}).empty());
}

// reconfigure(): the state survives, the newest outcomes that fit the new window stay, and
// new thresholds wait for the next outcome.
TEST(CircuitBreaker, ReconfigureKeepsTheNewestOutcomesAndEvaluatesOnTheNextCall) {
  ManualClock clock;
  auto config = small_count_window();
  config.failure_rate_threshold = 0.75;
  CircuitBreaker cb(config, clock);
  call(cb, false);
  call(cb, false);
  call(cb, true);
  call(cb, true);
  ASSERT_EQ(cb.state(), State::closed);  // 50 % < 75 %
  config.window_size = 2;
  cb.reconfigure(config);
  auto s = cb.snapshot();
  EXPECT_EQ(s.calls, 2U);
  EXPECT_EQ(s.failures, 0U) << "the newest two were successes";
  config.window_size = 8;
  cb.reconfigure(config);
  call(cb, false);
  s = cb.snapshot();
  EXPECT_EQ(s.calls, 3U);
  EXPECT_EQ(s.failures, 1U);
  EXPECT_EQ(cb.config().window_size, 8U);

  // A threshold the window is already over opens it at the next outcome, not at once.
  config.window_size = 2;
  config.failure_rate_threshold = 0.5;
  cb.reconfigure(config);  // keeps [success, failure]: 50 %
  EXPECT_EQ(cb.state(), State::closed);
  call(cb, false);  // [failure, failure]
  EXPECT_EQ(cb.state(), State::open);
}

TEST(CircuitBreaker, ReconfiguredHalfOpenProbesApplyToTheNextTrial) {
  ManualClock clock;
  auto config = small_count_window();  // 2 probes
  CircuitBreaker cb(config, clock);
  open(cb);
  clock.advance(10s);
  ASSERT_TRUE(cb.acquire());
  ASSERT_EQ(cb.state(), State::half_open);
  config.permitted_calls_in_half_open = 4;
  cb.reconfigure(config);
  EXPECT_TRUE(cb.acquire());
  EXPECT_FALSE(cb.acquire()) << "this trial keeps its 2 probes";
  cb.on_failure(1ms);
  cb.on_failure(1ms);
  ASSERT_EQ(cb.state(), State::open);
  clock.advance(10s);
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(cb.acquire()) << "probe " << i << " of the next trial";
  }
  EXPECT_FALSE(cb.acquire());
  EXPECT_EQ(cb.state(), State::half_open);
}

// A new window type forgets the outcomes, never the state; the new window then works.
TEST(CircuitBreaker, ReconfiguringTheWindowTypeKeepsTheState) {
  ManualClock clock;
  auto config = small_count_window();
  CircuitBreaker cb(config, clock);
  open(cb);
  config.window_type = WindowType::time_based;
  config.window_duration = 10s;
  config.window_buckets = 10;
  cb.reconfigure(config);
  EXPECT_EQ(cb.state(), State::open);
  EXPECT_FALSE(cb.acquire());
  clock.advance(10s);
  call(cb, true);
  call(cb, true);
  ASSERT_EQ(cb.state(), State::closed);
  for (int i = 0; i < 4; ++i) {
    call(cb, false);
    clock.advance(1s);
  }
  EXPECT_EQ(cb.state(), State::open) << "the time-based window counts";
  EXPECT_THROW(cb.reconfigure({.window_size = 0}), std::invalid_argument);
  EXPECT_EQ(cb.config().window_type, WindowType::time_based) << "a refused config changes nothing";
}

// A success counted in a thread's shard when the window shrinks is folded into the old
// window first, so the newest outcomes are the ones kept.
TEST(CircuitBreaker, ReconfigureFoldsTheBatchedSuccessesFirst) {
  ManualClock clock;
  auto config = small_count_window();
  config.failure_rate_threshold = 0.75;
  CircuitBreaker cb(config, clock);
  call(cb, false);
  call(cb, true);
  call(cb, true);
  call(cb, true);   // full, 25 %: further fast successes are batched
  call(cb, false);  // [S, S, S, F]
  call(cb, true);   // batched: in the shard, not yet in the ring
  config.window_size = 1;
  cb.reconfigure(config);
  const auto s = cb.snapshot();
  EXPECT_EQ(s.calls, 1U);
  EXPECT_EQ(s.failures, 0U) << "the newest outcome is the batched success";
}

}  // namespace
}  // namespace coromesh::qos
