#include "coromesh/qos/chain.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "coromesh/http/error.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/qos/interceptors.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "coromesh/service/remote_error.hpp"
#include "run_awaitable.hpp"
#include "scripted_call.hpp"

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using test_support::run;

using testing::Boom;
using testing::Script;
using testing::scripted;
using testing::scripted_call;

// A call that takes `duration` of real time (cancellable), then returns `value`.
asio::awaitable<int> slow(Duration duration, int value, int* calls) {
  ++*calls;
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, duration);
  co_await timer.async_wait(asio::use_awaitable);
  co_return value;
}

// Records its phases as "<name>.request", "<name>.response", "<name>.fault:<what>".
class Recorder final : public PhaseInterceptor {
 public:
  Recorder(std::string name, std::optional<int> weight, std::vector<std::string>& log)
      : PhaseInterceptor(std::move(name), weight), log_(&log) {}

  void process_request(Invocation& invocation) override {
    log_->push_back(name() + ".request#" + std::to_string(invocation.attempt()));
  }
  void process_response(Invocation&) override { log_->push_back(name() + ".response"); }
  void process_fault(Invocation&, const std::exception_ptr& fault) override {
    log_->push_back(name() + ".fault:" + Fault::from(fault).message);
  }

 private:
  std::vector<std::string>* log_;
};

// Always rejects with a given reason (drives fallback through every reason).
class Rejector final : public Interceptor {
 public:
  explicit Rejector(Reason reason)
      : Interceptor("rejector", std::nullopt, weights::custom), reason_(reason) {}
  asio::awaitable<void> around(Invocation& invocation, Next) override {
    invocation.reject(name(), reason_);
    co_return;
  }

 private:
  Reason reason_;
};

struct Rejections {
  std::vector<std::pair<std::string, Reason>> seen;
  RejectionHook hook() {
    return [this](std::string_view policy, Reason reason) {
      seen.emplace_back(std::string(policy), reason);
    };
  }
};

template <class F>
QosRejected expect_rejected(F&& f) {
  try {
    f();
  } catch (const QosRejected& rejected) {
    return rejected;
  }
  ADD_FAILURE() << "no QosRejected thrown";
  return QosRejected("none", Reason::deadline_exceeded);
}

// Expects the call's own Boom, not a QosRejected.
template <class F>
void expect_boom(F&& f) {
  try {
    f();
    ADD_FAILURE() << "nothing thrown";
  } catch (const QosRejected& rejected) {
    ADD_FAILURE() << "unexpected rejection: " << rejected.what();
  } catch (const std::runtime_error& error) {
    EXPECT_STREQ(error.what(), "boom");
  }
}

// --- ordering ---------------------------------------------------------------------------

TEST(Chain, ExplicitWeightsOrderLowestOutermost) {
  asio::io_context io;
  std::vector<std::string> log;
  Chain<int> chain({std::make_shared<Recorder>("a", 3, log),
                    std::make_shared<Recorder>("b", 1, log),
                    std::make_shared<Recorder>("c", 2, log)});
  EXPECT_THAT(chain.order(), ElementsAre("b", "c", "a"));
  Script script;
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_THAT(log, ElementsAre("b.request#1", "c.request#1", "a.request#1", "a.response",
                               "c.response", "b.response"));
}

TEST(Chain, TiesKeepDeclarationOrder) {
  std::vector<std::string> log;
  Chain<int> chain(
      {std::make_shared<Recorder>("x", 5, log), std::make_shared<Recorder>("y", 5, log),
       std::make_shared<Recorder>("w", 4, log), std::make_shared<Recorder>("z", 5, log)});
  EXPECT_THAT(chain.order(), ElementsAre("w", "x", "y", "z"));
}

TEST(Chain, DefaultOrderWithoutWeights) {
  std::vector<std::string> log;
  Chain<int> chain({
      std::make_shared<BulkheadInterceptor>(std::make_shared<Bulkhead>()),
      std::make_shared<Recorder>("custom", std::nullopt, log),
      std::make_shared<LogInterceptor>(),
      std::make_shared<TimeoutInterceptor>(100ms),
      std::make_shared<Fallback<int>>(Fallback<int>::value(0)),
      std::make_shared<RateLimitInterceptor>(std::make_shared<TokenBucket>()),
      std::make_shared<AdaptiveLimitInterceptor>(std::make_shared<AdaptiveLimit>()),
      std::make_shared<CircuitBreakerInterceptor>(std::make_shared<CircuitBreaker>()),
      std::make_shared<RetryInterceptor>(RetryConfig{}),
  });
  EXPECT_THAT(chain.order(),
              ElementsAre("log", "fallback", "retry", "circuit_breaker", "rate_limit", "timeout",
                          "bulkhead", "adaptive_limit", "custom"));
}

TEST(Chain, ExplicitWeightMixesWithDefaults) {
  std::vector<std::string> log;
  Chain<int> chain({
      std::make_shared<TimeoutInterceptor>(100ms),
      std::make_shared<RetryInterceptor>(RetryConfig{}),
      std::make_shared<Recorder>("metrics", 1, log),  // outermost
      std::make_shared<Recorder>("between", weights::retry + 1, log),
  });
  EXPECT_THAT(chain.order(), ElementsAre("metrics", "retry", "between", "timeout"));
}

