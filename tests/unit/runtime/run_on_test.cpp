// runtime::run_on: a coroutine awaited from another io thread, with cancellation
// forwarded. The race test is the reason it exists: run it under ASan
// (-DCOROMESH_SANITIZER=address); with `co_await co_spawn(other, task, use_awaitable)` in
// place of run_on it reports a heap-use-after-free in cancellation_signal::emit.

#include "coromesh/runtime/run_on.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <future>
#include <thread>
#include <tuple>

namespace coromesh::runtime {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Two io_contexts, one thread each, as the io pool runs them: `caller` for the awaiting
// coroutines, `callee` for the awaited ones.
class TwoThreads : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto* io : {&caller, &callee}) {
      threads.emplace_back([io] { io->run(); });
    }
  }
  void TearDown() override {
    caller_guard.reset();
    callee_guard.reset();
    caller.stop();
    callee.stop();
    for (auto& thread : threads) {
      thread.join();
    }
  }

  asio::io_context caller{1};
  asio::io_context callee{1};
  asio::executor_work_guard<asio::io_context::executor_type> caller_guard{caller.get_executor()};
  asio::executor_work_guard<asio::io_context::executor_type> callee_guard{callee.get_executor()};
  std::vector<std::thread> threads;
};

asio::awaitable<std::thread::id> where_it_runs() {
  co_return std::this_thread::get_id();
}

TEST_F(TwoThreads, RunsTheTaskOnItsExecutorAndResumesOnTheCallers) {
  std::promise<std::pair<std::thread::id, std::thread::id>> seen;
  asio::co_spawn(
      caller,
      [&]() -> asio::awaitable<void> {
        const auto task_thread = co_await run_on(callee.get_executor(), where_it_runs());
        seen.set_value({task_thread, std::this_thread::get_id()});
      },
      asio::detached);
  auto future = seen.get_future();
  ASSERT_EQ(future.wait_for(30s), std::future_status::ready);
  const auto [task_thread, resumed_on] = future.get();
  EXPECT_EQ(task_thread, threads[1].get_id());
  EXPECT_EQ(resumed_on, threads[0].get_id());
}

TEST_F(TwoThreads, CancellingTheCallerCancelsTheTask) {
  std::promise<boost::system::error_code> task_saw;
  std::promise<bool> caller_aborted;
  asio::cancellation_signal cancel;
  auto task = [&]() -> asio::awaitable<void> {
    asio::steady_timer forever(co_await asio::this_coro::executor, std::chrono::hours(1));
    boost::system::error_code ec;
    try {
      std::tie(ec) = co_await forever.async_wait(asio::as_tuple(asio::use_awaitable));
    } catch (const boost::system::system_error& e) {
      ec = e.code();  // cancelled before the wait began: Asio throws at the co_await
    }
    task_saw.set_value(ec);
    throw boost::system::system_error(ec);
  };
  std::promise<void> started;
  asio::co_spawn(
      caller,
      [&]() -> asio::awaitable<void> {
        started.set_value();
        try {
          co_await run_on(callee.get_executor(), task());
          caller_aborted.set_value(false);
        } catch (const boost::system::system_error& e) {
          caller_aborted.set_value(e.code() == asio::error::operation_aborted);
        }
      },
      asio::bind_cancellation_slot(cancel.slot(), asio::detached));
  started.get_future().wait();
  // Emitted on the caller's thread, as a drain or a `||` does.
  asio::post(caller, [&] { cancel.emit(asio::cancellation_type::terminal); });
  auto saw = task_saw.get_future();
  ASSERT_EQ(saw.wait_for(30s), std::future_status::ready) << "the task was never cancelled";
  EXPECT_EQ(saw.get(), asio::error::operation_aborted);
  auto aborted = caller_aborted.get_future();
  ASSERT_EQ(aborted.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(aborted.get());
}

asio::awaitable<int> answer_at_once() {
  co_return 42;
}

// A cancellation emitted while the task is completing: the hand-over to the callee's
// thread must not outlive what it emits on. Many rounds, with the emit a few steps after
// the start each time so that it falls on every stage of the completion; a round whose
// cancellation won is as good as one whose answer did.
TEST_F(TwoThreads, CancellationRacingTheAnswerTouchesNothingFreed) {
  constexpr int kRounds = 20000;
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  std::atomic<int> finished{0};
  std::promise<int> rounds_run;
  asio::co_spawn(
      caller,
      [&]() -> asio::awaitable<void> {
        int round = 0;
        for (; round < kRounds && std::chrono::steady_clock::now() < give_up; ++round) {
          asio::cancellation_signal cancel;
          asio::co_spawn(
              caller,
              [&]() -> asio::awaitable<void> {
                try {
                  co_await run_on(callee.get_executor(), answer_at_once());
                } catch (const boost::system::system_error&) {
                  // cancelled first: fine
                }
              },
              asio::bind_cancellation_slot(cancel.slot(),
                                           [&](const std::exception_ptr&) { ++finished; }));
          for (int step = 0; step < round % 7; ++step) {
            co_await asio::post(caller, asio::use_awaitable);
          }
          cancel.emit(asio::cancellation_type::terminal);
          while (finished.load() <= round) {
            co_await asio::post(caller, asio::use_awaitable);
          }
        }
        rounds_run.set_value(round);
      },
      asio::detached);
  auto future = rounds_run.get_future();
  ASSERT_EQ(future.wait_for(60s), std::future_status::ready);
  EXPECT_GT(future.get(), 0);
}

}  // namespace
}  // namespace coromesh::runtime
