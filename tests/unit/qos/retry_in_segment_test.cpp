// Retry in both of the forms a chain runs it in: in the frame of the synchronous segment
// that follows it (ChainCore::run_segment with a RetryingInterceptor, the default order:
// retry(circuit_breaker(rate_limit(timeout(...))))), and nested in its own frame
// (RetryingInterceptor::around, here forced by an asynchronous interceptor between the
// retry and the segment). Each test runs in both and expects the same: the attempts, the
// phases each attempt sees, the budget, the backoff, the deadline, the idempotency rules,
// the caller's cancellation, the preemptive timeout's cut-off and a context torn down
// mid-backoff.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "coromesh/qos/deadline_watchdog.hpp"
#include "coromesh/qos/interceptors.hpp"
#include "coromesh/qos/retry_interceptor.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "coromesh/service/remote_error.hpp"
#include "run_awaitable.hpp"
#include "scripted_call.hpp"

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using ::testing::ElementsAre;

using test_support::run;

enum class Form { in_segment, nested };

// Not synchronous: between the retry and the segment, it keeps the retry nested.
class PassThrough final : public Interceptor {
 public:
  PassThrough() : Interceptor("pass_through", weights::retry + 1, weights::custom) {}
  asio::awaitable<void> around(Invocation&, Next next) override { co_await next(); }
};

// Records "request#<attempt>", "response" and "fault" as its phases run.
class Recorder final : public PhaseInterceptor {
 public:
  explicit Recorder(std::vector<std::string>& log) : PhaseInterceptor("recorder"), log_(&log) {}
  void process_request(Invocation& invocation) override {
    log_->push_back("request#" + std::to_string(invocation.attempt()));
  }
  void process_response(Invocation&) override { log_->push_back("response"); }
  void process_fault(Invocation&, const std::exception_ptr&) override { log_->push_back("fault"); }

 private:
  std::vector<std::string>* log_;
};

class RetryForms : public ::testing::TestWithParam<Form> {
 protected:
  // retry, then (nested form only) PassThrough, then `inner` (synchronous ones).
  std::unique_ptr<Chain<int>> chain(std::shared_ptr<RetryInterceptor> retry,
                                    std::vector<std::shared_ptr<Interceptor>> inner,
                                    ChainOptions options = {}) {
    std::vector<std::shared_ptr<Interceptor>> all{std::move(retry)};
    if (GetParam() == Form::nested) {
      all.push_back(std::make_shared<PassThrough>());
    }
    all.insert(all.end(), inner.begin(), inner.end());
    auto built = std::make_unique<Chain<int>>(std::move(all), std::move(options));
    // The form under test is the one the chain runs.
    EXPECT_EQ(built->core().attempts_in_segment(0), GetParam() == Form::in_segment);
    return built;
  }
  std::shared_ptr<Recorder> recorder() { return std::make_shared<Recorder>(log); }

  std::vector<std::string> log;
};

// A transport failure (retryable).
using Reset = testing::Boom;
using testing::Script;
using testing::scripted;
using testing::scripted_call;

constexpr RetryConfig kNoBackoff{
    .max_attempts = 4, .base_backoff = 0ms, .max_backoff = 0ms, .jitter = Jitter::none};

TEST_P(RetryForms, ARetryableFaultIsRetriedEachAttemptThroughTheSegment) {
  asio::io_context io;
  auto c = chain(std::make_shared<RetryInterceptor>(kNoBackoff), {recorder()});
  Script script{.failures = 2};
  EXPECT_EQ(run(io, c->execute(scripted_call(script))), 42);
  EXPECT_EQ(script.calls, 3);
  EXPECT_THAT(log,
              ElementsAre("request#1", "fault", "request#2", "fault", "request#3", "response"));
}

TEST_P(RetryForms, NoMoreThanMaxAttempts) {
  asio::io_context io;
  auto c = chain(std::make_shared<RetryInterceptor>(kNoBackoff), {recorder()});
  Script script{.failures = 100};
  EXPECT_THROW(run(io, c->execute(scripted_call(script))), Reset);
  EXPECT_EQ(script.calls, 4);
  EXPECT_EQ(log.size(), 8U);
}