TEST(Chain, EmptyChainJustCalls) {
  asio::io_context io;
  Chain<int> chain({});
  Script script;
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_EQ(script.calls, 1);
}

TEST(Chain, NullInterceptorIsRefused) {
  EXPECT_THROW(Chain<int>({nullptr}), std::invalid_argument);
}

// --- synchronous segments ---------------------------------------------------------------

// Synchronous interceptors share one frame; their phases must still nest as if each
// wrapped the rest: requests outermost first, outcomes innermost first, and a rejection
// in the middle seen as a fault by the ones outside it only.
TEST(Chain, SynchronousRunNestsLikeTheNestedForm) {
  asio::io_context io;
  std::vector<std::string> log;
  auto refuse_all = std::make_shared<TokenBucket>(TokenBucketConfig{.permits = 1, .burst = 1});
  (void)refuse_all->try_acquire();  // empty: the next call is rate_limited
  Chain<int> chain({std::make_shared<Recorder>("outer", 1, log),
                    std::make_shared<RateLimitInterceptor>(refuse_all, 2),
                    std::make_shared<Recorder>("inner", 3, log)});
  Script script;
  auto rejected = expect_rejected([&] { run(io, chain.execute(scripted_call(script))); });
  EXPECT_EQ(rejected.reason(), Reason::rate_limited);
  EXPECT_EQ(script.calls, 0);
  EXPECT_THAT(log, ElementsAre("outer.request#1",
                               "outer.fault:qos policy 'rate_limit' rejected the call: "
                               "rate_limited"));
}

TEST(Chain, DeadlineModeTimeoutSetsTheAttemptDeadlineWithoutATimer) {
  asio::io_context io;
  ManualClock clock;
  Chain<int> chain(
      {std::make_shared<TimeoutInterceptor>(80ms, std::nullopt, "timeout", TimeoutMode::deadline)},
      {.operation = "op", .clock = &clock});
  Duration seen{};
  Chain<int>::InvocationCall call = [&](const Invocation& invocation) -> asio::awaitable<int> {
    seen = invocation.deadline().remaining(clock);
    co_return 1;
  };
  EXPECT_EQ(run(io, chain.execute_with(call, {.deadline = Deadline::after(1s, clock)})), 1);
  EXPECT_EQ(seen, 80ms);
  // A spent overall deadline is refused before the call.
  auto rejected = expect_rejected(
      [&] { run(io, chain.execute_with(call, {.deadline = Deadline::after(0ms, clock)})); });
  EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
}

// --- a callee's errors -------------------------------------------------------------------

asio::awaitable<int> answer_status(int* calls, unsigned status) {
  ++*calls;
  throw coromesh::RemoteError(status, "boom", "the callee says no");
  co_return 0;
}

TEST(Chain, RetryRetriesA503ButNotA400) {
  asio::io_context io;
  Chain<int> chain({std::make_shared<RetryInterceptor>(
                       RetryConfig{.max_attempts = 3, .base_backoff = 0ms, .max_backoff = 0ms})},
                   {.classify = classify_service_fault});
  int calls = 0;
  EXPECT_THROW(run(io, chain.execute([&] { return answer_status(&calls, 503); })),
               coromesh::RemoteError);
  EXPECT_EQ(calls, 3);
  calls = 0;
  EXPECT_THROW(run(io, chain.execute([&] { return answer_status(&calls, 400); })),
               coromesh::RemoteError);
  EXPECT_EQ(calls, 1);
}

TEST(Chain, BreakerCountsA5xxButNotA4xx) {
  asio::io_context io;
  auto breaker = std::make_shared<CircuitBreaker>(
      CircuitBreakerConfig{.window_size = 2, .minimum_calls = 2, .wait_in_open = 1h});
  Chain<int> chain({std::make_shared<CircuitBreakerInterceptor>(breaker)},
                   {.classify = classify_service_fault});
  int calls = 0;
  for (int i = 0; i < 5; ++i) {
    EXPECT_THROW(run(io, chain.execute([&] { return answer_status(&calls, 404); })),
                 coromesh::RemoteError);
  }
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::closed) << "the caller's own errors";
  for (int i = 0; i < 5; ++i) {  // a handler's own 400 (e.g. division by zero) likewise
    EXPECT_THROW(run(io, chain.execute([]() -> asio::awaitable<int> {
                   throw http::HttpError(http::Status::bad_request, "division_by_zero", "r is 0");
                 })),
                 http::HttpError);
  }
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::closed);
  for (int i = 0; i < 2; ++i) {
    EXPECT_THROW(run(io, chain.execute([&] { return answer_status(&calls, 500); })),
                 coromesh::RemoteError);
  }
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::open);
}

// --- fault phase ------------------------------------------------------------------------

TEST(Chain, FaultPhaseSeesTheException) {
  asio::io_context io;
  std::vector<std::string> log;
  Chain<int> chain(
      {std::make_shared<Recorder>("outer", 1, log), std::make_shared<Recorder>("inner", 2, log)});
  Script script{.failures = 1};
  expect_boom([&] { run(io, chain.execute(scripted_call(script))); });
  EXPECT_THAT(log, ElementsAre("outer.request#1", "inner.request#1", "inner.fault:boom",
                               "outer.fault:boom"));
}

