// How often a chain reads its clock, and which read each policy uses: the retry
// interceptor reads the chain's clock once for its budget and hands that time to the
// synchronous policies after it (Next::starting_at), so a call through the default chain
// reads the clock twice (where the policies start, where they end) instead of three times.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <memory>
#include <utility>
#include <vector>

#include "coromesh/qos/interceptors.hpp"
#include "run_awaitable.hpp"

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

using test_support::run;

// A clock that moves 1 ms forward on every read: the n-th read (0-based) returns
// base + n ms. A time handed down instead of read again shows in the number of reads and
// in the deadlines computed from them.
class SteppingClock final : public Clock {
 public:
  explicit SteppingClock(Duration base) : base_(base) {}
  time_point now() const noexcept override { return at(reads_.fetch_add(1)); }
  time_point at(int read) const noexcept { return time_point(base_ + read * Duration(1ms)); }
  int reads() const noexcept { return reads_.load(); }

 private:
  Duration base_;
  mutable std::atomic<int> reads_{0};
};

constexpr RetryConfig kNoBackoff{.max_attempts = 3, .base_backoff = 0ms, .max_backoff = 0ms};

std::shared_ptr<Interceptor> deadline_timeout() {
  return std::make_shared<TimeoutInterceptor>(100ms, std::nullopt, "timeout",
                                              TimeoutMode::deadline);
}

// retry(timeout(call)) on `clock`, the retry with `budget`.
Chain<int> retry_then_timeout(const Clock& clock, std::shared_ptr<RetryBudget> budget) {
  return Chain<int>(
      {std::make_shared<RetryInterceptor>(kNoBackoff, RetryOptions{.budget = std::move(budget)}),
       deadline_timeout()},
      {.clock = &clock});
}

// A call that records the deadline each attempt saw and fails the first `failures`.
struct Attempts {
  int failures = 0;
  std::vector<Deadline> deadlines;
};

asio::awaitable<int> attempt(Attempts& attempts, const Invocation& invocation) {
  attempts.deadlines.push_back(invocation.deadline());
  if (static_cast<int>(attempts.deadlines.size()) <= attempts.failures) {
    throw boost::system::system_error(asio::error::connection_reset);  // retryable
  }
  co_return 42;
}

Chain<int>::InvocationCall call_of(Attempts& attempts) {
  return [&attempts](const Invocation& invocation) { return attempt(attempts, invocation); };
}

TEST(ChainClock, RetryHandsItsClockReadToThePoliciesAfterIt) {
  asio::io_context io;
  SteppingClock clock(Duration(1h));
  const Chain<int> chain =
      retry_then_timeout(clock, std::make_shared<RetryBudget>(RetryBudgetConfig{}, clock));
  const int before = clock.reads();
  Attempts attempts;
  EXPECT_EQ(run(io, chain.execute_with(call_of(attempts))), 42);
  // One read where retry (its budget) and the timeout start, one where the timeout ends.
  EXPECT_EQ(clock.reads() - before, 2);
  ASSERT_EQ(attempts.deadlines.size(), 1U);
  EXPECT_EQ(attempts.deadlines[0].when(), clock.at(before) + 100ms);
}

TEST(ChainClock, ARetriedAttemptStartsAtATimeReadAfterTheFirstEnded) {
  asio::io_context io;
  SteppingClock clock(Duration(1h));
  const Chain<int> chain =
      retry_then_timeout(clock, std::make_shared<RetryBudget>(RetryBudgetConfig{}, clock));
  Attempts attempts{.failures = 1};
  EXPECT_EQ(run(io, chain.execute_with(call_of(attempts))), 42);
  ASSERT_EQ(attempts.deadlines.size(), 2U);
  // The second attempt's deadline is measured from a read after the first attempt ended
  // (that read itself, the budget's retry check: at least two reads later), not from
  // the time handed to the first attempt.
  EXPECT_GE(attempts.deadlines[1].when() - attempts.deadlines[0].when(), 2ms);
}

TEST(ChainClock, ABudgetOnAnotherClockKeepsReadingItsOwn) {
  asio::io_context io;
  SteppingClock chain_clock(Duration(24h * 365 + 1h));  // an hour ahead of budget_clock
  ManualClock budget_clock;
  auto budget = std::make_shared<RetryBudget>(
      RetryBudgetConfig{.ratio = 1.0, .min_retries_per_second = 0, .ttl = 10s}, budget_clock);
  const Chain<int> chain = retry_then_timeout(chain_clock, budget);
  Attempts attempts;
  EXPECT_EQ(run(io, chain.execute_with(call_of(attempts))), 42);
  EXPECT_EQ(budget->available(), 1U);
  // Counted at the budget clock's time, the request ages out with the first window; at
  // the chain clock's time (an hour later) it would still count.
  budget_clock.advance(10500ms);
  EXPECT_EQ(budget->available(), 0U);
}

TEST(ChainClock, WithoutABudgetRetryReadsNoClock) {
  asio::io_context io;
  SteppingClock clock(Duration(1h));
  Chain<int> chain({std::make_shared<RetryInterceptor>(kNoBackoff), deadline_timeout()},
                   {.clock = &clock});
  Attempts attempts;
  EXPECT_EQ(run(io, chain.execute_with(call_of(attempts))), 42);
  EXPECT_EQ(clock.reads(), 2);  // the timeout's start and end
  ASSERT_EQ(attempts.deadlines.size(), 1U);
  EXPECT_EQ(attempts.deadlines[0].when(), clock.at(0) + 100ms);
}

// The adaptive limit's sample and its baseline window take the time the chain read where
// the call ended, instead of reading the clock a third time (the limit is on the chain's
// clock here, so a read of its own would show).
TEST(ChainClock, TheAdaptiveLimitTakesTheTimeTheChainReadAtTheEnd) {
  asio::io_context io;
  SteppingClock clock(Duration(1h));
  auto limit = std::make_shared<AdaptiveLimit>(AdaptiveLimitConfig{.baseline_window = 1ms}, clock);
  Chain<int> chain({deadline_timeout(), std::make_shared<AdaptiveLimitInterceptor>(limit)},
                   {.clock = &clock});
  const int before = clock.reads();
  Attempts attempts;
  EXPECT_EQ(run(io, chain.execute_with(call_of(attempts))), 42);
  EXPECT_EQ(clock.reads() - before, 2);  // where the policies start, where they end
  EXPECT_EQ(limit->in_flight(), 0U);
  // The window (1 ms) turned at the end's time: the sample, 1 ms, is in the new one.
  EXPECT_EQ(limit->baseline(), 1ms);
}

}  // namespace
}  // namespace coromesh::qos
