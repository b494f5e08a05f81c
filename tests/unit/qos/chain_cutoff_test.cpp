// The preemptive timeout inside a chain, on both of its paths: when the call itself is
// the rest of the chain, the chain runs it as the bottom frame of the cut-off child
// (Terminal::start_cancellable); when an asynchronous interceptor sits between the
// timeout and the call, the rest runs as an awaitable of its own (CancellableCall::start).
// Either way: cut off at the deadline, the caller's cancellation reaches the call, a call
// that completes at once leaves nothing registered, and an io_context torn down with
// calls suspended is safe (run under ASan: -DCOROMESH_SANITIZER=address).

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
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
#include <thread>
#include <vector>

#include "coromesh/qos/deadline_watchdog.hpp"
#include "coromesh/qos/interceptors.hpp"

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// An interceptor that is not synchronous: the rest after the timeout is then not just
// the call.
class PassThrough final : public Interceptor {
 public:
  PassThrough() : Interceptor("pass_through", 700, weights::custom) {}
  asio::awaitable<void> around(Invocation&, Next next) override { co_await next(); }
};

std::vector<std::shared_ptr<Interceptor>> timeout_chain(Duration timeout, bool call_is_rest) {
  std::vector<std::shared_ptr<Interceptor>> chain{std::make_shared<TimeoutInterceptor>(timeout)};
  if (!call_is_rest) {
    chain.push_back(std::make_shared<PassThrough>());
  }
  return chain;
}

asio::awaitable<int> sleeps(Duration duration, int* finished) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::use_awaitable);
  ++*finished;
  co_return 7;
}

asio::awaitable<int> at_once(bool fail) {
  if (fail) {
    throw std::runtime_error("boom");
  }
  co_return 42;
}

class ChainCutOff : public ::testing::TestWithParam<bool> {};

TEST_P(ChainCutOff, ASuspendedCallIsCutOffAtItsDeadline) {
  asio::io_context io(1);
  Chain<int> chain(timeout_chain(20ms, GetParam()));
  int finished = 0;
  const auto start = SteadyClock::now();
  auto future = asio::co_spawn(io, chain.execute([&finished] { return sleeps(10s, &finished); }),
                               asio::use_future);
  io.run();
  try {
    future.get();
    FAIL() << "not cut off";
  } catch (const QosRejected& rejected) {
    EXPECT_EQ(rejected.reason(), Reason::deadline_exceeded);
    EXPECT_EQ(rejected.policy(), "timeout");
  }
  EXPECT_GE(SteadyClock::now() - start, 20ms);
  EXPECT_LT(SteadyClock::now() - start, 5s);
  EXPECT_EQ(finished, 0);
  EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U);
}

TEST_P(ChainCutOff, ACallThatCompletesAtOnceLeavesNothingRegistered) {
  asio::io_context io(1);
  Chain<int> chain(timeout_chain(1s, GetParam()));
  auto ok = asio::co_spawn(io, chain.execute([] { return at_once(false); }), asio::use_future);
  auto failed = asio::co_spawn(io, chain.execute([] { return at_once(true); }), asio::use_future);
  io.run();
  EXPECT_EQ(ok.get(), 42);
  EXPECT_THROW(failed.get(), std::runtime_error);
  EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U);
}

TEST_P(ChainCutOff, TheCallersCancellationReachesTheCall) {
  asio::io_context io(1);
  Chain<int> chain(timeout_chain(20s, GetParam()));
  int finished = 0;
  asio::cancellation_signal cancel;
  auto future = asio::co_spawn(io, chain.execute([&finished] { return sleeps(10s, &finished); }),
                               asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
  asio::steady_timer later(io, 10ms);
  later.async_wait([&cancel](const boost::system::error_code&) {
    cancel.emit(asio::cancellation_type::terminal);
  });
  const auto start = SteadyClock::now();
  io.run();
  try {
    future.get();
    FAIL() << "not cancelled";
  } catch (const boost::system::system_error& error) {
    EXPECT_EQ(error.code(), asio::error::operation_aborted);  // a cancellation, no timeout
  }
  EXPECT_LT(SteadyClock::now() - start, 5s);
  EXPECT_EQ(finished, 0);
}

asio::awaitable<void> execute_then_count(const Chain<int>& chain, int* finished, int* returned) {
  co_await chain.execute([finished] { return sleeps(10s, finished); });
  ++*returned;
}

TEST_P(ChainCutOff, DestroyingTheContextWithCallsSuspendedIsSafe) {
  Chain<int> chain(timeout_chain(5s, GetParam()));
  int finished = 0;
  int returned = 0;
  {
    asio::io_context io(1);
    for (int i = 0; i < 10; ++i) {
      asio::co_spawn(io, execute_then_count(chain, &finished, &returned), asio::detached);
    }
    io.run_for(20ms);
    EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 10U);
  }  // frames, children, nodes and the watchdog are all torn down here
  EXPECT_EQ(finished, 0);
  EXPECT_EQ(returned, 0);
}

// A call that completes just before its deadline, while the io thread is too busy to
// resume its waiter at once. Its timer (2 ms before the deadline) and the watchdog's both
// come due while the thread is blocked, so both completions are queued together, the
// call's first: the call returns its value, then the watchdog fires, then the waiter
// resumes. The call was never cut off: nothing was cancelled.
asio::awaitable<int> completes_just_before_a_busy_deadline(Duration deadline_in, int* finished) {
  const auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, deadline_in - 2ms);
  // Runs once this call has suspended: keeps the thread past the deadline.
  asio::post(executor, [deadline_in] { std::this_thread::sleep_for(deadline_in + 30ms); });
  co_await timer.async_wait(asio::use_awaitable);
  ++*finished;
  co_return 7;
}

// Was: the watchdog marked the deadline expired even though the call had already
// returned, and the chain threw its value away as deadline_exceeded (a breaker failure,
// a 504 for work done, a retry of a call that had succeeded).
TEST_P(ChainCutOff, ACallThatReturnedBeforeTheWatchdogFiredKeepsItsValue) {
  asio::io_context io(1);
  Chain<int> chain(timeout_chain(20ms, GetParam()));
  int finished = 0;
  auto future = asio::co_spawn(io, chain.execute([&finished] {
    return completes_just_before_a_busy_deadline(20ms, &finished);
  }),
                               asio::use_future);
  io.run();
  EXPECT_EQ(finished, 1);
  try {
    EXPECT_EQ(future.get(), 7);
  } catch (const QosRejected& rejected) {
    ADD_FAILURE() << "a call that returned was cut off: " << rejected.what();
  }
  EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U);
}

INSTANTIATE_TEST_SUITE_P(Rest, ChainCutOff, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("TheCall")
                                             : std::string("AnAsyncInterceptorAndTheCall");
                         });

}  // namespace
}  // namespace coromesh::qos