TEST(Chain, FaultPhaseSeesARejection) {
  asio::io_context io;
  ManualClock clock;
  std::vector<std::string> log;
  auto bucket = std::make_shared<TokenBucket>(TokenBucketConfig{.permits = 1, .burst = 1}, clock);
  Chain<int> chain({std::make_shared<Recorder>("outer", 1, log),
                    std::make_shared<RateLimitInterceptor>(bucket)});
  Script script;
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  log.clear();
  EXPECT_THROW(run(io, chain.execute(scripted_call(script))), QosRejected);
  ASSERT_EQ(log.size(), 2U);
  EXPECT_EQ(log[1], "outer.fault:qos policy 'rate_limit' rejected the call: rate_limited");
}

// --- retry ------------------------------------------------------------------------------

constexpr RetryConfig kFastRetry{
    .max_attempts = 4, .base_backoff = 1ms, .max_backoff = 2ms, .jitter = Jitter::none};

TEST(Chain, RetryCallsNextUntilSuccess) {
  asio::io_context io;
  std::vector<std::string> log;
  Chain<int> chain({std::make_shared<RetryInterceptor>(kFastRetry),
                    std::make_shared<Recorder>("inner", std::nullopt, log)});
  Script script{.failures = 2};
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_EQ(script.calls, 3);
  EXPECT_THAT(log, ElementsAre("inner.request#1", "inner.fault:boom", "inner.request#2",
                               "inner.fault:boom", "inner.request#3", "inner.response"));
}

TEST(Chain, RetryGivesUpAfterMaxAttempts) {
  asio::io_context io;
  Chain<int> chain({std::make_shared<RetryInterceptor>(kFastRetry)});
  Script script{.failures = 100};
  expect_boom([&] { run(io, chain.execute(scripted_call(script))); });
  EXPECT_EQ(script.calls, 4);
}

TEST(Chain, RetrySkipsNonIdempotentCalls) {
  asio::io_context io;
  Chain<int> chain({std::make_shared<RetryInterceptor>(kFastRetry)});
  Script script{.failures = 1};
  expect_boom([&] { run(io, chain.execute(scripted_call(script), {.idempotent = false})); });
  EXPECT_EQ(script.calls, 1);
}

// A call whose code sent something that must not be sent twice (a served operation's
// handler that made a POST downstream) is not run again, even by a retry that would retry
// any method.
TEST(Chain, RetryNeverRunsAgainACallMarkedUnrepeatable) {
  asio::io_context io;
  RetryConfig any_method = kFastRetry;
  any_method.idempotent_only = false;
  Chain<int> chain({std::make_shared<RetryInterceptor>(any_method)});
  int calls = 0;
  Chain<int>::InvocationCall marks =
      [&calls](const Invocation& invocation) -> asio::awaitable<int> {
    if (++calls == 2) {
      invocation.mark_unrepeatable();
    }
    throw Boom();
    co_return 0;
  };
  expect_boom([&] { run(io, chain.execute_with(std::move(marks))); });
  EXPECT_EQ(calls, 2) << "the first failure (nothing marked) is retried, the second is not";
}

TEST(Chain, RetryDoesNotStartABackoffPastTheDeadline) {
  asio::io_context io;
  ManualClock clock;
  Chain<int> chain({std::make_shared<RetryInterceptor>(RetryConfig{
                       .base_backoff = 40ms, .max_backoff = 40ms, .jitter = Jitter::none})},
                   {.clock = &clock});
  Script script{.failures = 1};
  expect_boom([&] {
    run(io, chain.execute(scripted_call(script), {.deadline = Deadline::after(20ms, clock)}));
  });
  EXPECT_EQ(script.calls, 1);
}

TEST(Chain, RetryStoppedByBudget) {
  asio::io_context io;
  ManualClock clock;
  // One retry allowed per second of ttl, no ratio: the budget holds exactly 1 retry.
  auto budget = std::make_shared<RetryBudget>(
      RetryBudgetConfig{.ratio = 0.0, .min_retries_per_second = 1, .ttl = 1s, .buckets = 1}, clock);
  Chain<int> chain(
      {std::make_shared<RetryInterceptor>(kFastRetry, RetryOptions{.budget = budget})});
  Rejections rejections;
  chain.on_rejection(rejections.hook());
  Script script{.failures = 100};
  // The budget declines a third attempt; it does not answer for the callee: the call ends
  // with the last attempt's own failure, and the refusal is counted once.
  expect_boom([&] { run(io, chain.execute(scripted_call(script))); });
  EXPECT_EQ(script.calls, 2);  // the first call and the one budgeted retry
  ASSERT_EQ(rejections.seen.size(), 1U);
  EXPECT_EQ(rejections.seen[0].first, "retry");
  EXPECT_EQ(rejections.seen[0].second, Reason::budget_exhausted);
}

