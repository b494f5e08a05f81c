// The deadline watchdog and the inline child call that together make the preemptive
// timeout: cut-off, bookkeeping on every exit path, cancellation forwarding, and
// teardown of an io_context with calls still registered (run this binary under ASan:
// -DCOROMESH_SANITIZER=address).

#include "coromesh/qos/deadline_watchdog.hpp"

#include <gtest/gtest.h>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include "coromesh/qos/cancellable_call.hpp"
#include "run_awaitable.hpp"

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// How a watched call ended.
struct Ended {
  bool expired = false;
  bool aborted = false;  // the call ended with operation_aborted
  bool threw = false;    // any other exception
};

// A call that waits `duration` on a timer; `swallow` makes it ignore cancellation.
asio::awaitable<void> sleep_for(SteadyClock::duration duration, bool swallow = false) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  if (swallow) {
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return;
  }
  co_await timer.async_wait(asio::use_awaitable);
}

asio::awaitable<void> completes_at_once(int* calls) {
  ++*calls;
  co_return;
}

asio::awaitable<void> yields_once(int* calls) {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  ++*calls;
}

asio::awaitable<void> throws_at_once() {
  throw std::runtime_error("boom");
  co_return;
}

// What TimeoutInterceptor does in preemptive mode, without a chain around it.
asio::awaitable<Ended> watched(asio::awaitable<void> call, SteadyClock::duration timeout) {
  const auto executor = co_await asio::this_coro::executor;
  WatchedDeadline watch(executor, SteadyClock::now() + timeout);
  CancellableCall child(executor);
  child.start(std::move(call), watch.slot());
  if (!child.finished()) {
    co_await child.wait(watch.signal());
  }
  watch.release();
  Ended ended{.expired = watch.expired()};
  try {
    child.rethrow();
  } catch (const boost::system::system_error& error) {
    ended.aborted = error.code() == asio::error::operation_aborted;
    ended.threw = !ended.aborted;
  } catch (...) {
    ended.threw = true;
  }
  co_return ended;
}

using test_support::run;

TEST(DeadlineWatchdog, CutsOffACallBlockedTenTimesPastItsDeadline) {
  asio::io_context io(1);
  const auto start = SteadyClock::now();
  const Ended ended = run(io, watched(sleep_for(300ms), 30ms));
  const auto elapsed = SteadyClock::now() - start;
  EXPECT_TRUE(ended.expired);
  EXPECT_TRUE(ended.aborted);
  EXPECT_GE(elapsed, 30ms);
  EXPECT_LT(elapsed, 150ms);  // cut off near the deadline, not after the 300 ms wait
  EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U);
}

TEST(DeadlineWatchdog, ACallThatIgnoresCancellationIsWaitedForAndStillExpired) {
  asio::io_context io(1);
  const Ended ended = run(io, watched(sleep_for(60ms, /*swallow=*/true), 10ms));
  EXPECT_TRUE(ended.expired);
  EXPECT_FALSE(ended.aborted);
}

TEST(DeadlineWatchdog, ACallThatSuspendsAndFinishesInTimeIsNotExpired) {
  asio::io_context io(1);
  const Ended ended = run(io, watched(sleep_for(5ms), 10s));
  EXPECT_FALSE(ended.expired);
  EXPECT_FALSE(ended.aborted);
  EXPECT_FALSE(ended.threw);
}

asio::awaitable<int> many_calls(int* calls) {
  int expired = 0;
  for (int i = 0; i < 3000; ++i) {
    const Ended a = co_await watched(completes_at_once(calls), 10s);
    const Ended b = co_await watched(yields_once(calls), 10s);
    const Ended c = co_await watched(throws_at_once(), 10s);
    expired += (a.expired ? 1 : 0) + (b.expired ? 1 : 0) + (c.expired ? 1 : 0) + (c.threw ? 0 : 1);
  }
  co_return expired;
}

TEST(DeadlineWatchdog, ThousandsOfCallsLeaveNothingRegisteredAndDoNotHoldRun) {
  asio::io_context io(1);
  int calls = 0;
  const auto start = SteadyClock::now();
  EXPECT_EQ(run(io, many_calls(&calls)), 0);
  // run() returned although the watchdog's timer is armed 10 s ahead.
  EXPECT_LT(SteadyClock::now() - start, 5s);
  EXPECT_EQ(calls, 6000);
  EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U);
  EXPECT_TRUE(DeadlineWatchdog::of(io).armed());
}

// A call suspended on something that is not Asio work: its handler parked by hand until
// its cancellation, as a wait completed from another thread or another io_context is
// (EndpointWatch::ready() on a context other than the watch's). Nothing else keeps run()
// going.
asio::awaitable<void> parked_until_cancelled() {
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(boost::system::error_code)>(
      [](auto handler) {
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto executor = asio::get_associated_executor(handler);
        auto parked =
            std::make_shared<asio::any_completion_handler<void(boost::system::error_code)>>(
                std::move(handler));
        slot.assign([parked, executor](asio::cancellation_type) {
          asio::post(executor, [parked] { (*parked)(asio::error::operation_aborted); });
        });
      },
      asio::use_awaitable);
}

// The watchdog's timer is not work (see the header): what keeps io_context::run() going
// until a watched call is cut off is the coroutine the watch lives in, whose co_spawn
// holds work on its executor until it ends. That is how the chain and the timeout
// interceptor use it, so a call waiting on something that is not work itself is still
// cut off at its deadline by a plain run(), with no work guard of the caller's.
TEST(DeadlineWatchdog, AWatchInACoroutineIsCutOffByRunWhateverTheCallWaitsOn) {
  asio::io_context io(1);
  auto future = asio::co_spawn(io, watched(parked_until_cancelled(), 20ms), asio::use_future);
  io.run();
  ASSERT_EQ(future.wait_for(0s), std::future_status::ready)
      << "run() returned with the watched call still suspended and not cut off";
  const Ended ended = future.get();
  EXPECT_TRUE(ended.expired);
  EXPECT_TRUE(ended.aborted);
  EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U);
}