TEST_P(RetryForms, ANonRetryableFaultIsNotRetried) {
  asio::io_context io;
  auto c = chain(std::make_shared<RetryInterceptor>(kNoBackoff), {recorder()},
                 {.classify = classify_service_fault});
  int calls = 0;
  // The caller's own error (a 400 from the callee) and a handler's exception.
  EXPECT_THROW(run(io, c->execute([&calls]() -> asio::awaitable<int> {
                 ++calls;
                 throw coromesh::RemoteError(400, "bad", "the callee says no");
               })),
               coromesh::RemoteError);
  EXPECT_EQ(calls, 1);
  EXPECT_THROW(run(io, c->execute([&calls]() -> asio::awaitable<int> {
                 ++calls;
                 throw std::runtime_error("boom");
               })),
               std::runtime_error);
  EXPECT_EQ(calls, 2);
  // A 503 is retried.
  EXPECT_THROW(run(io, c->execute([&calls]() -> asio::awaitable<int> {
                 ++calls;
                 throw coromesh::RemoteError(503, "unavailable", "later");
               })),
               coromesh::RemoteError);
  EXPECT_EQ(calls, 6);
}

TEST_P(RetryForms, ANonIdempotentCallIsNotRetried) {
  asio::io_context io;
  auto c = chain(std::make_shared<RetryInterceptor>(kNoBackoff), {recorder()});
  Script script{.failures = 1};
  EXPECT_THROW(run(io, c->execute(scripted_call(script), {.idempotent = false})), Reset);
  EXPECT_EQ(script.calls, 1);
}

TEST_P(RetryForms, ACallMarkedUnrepeatableIsNeverRunAgain) {
  asio::io_context io;
  RetryConfig any_method = kNoBackoff;
  any_method.idempotent_only = false;
  auto c = chain(std::make_shared<RetryInterceptor>(any_method), {recorder()});
  int calls = 0;
  Chain<int>::InvocationCall marks =
      [&calls](const Invocation& invocation) -> asio::awaitable<int> {
    if (++calls == 2) {
      invocation.mark_unrepeatable();
    }
    throw Reset();
    co_return 0;
  };
  EXPECT_THROW(run(io, c->execute_with(std::move(marks), {.idempotent = false})), Reset);
  EXPECT_EQ(calls, 2);
}

// The budget counts each call once and each retry against it: with one retry per
// request (ratio 1, no floor), a call that fails twice is retried once, then refused.
TEST_P(RetryForms, TheBudgetCountsTheCallAndRefusesASecondRetry) {
  asio::io_context io;
  ManualClock clock;
  auto budget = std::make_shared<RetryBudget>(
      RetryBudgetConfig{.ratio = 1.0, .min_retries_per_second = 0, .ttl = 1s, .buckets = 1}, clock);
  auto c = chain(std::make_shared<RetryInterceptor>(kNoBackoff, RetryOptions{.budget = budget}),
                 {recorder()}, {.clock = &clock});
  std::vector<std::pair<std::string, Reason>> refusals;
  c->on_rejection([&refusals](std::string_view policy, Reason reason) {
    refusals.emplace_back(std::string(policy), reason);
  });
  EXPECT_EQ(budget->available(), 0U);
  Script once{.failures = 1};
  EXPECT_EQ(run(io, c->execute(scripted_call(once))), 42);
  EXPECT_EQ(once.calls, 2);
  EXPECT_EQ(budget->available(), 0U) << "one request deposited, one retry spent";
  EXPECT_TRUE(refusals.empty());
  Script always{.failures = 100};
  EXPECT_THROW(run(io, c->execute(scripted_call(always))), Reset);
  EXPECT_EQ(always.calls, 2) << "the first attempt and the one retry its deposit paid for";
  ASSERT_EQ(refusals.size(), 1U);
  EXPECT_EQ(refusals[0].first, "retry");
  EXPECT_EQ(refusals[0].second, Reason::budget_exhausted);
}

TEST_P(RetryForms, NoBackoffStartsPastTheDeadline) {
  asio::io_context io;
  ManualClock clock;
  constexpr RetryConfig k40ms{.base_backoff = 40ms, .max_backoff = 40ms, .jitter = Jitter::none};
  auto c = chain(std::make_shared<RetryInterceptor>(k40ms), {recorder()}, {.clock = &clock});
  Script script{.failures = 1};
  EXPECT_THROW(
      run(io, c->execute(scripted_call(script), {.deadline = Deadline::after(20ms, clock)})),
      Reset);
  EXPECT_EQ(script.calls, 1);
}