TEST(Chain, RetryRetriesAPerAttemptTimeout) {
  asio::io_context io;
  int calls = 0;
  Chain<int> chain({std::make_shared<RetryInterceptor>(
                        RetryConfig{.max_attempts = 3, .base_backoff = 0ms, .max_backoff = 0ms}),
                    std::make_shared<TimeoutInterceptor>(500ms)});
  // First attempt 60 s (times out at 500 ms), the second 1 ms. The margins are wide: a
  // 20 ms timeout let the second attempt time out too on a loaded machine under ASan
  // (2026-11-29: 3 calls).
  const Chain<int>::Call call = [&calls] {
    return slow(calls == 0 ? Duration(60s) : Duration(1ms), 7, &calls);
  };
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(run(io, chain.execute(call)), 7);
  EXPECT_EQ(calls, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s) << "the first attempt was cut short";
}

// --- timeout ----------------------------------------------------------------------------

TEST(Chain, TimeoutRejectsASlowCall) {
  asio::io_context io;
  int calls = 0;
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(20ms)});
  Rejections rejections;
  chain.on_rejection(rejections.hook());
  const Chain<int>::Call call = [&calls] { return slow(200ms, 7, &calls); };
  const auto start = std::chrono::steady_clock::now();
  const auto rejected = expect_rejected([&] { run(io, chain.execute(call)); });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
  EXPECT_EQ(rejected.policy(), "timeout");
  EXPECT_EQ(rejected.http_status(), 504U);
  EXPECT_GE(elapsed, 20ms);
  EXPECT_LT(elapsed, 150ms);  // the slow call was cancelled, not waited for
  ASSERT_EQ(rejections.seen.size(), 1U);
  EXPECT_EQ(rejections.seen[0].second, Reason::deadline_exceeded);
}

TEST(Chain, TimeoutPassesAFastCall) {
  asio::io_context io;
  int calls = 0;
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(50ms)});
  const Chain<int>::Call call = [&calls] { return slow(1ms, 7, &calls); };
  EXPECT_EQ(run(io, chain.execute(call)), 7);
}

TEST(Chain, TimeoutDoesNotDelayAFailingCall) {
  asio::io_context io;
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(50ms)});
  Script script{.failures = 1};
  const auto start = std::chrono::steady_clock::now();
  expect_boom([&] { run(io, chain.execute(scripted_call(script))); });
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 40ms);
}

// Two preemptive timeouts in one synchronous run: whichever deadline comes first cuts the
// call off, and it is the one named in the rejection.
TEST(Chain, TheEarlierOfTwoPreemptiveTimeoutsCutsOff) {
  for (const bool inner_is_shorter : {true, false}) {
    asio::io_context io;
    int calls = 0;
    Chain<int> chain(
        {std::make_shared<TimeoutInterceptor>(inner_is_shorter ? 2s : 20ms, 1, "outer"),
         std::make_shared<TimeoutInterceptor>(inner_is_shorter ? 20ms : 2s, 2, "inner")});
    const Chain<int>::Call call = [&calls] { return slow(10s, 7, &calls); };
    const auto start = std::chrono::steady_clock::now();
    const auto rejected = expect_rejected([&] { run(io, chain.execute(call)); });
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
    EXPECT_EQ(rejected.policy(), inner_is_shorter ? "inner" : "outer");
  }
}

// The interceptors inside a preemptive timeout see the call cancelled; the timeout and
// those outside it see the deadline it enforced.
TEST(Chain, InsideTheTimeoutACutOffIsACancellationOutsideADeadline) {
  asio::io_context io;
  std::vector<std::string> log;
  int calls = 0;
  Chain<int> chain({std::make_shared<Recorder>("outside", 100, log),
                    std::make_shared<TimeoutInterceptor>(20ms, 600),
                    std::make_shared<Recorder>("inside", 700, log)});
  const Chain<int>::Call call = [&calls] { return slow(10s, 7, &calls); };
  expect_rejected([&] { run(io, chain.execute(call)); });
  ASSERT_EQ(log.size(), 4U);
  EXPECT_THAT(log[2], HasSubstr("inside.fault:"));
  EXPECT_THAT(log[2], HasSubstr("cancel"));
  EXPECT_THAT(log[3], HasSubstr("outside.fault:"));
  EXPECT_THAT(log[3], HasSubstr("deadline_exceeded"));
}

// On a test's manual clock the timeout still cuts off in real time.
TEST(Chain, PreemptiveTimeoutOnAManualClockCutsOffInRealTime) {
  asio::io_context io;
  ManualClock clock;
  int calls = 0;
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(20ms)}, {.clock = &clock});
  const Chain<int>::Call call = [&calls] { return slow(10s, 7, &calls); };
  const auto start = std::chrono::steady_clock::now();
  const auto rejected = expect_rejected([&] { run(io, chain.execute(call)); });
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
}

TEST(Chain, ExpiredOverallDeadlineRejectsWithoutCalling) {
  asio::io_context io;
  ManualClock clock;
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(50ms)}, {.clock = &clock});
  Script script;
  const auto rejected = expect_rejected([&] {
    run(io, chain.execute(scripted_call(script), {.deadline = Deadline::after(0ms, clock)}));
  });
  EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
  EXPECT_EQ(script.calls, 0);
}

TEST(Chain, TimeoutRefusesANonPositiveDuration) {
  EXPECT_THROW(TimeoutInterceptor(0ms), std::invalid_argument);
}

// --- circuit breaker --------------------------------------------------------------------

