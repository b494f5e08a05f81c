// The shaping rate limiter (a leaky bucket with `shape`) in a chain: a call that takes a
// turn and never runs — refused for its deadline, cancelled or destroyed while it waits
// for the turn — leaves the bucket as it found it, so later calls are not delayed or
// refused for it. And whose fault each of those is: the caller's deadline or the caller
// going away, never the callee's (a breaker outside records nothing).
//
// The bucket runs on a ManualClock; the wait for a turn is an asio timer on real time, so
// turns here are 10 s apart and a waiting call is cancelled long before its turn comes.

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/qos/interceptors.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "run_awaitable.hpp"

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

using test_support::run;

constexpr auto kTurn = 10s;  // one call per 10 s

asio::awaitable<int> answer(int* calls) {
  ++*calls;
  co_return 42;
}

// A shaping limiter behind a circuit breaker that would open on a single failure, with
// the rejections the chain reports.
struct Shaped {
  ManualClock clock;
  std::shared_ptr<LeakyBucket> bucket = std::make_shared<LeakyBucket>(
      LeakyBucketConfig{.rate = 1, .period = kTurn, .capacity = 5}, clock);
  std::shared_ptr<CircuitBreaker> breaker = std::make_shared<CircuitBreaker>(
      CircuitBreakerConfig{.window_size = 1, .minimum_calls = 1, .wait_in_open = 1h}, clock);
  Chain<int> chain{{std::make_shared<CircuitBreakerInterceptor>(breaker),
                    std::make_shared<RateLimitInterceptor>(bucket, std::nullopt, "rate_limit",
                                                           /*shape=*/true)},
                   {.clock = &clock, .classify = classify_service_fault}};
  std::vector<std::string> rejections;
  int calls = 0;

  Shaped() {
    chain.on_rejection([this](std::string_view policy, Reason reason) {
      rejections.push_back(std::string(policy) + ":" + std::string(to_string(reason)));
    });
  }

  Chain<int>::Call call() {
    return [this] { return answer(&calls); };
  }

  // Takes the turn that is due now, so the next call has to wait for one.
  void take_the_current_turn(asio::io_context& io) {
    ASSERT_EQ(run(io, chain.execute(call())), 42);
    ASSERT_DOUBLE_EQ(bucket->level(), 1.0);
  }

  // A single failure recorded would have opened it.
  void expect_breaker_untouched() const {
    EXPECT_EQ(breaker->state(), CircuitBreaker::State::closed);
    EXPECT_EQ(breaker->snapshot().failures, 0U);
  }
};

TEST(ShapedRateLimit, ACallRefusedForItsDeadlineLeavesTheLevelAsItWas) {
  asio::io_context io;
  Shaped shaped;
  shaped.take_the_current_turn(io);
  for (int i = 0; i < 3; ++i) {
    try {
      run(io, shaped.chain.execute(shaped.call(),
                                   {.deadline = Deadline::after(kTurn / 2, shaped.clock)}));
      ADD_FAILURE() << "a turn in 10 s fit a deadline in 5 s";
    } catch (const QosRejected& rejected) {
      EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
      EXPECT_FALSE(rejected.cut_off()) << "refused before it started, not cut off";
      EXPECT_EQ(Fault::from(std::current_exception(), classify_service_fault).kind,
                FaultClass::rejected)
          << "the caller's deadline, not the callee's failure";
    }
    EXPECT_DOUBLE_EQ(shaped.bucket->level(), 1.0) << "refused call " << i << " kept its turn";
  }
  EXPECT_EQ(shaped.calls, 1);
  EXPECT_EQ(shaped.rejections, std::vector<std::string>(3, "rate_limit:deadline_exceeded"));
  shaped.expect_breaker_untouched();
}

TEST(ShapedRateLimit, ACallCancelledWhileWaitingGivesItsTurnBack) {
  asio::io_context io;
  Shaped shaped;
  shaped.take_the_current_turn(io);
  asio::cancellation_signal cancel;
  auto waiting = asio::co_spawn(io, shaped.chain.execute(shaped.call()),
                                asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
  io.poll();  // runs it up to its wait for the turn in 10 s
  EXPECT_DOUBLE_EQ(shaped.bucket->level(), 2.0);
  cancel.emit(asio::cancellation_type::terminal);
  io.run();
  io.restart();
  try {
    waiting.get();
    ADD_FAILURE() << "not cancelled";
  } catch (const boost::system::system_error& error) {
    EXPECT_EQ(error.code(), asio::error::operation_aborted);
    EXPECT_EQ(Fault::from(std::current_exception(), classify_service_fault).kind,
              FaultClass::cancelled);
  }
  EXPECT_DOUBLE_EQ(shaped.bucket->level(), 1.0) << "the cancelled call kept its turn";

  // One turn later the call that ran has left the bucket, and so has the cancelled one:
  // the next call's turn is now, not 10 s later.
  shaped.clock.advance(kTurn);
  EXPECT_EQ(run(io, shaped.chain.execute(shaped.call(),
                                         {.deadline = Deadline::after(kTurn / 2, shaped.clock)})),
            42);
  EXPECT_EQ(shaped.calls, 2);
  EXPECT_TRUE(shaped.rejections.empty()) << "a cancellation is not a refusal";
  shaped.expect_breaker_untouched();
}

TEST(ShapedRateLimit, ACallDestroyedWhileWaitingGivesItsTurnBack) {
  Shaped shaped;
  {
    asio::io_context io;
    shaped.take_the_current_turn(io);
    asio::co_spawn(io, shaped.chain.execute(shaped.call()), asio::detached);
    io.poll();
    EXPECT_DOUBLE_EQ(shaped.bucket->level(), 2.0);
  }  // the waiting frame is destroyed with the context
  EXPECT_DOUBLE_EQ(shaped.bucket->level(), 1.0) << "the destroyed call kept its turn";
  EXPECT_EQ(shaped.calls, 1);
  shaped.expect_breaker_untouched();
}

}  // namespace
}  // namespace coromesh::qos