// The backoff is waited on a timer, which the caller's cancellation ends: the call ends
// with operation_aborted and no second attempt (were the backoff skipped, the second
// attempt would have returned 42 at once).
TEST_P(RetryForms, TheBackoffIsWaitedAndTheCallersCancellationEndsIt) {
  asio::io_context io(1);
  constexpr RetryConfig k10s{
      .max_attempts = 2, .base_backoff = 10s, .max_backoff = 10s, .jitter = Jitter::none};
  auto c = chain(std::make_shared<RetryInterceptor>(k10s), {recorder()});
  Script script{.failures = 1};
  asio::cancellation_signal cancel;
  auto future = asio::co_spawn(io, c->execute(scripted_call(script)),
                               asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
  // Runs once the call has failed its first attempt and suspended in the backoff.
  asio::post(io, [&cancel] { cancel.emit(asio::cancellation_type::terminal); });
  io.run();
  try {
    future.get();
    ADD_FAILURE() << "not cancelled";
  } catch (const boost::system::system_error& error) {
    EXPECT_EQ(error.code(), asio::error::operation_aborted);
  }
  EXPECT_EQ(script.calls, 1);
  EXPECT_THAT(log, ElementsAre("request#1", "fault"));
}

asio::awaitable<void> execute_then_count(const Chain<int>& chain, Script& script, int* returned) {
  try {
    co_await chain.execute(scripted_call(script));
  } catch (...) {
  }
  ++*returned;
}

// Under ASan this checks that nothing the suspended frames point at is freed first.
TEST_P(RetryForms, DestroyingTheContextDuringABackoffIsSafe) {
  constexpr RetryConfig k10s{
      .max_attempts = 2, .base_backoff = 10s, .max_backoff = 10s, .jitter = Jitter::none};
  auto c = chain(std::make_shared<RetryInterceptor>(k10s),
                 {std::make_shared<TimeoutInterceptor>(5s), recorder()});
  Script script{.failures = 100};
  int returned = 0;
  {
    asio::io_context io(1);
    for (int i = 0; i < 10; ++i) {
      asio::co_spawn(io, execute_then_count(*c, script, &returned), asio::detached);
    }
    io.run_for(20ms);
    EXPECT_EQ(script.calls, 10);
    EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U) << "each attempt's watch is gone";
  }
  EXPECT_EQ(script.calls, 10);
  EXPECT_EQ(returned, 0);
}

asio::awaitable<int> sleeps_first(int* calls) {
  if (++*calls == 1) {
    asio::steady_timer timer(co_await asio::this_coro::executor, 10s);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return 7;
}

// The preemptive timeout inside the segment cuts the first attempt off; the cut-off is an
// attempt timeout, which retry retries; the second attempt runs under a watch of its own.
TEST_P(RetryForms, AnAttemptCutOffByThePreemptiveTimeoutIsRetried) {
  asio::io_context io(1);
  auto c = chain(std::make_shared<RetryInterceptor>(kNoBackoff),
                 {std::make_shared<TimeoutInterceptor>(20ms), recorder()});
  int calls = 0;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(run(io, c->execute([&calls] { return sleeps_first(&calls); })), 7);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "the first attempt was cut short";
  EXPECT_EQ(calls, 2);
  EXPECT_THAT(log, ElementsAre("request#1", "fault", "request#2", "response"));
  EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U);
}

// With retry_attempt_timeouts off the cut-off ends the call as deadline_exceeded.
TEST_P(RetryForms, ACutOffIsNotRetriedWhenAttemptTimeoutsAreNot) {
  asio::io_context io(1);
  auto c = chain(
      std::make_shared<RetryInterceptor>(kNoBackoff, RetryOptions{.retry_attempt_timeouts = false}),
      {std::make_shared<TimeoutInterceptor>(20ms), recorder()});
  int calls = 0;
  try {
    run(io, c->execute([&calls] { return sleeps_first(&calls); }));
    ADD_FAILURE() << "not cut off";
  } catch (const QosRejected& rejected) {
    EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
    EXPECT_EQ(rejected.policy(), "timeout");
  }
  EXPECT_EQ(calls, 1);
}

INSTANTIATE_TEST_SUITE_P(Retry, RetryForms, ::testing::Values(Form::in_segment, Form::nested),
                         [](const ::testing::TestParamInfo<Form>& info) {
                           return info.param == Form::in_segment ? std::string("InSegment")
                                                                 : std::string("Nested");
                         });

}  // namespace
}  // namespace coromesh::qos