TEST(Chain, BreakerOpensThenFallbackAnswersAStaticValue) {
  asio::io_context io;
  ManualClock clock;
  auto breaker =
      std::make_shared<CircuitBreaker>(CircuitBreakerConfig{.window_size = 4,
                                                            .minimum_calls = 4,
                                                            .wait_in_open = 10s,
                                                            .permitted_calls_in_half_open = 1},
                                       clock);
  Chain<int> chain(
      {std::make_shared<Fallback<int>>(Fallback<int>::value(-1), FallbackFilter{.errors = false}),
       std::make_shared<CircuitBreakerInterceptor>(breaker)},
      {.clock = &clock});
  Rejections rejections;
  chain.on_rejection(rejections.hook());
  Script script{.failures = 4};
  for (int i = 0; i < 4; ++i) {
    expect_boom([&] { run(io, chain.execute(scripted_call(script))); });
  }
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::open);
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), -1);
  EXPECT_EQ(script.calls, 4);  // not called while open
  ASSERT_EQ(rejections.seen.size(), 1U);
  EXPECT_EQ(rejections.seen[0].first, "circuit_breaker");
  EXPECT_EQ(rejections.seen[0].second, Reason::circuit_open);
  // After wait_in_open a successful probe closes the breaker again.
  clock.advance(10s);
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::closed);
}

TEST(Chain, BreakerCountsAnInnerTimeoutAsAFailure) {
  asio::io_context io;
  auto breaker =
      std::make_shared<CircuitBreaker>(CircuitBreakerConfig{.window_size = 1, .minimum_calls = 1});
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(10ms),
                    std::make_shared<CircuitBreakerInterceptor>(breaker)});
  int calls = 0;
  const Chain<int>::Call call = [&calls] { return slow(200ms, 7, &calls); };
  const auto rejected = expect_rejected([&] { run(io, chain.execute(call)); });
  EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::open);
}

TEST(Chain, BreakerInsideATimeoutCountsItsCancellationAsATimeout) {
  asio::io_context io;
  auto breaker =
      std::make_shared<CircuitBreaker>(CircuitBreakerConfig{.window_size = 1, .minimum_calls = 1});
  // Timeout outside the breaker (explicit weights): the breaker sees the call cancelled by
  // the timeout, which is a timeout (fault.hpp), not the caller going away (see
  // fault_test.cpp for that).
  Chain<int> chain({std::make_shared<TimeoutInterceptor>(10ms, 1),
                    std::make_shared<CircuitBreakerInterceptor>(breaker, 2)});
  int calls = 0;
  const Chain<int>::Call call = [&calls] { return slow(200ms, 7, &calls); };
  const auto rejected = expect_rejected([&] { run(io, chain.execute(call)); });
  EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::open);
}

TEST(Chain, BreakerIgnoresLocalOverloadRejections) {
  asio::io_context io;
  ManualClock clock;
  auto breaker = std::make_shared<CircuitBreaker>(
      CircuitBreakerConfig{.window_size = 2, .minimum_calls = 2}, clock);
  auto bucket = std::make_shared<TokenBucket>(TokenBucketConfig{.permits = 1, .burst = 1}, clock);
  Chain<int> chain({std::make_shared<CircuitBreakerInterceptor>(breaker),
                    std::make_shared<RateLimitInterceptor>(bucket)},
                   {.clock = &clock});
  Script script;
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  for (int i = 0; i < 5; ++i) {
    EXPECT_THROW(run(io, chain.execute(scripted_call(script))), QosRejected);
  }
  EXPECT_EQ(breaker->state(), CircuitBreaker::State::closed);
  EXPECT_EQ(breaker->snapshot().failures, 0U);
}

// --- rate limit -------------------------------------------------------------------------

TEST(Chain, TokenBucketRejectsBeyondBurstThenRefills) {
  asio::io_context io;
  ManualClock clock;
  auto bucket = std::make_shared<TokenBucket>(
      TokenBucketConfig{.permits = 1, .period = 1s, .burst = 3}, clock);
  Chain<int> chain({std::make_shared<RateLimitInterceptor>(bucket)}, {.clock = &clock});
  Script script;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  }
  const auto rejected = expect_rejected([&] { run(io, chain.execute(scripted_call(script))); });
  EXPECT_EQ(rejected.reason(), Reason::rate_limited);
  EXPECT_EQ(rejected.policy(), "rate_limit");
  EXPECT_EQ(rejected.http_status(), 429U);
  EXPECT_EQ(script.calls, 3);
  clock.advance(1s);
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
}

TEST(Chain, RateLimitedFallsBack) {
  asio::io_context io;
  ManualClock clock;
  auto bucket = std::make_shared<TokenBucket>(
      TokenBucketConfig{.permits = 1, .period = 1s, .burst = 2}, clock);
  Chain<int> chain({std::make_shared<RateLimitInterceptor>(bucket),
                    std::make_shared<Fallback<int>>(Fallback<int>::value(-429))},
                   {.clock = &clock});
  Script script;
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), -429);
}