TEST(DeadlineWatchdog, AnEarlierDeadlineRearmsTheTimer) {
  asio::io_context io(1);
  // A long call registers first; a short one after it must still be cut off on time.
  auto long_call = asio::co_spawn(io, watched(sleep_for(80ms), 10s), asio::use_future);
  auto short_call = asio::co_spawn(io, watched(sleep_for(10s), 20ms), asio::use_future);
  const auto start = SteadyClock::now();
  io.run();
  EXPECT_LT(SteadyClock::now() - start, 5s);
  EXPECT_FALSE(long_call.get().expired);
  const Ended ended = short_call.get();
  EXPECT_TRUE(ended.expired);
  EXPECT_TRUE(ended.aborted);
}

TEST(DeadlineWatchdog, CancellingTheWaiterCancelsTheCallWithoutExpiring) {
  asio::io_context io(1);
  asio::cancellation_signal cancel;
  auto future = asio::co_spawn(io, watched(sleep_for(10s), 20s),
                               asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
  asio::steady_timer later(io, 10ms);
  later.async_wait([&cancel](const boost::system::error_code&) {
    cancel.emit(asio::cancellation_type::terminal);
  });
  io.run();
  const Ended ended = future.get();
  EXPECT_FALSE(ended.expired);
  EXPECT_TRUE(ended.aborted);
  EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U);
}

asio::awaitable<void> watched_then_count(int* finished) {
  co_await watched(sleep_for(10s), 5s);
  ++*finished;
}

TEST(DeadlineWatchdog, DestroyingTheContextWithCallsSuspendedIsSafe) {
  int finished = 0;
  {
    asio::io_context io(1);
    for (int i = 0; i < 10; ++i) {
      asio::co_spawn(io, watched_then_count(&finished), asio::detached);
    }
    io.run_for(20ms);
    EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 10U);
  }  // frames, child calls, nodes and the watchdog are all torn down here
  EXPECT_EQ(finished, 0);
}

// Two nodes made one after the other, the first on the stack and the second on the heap:
// the same signal only when the second took the first's from this thread's spares.
asio::awaitable<bool> two_nodes_share_a_signal() {
  const auto executor = co_await asio::this_coro::executor;
  const asio::cancellation_signal* first = nullptr;
  {
    WatchedDeadline watch(executor, SteadyClock::now() + 1h);
    first = &watch.signal();
  }
  auto watch = std::make_unique<WatchedDeadline>(executor, SteadyClock::now() + 1h);
  co_return first == &watch->signal();
}

// A node's signal is a used one when this thread has one spare (it keeps the memory of
// the cancellation state last bound to it): a call cut off through a signal leaves it
// emitted, and the next call given that signal must start uncancelled and still be cut
// off at its own deadline, not before.
TEST(DeadlineWatchdog, ASignalUsedByACallCutOffServesTheNextCallsAfresh) {
  asio::io_context io(1);
  EXPECT_TRUE(run(io, two_nodes_share_a_signal())) << "the spare signal was not used again";
  const Ended cut_off = run(io, watched(sleep_for(10s), 10ms));
  EXPECT_TRUE(cut_off.expired);
  EXPECT_TRUE(cut_off.aborted);
  int calls = 0;
  const Ended at_once = run(io, watched(completes_at_once(&calls), 10s));
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(at_once.expired);
  EXPECT_FALSE(at_once.aborted);
  EXPECT_FALSE(at_once.threw);
  const Ended in_time = run(io, watched(sleep_for(20ms), 10s));
  EXPECT_FALSE(in_time.expired);
  EXPECT_FALSE(in_time.aborted) << "cancelled through the state a former call left";
  const Ended cut_again = run(io, watched(sleep_for(10s), 10ms));
  EXPECT_TRUE(cut_again.expired);
  EXPECT_TRUE(cut_again.aborted);
  EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 0U);
}

// Nodes made by the thread that ran the context and destroyed by another (the context
// torn down after its thread has exited, its spare signals with it). Under ASan this
// checks that each node's signal outlives the calls bound to it and is freed once.
TEST(DeadlineWatchdog, NodesMadeOnAThreadThatHasExitedAreDestroyedSafely) {
  int finished = 0;
  {
    asio::io_context io(1);
    for (int i = 0; i < 10; ++i) {
      asio::co_spawn(io, watched_then_count(&finished), asio::detached);
    }
    std::thread runner([&io] { io.run_for(20ms); });
    runner.join();
    EXPECT_EQ(DeadlineWatchdog::of(io).registered(), 10U);
  }
  EXPECT_EQ(finished, 0);
}

// The child keeps the caller's executor by reference: a temporary one would dangle.
static_assert(!std::is_constructible_v<CancellableCall, asio::any_io_executor&&>);
static_assert(std::is_constructible_v<CancellableCall, const asio::any_io_executor&>);

TEST(DeadlineWatchdog, RefusesAnExecutorThatIsNotAnIoContext) {
  asio::io_context io(1);
  const asio::any_io_executor wrong = asio::system_executor();
  EXPECT_THROW(WatchedDeadline(wrong, SteadyClock::now()), std::logic_error);
}

}  // namespace
}  // namespace coromesh::qos