TEST(Chain, LeakyBucketRejectsWhenFull) {
  asio::io_context io;
  ManualClock clock;
  auto bucket = std::make_shared<LeakyBucket>(
      LeakyBucketConfig{.rate = 1, .period = 1s, .capacity = 2}, clock);
  Chain<int> chain({std::make_shared<RateLimitInterceptor>(bucket)}, {.clock = &clock});
  Script script;
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  const auto rejected = expect_rejected([&] { run(io, chain.execute(scripted_call(script))); });
  EXPECT_EQ(rejected.reason(), Reason::rate_limited);
  clock.advance(1s);
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
}

// Shaping: with the bucket's clock frozen, the n-th queued call waits n x 20 ms of real
// time (1 per 20 ms), so three calls started together finish about 40 ms apart from the
// first; the fourth does not fit the bucket of 3 and is refused at once.
TEST(Chain, ShapingLeakyBucketSpacesCallsAtItsRate) {
  asio::io_context io;
  ManualClock clock;
  auto bucket = std::make_shared<LeakyBucket>(
      LeakyBucketConfig{.rate = 1, .period = 20ms, .capacity = 3}, clock);
  Chain<int> chain({std::make_shared<RateLimitInterceptor>(bucket, std::nullopt, "rate_limit",
                                                           /*shape=*/true)},
                   {.clock = &clock});
  std::vector<std::chrono::steady_clock::time_point> finished;
  const Chain<int>::Call call = [&finished]() -> asio::awaitable<int> {
    finished.push_back(std::chrono::steady_clock::now());
    co_return 1;
  };
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::future<int>> calls;
  for (int i = 0; i < 4; ++i) {
    calls.push_back(asio::co_spawn(io, chain.execute(call), asio::use_future));
  }
  io.run();
  EXPECT_EQ(calls[0].get() + calls[1].get() + calls[2].get(), 3);
  try {
    calls[3].get();
    ADD_FAILURE() << "the fourth call fit a bucket of 3";
  } catch (const QosRejected& rejected) {
    EXPECT_EQ(rejected.reason(), Reason::rate_limited);
  }
  ASSERT_EQ(finished.size(), 3U);
  EXPECT_LT(finished[0] - start, 15ms) << "the first call does not wait";
  EXPECT_GE(finished[1] - start, 20ms);
  EXPECT_GE(finished[2] - start, 40ms);
}

TEST(Chain, ShapingRefusesAWaitLongerThanTheDeadline) {
  asio::io_context io;
  ManualClock clock;
  auto bucket = std::make_shared<LeakyBucket>(
      LeakyBucketConfig{.rate = 1, .period = 1s, .capacity = 5}, clock);
  Chain<int> chain({std::make_shared<RateLimitInterceptor>(bucket, std::nullopt, "rate_limit",
                                                           /*shape=*/true)},
                   {.clock = &clock});
  Script script;
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);  // its turn is now
  const auto rejected = expect_rejected([&] {
    run(io, chain.execute(scripted_call(script), {.deadline = Deadline::after(100ms, clock)}));
  });
  EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded) << "its turn is in 1 s";
  EXPECT_EQ(script.calls, 1);
}

// --- bulkhead and adaptive limit --------------------------------------------------------

// Starts a slow (30 ms) call and a second one at once; returns both futures.
std::pair<std::future<int>, std::future<int>> two_concurrent(asio::io_context& io,
                                                             const Chain<int>& chain, int& calls) {
  const Chain<int>::Call call = [&calls] { return slow(30ms, 7, &calls); };
  auto first = asio::co_spawn(io, chain.execute(call), asio::use_future);
  auto second = asio::co_spawn(io, chain.execute(call), asio::use_future);
  io.run();
  io.restart();
  return {std::move(first), std::move(second)};
}

TEST(Chain, BulkheadFullRejects) {
  asio::io_context io;
  auto bulkhead = std::make_shared<Bulkhead>(BulkheadConfig{.max_concurrent = 1});
  Chain<int> chain({std::make_shared<BulkheadInterceptor>(bulkhead)});
  int calls = 0;
  auto futures = two_concurrent(io, chain, calls);
  EXPECT_EQ(futures.first.get(), 7);
  const auto rejected = expect_rejected([&] { futures.second.get(); });
  EXPECT_EQ(rejected.reason(), Reason::bulkhead_full);
  EXPECT_EQ(rejected.policy(), "bulkhead");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(bulkhead->in_use(), 0U);
}

TEST(Chain, BulkheadQueueLetsTheSecondCallWait) {
  asio::io_context io;
  auto bulkhead = std::make_shared<Bulkhead>(
      BulkheadConfig{.max_concurrent = 1, .max_queue = 1, .max_wait = 1s});
  Chain<int> chain({std::make_shared<BulkheadInterceptor>(bulkhead)});
  int calls = 0;
  auto futures = two_concurrent(io, chain, calls);
  EXPECT_EQ(futures.first.get(), 7);
  EXPECT_EQ(futures.second.get(), 7);
  EXPECT_EQ(calls, 2);
}

// The queue wait ends at the call's deadline, not at the longer max_wait.
TEST(Chain, BulkheadQueueNeverWaitsPastTheDeadline) {
  asio::io_context io;
  auto bulkhead = std::make_shared<Bulkhead>(
      BulkheadConfig{.max_concurrent = 1, .max_queue = 1, .max_wait = 10s});
  Chain<int> chain({std::make_shared<BulkheadInterceptor>(bulkhead)});
  int calls = 0;
  const Chain<int>::Call call = [&calls] { return slow(200ms, 7, &calls); };
  auto first = asio::co_spawn(io, chain.execute(call), asio::use_future);
  auto second = asio::co_spawn(io, chain.execute(call, {.deadline = Deadline::after(30ms)}),
                               asio::use_future);
  io.run();
  EXPECT_EQ(first.get(), 7);
  try {
    second.get();
    ADD_FAILURE() << "the queued call outlived its deadline";
  } catch (const QosRejected& rejected) {
    EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
  }
  EXPECT_EQ(calls, 1);
}

// A drain cancels the queued call, then the call holding the slot unwinds and hands the
// slot over before the queued one resumes. In a coroutine that handles its cancellation
// itself (the HTTP server's connections: throw_if_cancelled(false)) nothing else stops it:
// the handler started after the cut-off, and ran on until the pool was torn down.
// With a preemptive timeout inside the bulkhead, the call runs as a child coroutine with
// a cancellation state of its own, started once the bulkhead has admitted it.
void expect_a_queued_call_cut_off_as_it_is_admitted_not_to_start(bool with_timeout_inside) {
  asio::io_context io;
  auto bulkhead = std::make_shared<Bulkhead>(
      BulkheadConfig{.max_concurrent = 1, .max_queue = 1, .max_wait = 10s});
  std::vector<std::shared_ptr<Interceptor>> interceptors{std::make_shared<BulkheadInterceptor>(
      bulkhead, with_timeout_inside ? std::optional<int>(weights::timeout - 1) : std::nullopt)};
  if (with_timeout_inside) {
    interceptors.push_back(std::make_shared<TimeoutInterceptor>(10s));
  }
  Chain<int> chain(std::move(interceptors));
  int calls = 0;
  const Chain<int>::Call call = [&calls] { return slow(1ms, 7, &calls); };
  Bulkhead::Permit holder = bulkhead->try_acquire();
  ASSERT_TRUE(holder);
  auto as_the_server_runs_it = [&]() -> asio::awaitable<int> {
    co_await asio::this_coro::throw_if_cancelled(false);
    co_return co_await chain.execute(call);
  };
  asio::cancellation_signal cut;
  std::exception_ptr ended;
  bool done = false;
  asio::co_spawn(io, as_the_server_runs_it(),
                 asio::bind_cancellation_slot(cut.slot(), [&](std::exception_ptr e, int) {
                   done = true;
                   ended = e;
                 }));
  io.run_for(20ms);
  ASSERT_FALSE(done) << "the call did not queue";
  // In one go, as the drain's cut-off runs: the cancellation, then the slot handed over.
  asio::post(io, [&] {
    cut.emit(asio::cancellation_type::terminal);
    holder = Bulkhead::Permit();
  });
  for (int i = 0; i < 100 && !done; ++i) {
    io.run_for(10ms);
  }
  ASSERT_TRUE(done);
  EXPECT_EQ(calls, 0) << "a call cancelled while it queued was started";
  ASSERT_TRUE(ended);
  EXPECT_THROW(std::rethrow_exception(ended), boost::system::system_error);
  EXPECT_EQ(bulkhead->in_use(), 0U);
}

TEST(Chain, BulkheadQueuedCallCancelledAsItIsAdmittedDoesNotStart) {
  expect_a_queued_call_cut_off_as_it_is_admitted_not_to_start(false);
}

TEST(Chain, BulkheadQueuedCallCancelledAsItIsAdmittedDoesNotStartItsTimeout) {
  expect_a_queued_call_cut_off_as_it_is_admitted_not_to_start(true);
}

TEST(Chain, AdaptiveLimitRejectsOverTheLimit) {
  asio::io_context io;
  auto limit = std::make_shared<AdaptiveLimit>(
      AdaptiveLimitConfig{.initial_limit = 1, .min_limit = 1, .max_limit = 1});
  Chain<int> chain({std::make_shared<AdaptiveLimitInterceptor>(limit)});
  int calls = 0;
  auto futures = two_concurrent(io, chain, calls);
  EXPECT_EQ(futures.first.get(), 7);
  const auto rejected = expect_rejected([&] { futures.second.get(); });
  EXPECT_EQ(rejected.reason(), Reason::concurrency_limited);
  EXPECT_EQ(limit->in_flight(), 0U);
}

// --- fallback ---------------------------------------------------------------------------

class FallbackOnEachReason : public ::testing::TestWithParam<Reason> {};

TEST_P(FallbackOnEachReason, TurnsTheRejectionIntoAValue) {
  asio::io_context io;
  const Reason reason = GetParam();
  Fault seen;
  Chain<int> chain({std::make_shared<Fallback<int>>([&seen](const Fault& fault) {
                      seen = fault;
                      return 1000 + static_cast<int>(*fault.reason);
                    }),
                    std::make_shared<Rejector>(reason)});
  Rejections rejections;
  chain.on_rejection(rejections.hook());
  Script script;
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 1000 + static_cast<int>(reason));
  EXPECT_EQ(script.calls, 0);
  ASSERT_TRUE(seen.reason.has_value());
  EXPECT_EQ(*seen.reason, reason);
  EXPECT_EQ(seen.policy, "rejector");
  ASSERT_EQ(rejections.seen.size(), 1U);  // the hook still counts a recovered rejection
  EXPECT_EQ(rejections.seen[0].second, reason);
}

INSTANTIATE_TEST_SUITE_P(AllReasons, FallbackOnEachReason, ::testing::ValuesIn(kAllReasons),
                         [](const ::testing::TestParamInfo<Reason>& param_info) {
                           return std::string(to_string(param_info.param));
                         });

asio::awaitable<std::string> scripted_text(Script& script) {
  const int value = co_await scripted(script);
  co_return std::to_string(value);
}

TEST(Chain, FallbackFunctionSeesTheException) {
  asio::io_context io;
  Chain<std::string> chain({std::make_shared<Fallback<std::string>>(
      [](const Fault& fault) { return "fallback after " + fault.message; })});
  Script script{.failures = 1};
  const Chain<std::string>::Call call = [&script] { return scripted_text(script); };
  EXPECT_EQ(run(io, chain.execute(call)), "fallback after boom");
}

TEST(Chain, FallbackFilterLeavesOtherFaultsAlone) {
  asio::io_context io;
  Chain<int> only_rate_limited(
      {std::make_shared<Fallback<int>>(Fallback<int>::value(-1),
                                       FallbackFilter{.reasons = {Reason::rate_limited}}),
       std::make_shared<Rejector>(Reason::circuit_open)});
  Script script;
  EXPECT_THROW(run(io, only_rate_limited.execute(scripted_call(script))), QosRejected);

  Chain<int> only_rejections(
      {std::make_shared<Fallback<int>>(Fallback<int>::value(-1), FallbackFilter{.errors = false})});
  Script failing{.failures = 1};
  expect_boom([&] { run(io, only_rejections.execute(scripted_call(failing))); });
}

TEST(Chain, FullDefaultChainRecoversFromRetriesAndRejections) {
  asio::io_context io;
  ManualClock clock;
  auto breaker = std::make_shared<CircuitBreaker>(CircuitBreakerConfig{}, clock);
  auto bucket = std::make_shared<TokenBucket>(
      TokenBucketConfig{.permits = 1, .period = 1s, .burst = 3}, clock);
  Chain<int> chain(
      {std::make_shared<Fallback<int>>(Fallback<int>::value(-1)),
       std::make_shared<RetryInterceptor>(kFastRetry),
       std::make_shared<CircuitBreakerInterceptor>(breaker),
       std::make_shared<RateLimitInterceptor>(bucket), std::make_shared<TimeoutInterceptor>(50ms),
       std::make_shared<BulkheadInterceptor>(std::make_shared<Bulkhead>())},
      {.operation = "add", .clock = &clock});
  // Two failures retried (3 tokens used), then the limiter is empty -> fallback.
  Script script{.failures = 2};
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_EQ(script.calls, 3);
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), -1);
  EXPECT_EQ(script.calls, 3);
}

// --- log --------------------------------------------------------------------------------

TEST(Chain, LogWritesOutcomeAndReason) {
  asio::io_context io;
  ManualClock clock;
  auto bucket = std::make_shared<TokenBucket>(TokenBucketConfig{.permits = 1, .burst = 1}, clock);
  Chain<int> chain(
      {std::make_shared<LogInterceptor>(), std::make_shared<RateLimitInterceptor>(bucket)},
      {.operation = "add", .clock = &clock});
  const auto previous = log::level();
  log::set_level(log::Level::info);
  Script script;
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run(io, chain.execute(scripted_call(script))), 42);
  EXPECT_THROW(run(io, chain.execute(scripted_call(script))), QosRejected);
  coromesh::log::flush();  // lines reach stderr from the logger's own thread
  const std::string out = ::testing::internal::GetCapturedStderr();
  log::set_level(previous);
  EXPECT_THAT(out, HasSubstr("event=qos.call operation=add outcome=ok attempts=1"));
  EXPECT_THAT(out, HasSubstr("outcome=rejected"));
  EXPECT_THAT(out, HasSubstr("policy=rate_limit reason=rate_limited"));
}

// A refusal the classifier finds (a service's discovery with no answer yet) is logged as
// the metrics count it: rejected, not error.
FaultClassification refusing_classifier(const std::exception_ptr&) noexcept {
  return {FaultClass::rejected};
}

TEST(Chain, LogCallsAClassifiersRefusalRejected) {
  asio::io_context io;
  Chain<int> chain({std::make_shared<LogInterceptor>()},
                   {.operation = "add", .classify = refusing_classifier});
  const auto previous = log::level();
  log::set_level(log::Level::info);
  ::testing::internal::CaptureStderr();
  auto not_ready = []() -> asio::awaitable<int> {
    throw std::runtime_error("no answer from Consul yet");
    co_return 0;
  };
  EXPECT_THROW(run(io, chain.execute(not_ready)), std::runtime_error);
  coromesh::log::flush();
  const std::string out = ::testing::internal::GetCapturedStderr();
  log::set_level(previous);
  EXPECT_THAT(out, HasSubstr("outcome=rejected fault=rejected"));
}

}  // namespace
}  // namespace coromesh::qos
