#pragma once

// Awaiting a coroutine that runs on another executor (another io thread), with the
// awaiting coroutine's cancellation forwarded to it:
//
//   auto decision = co_await runtime::run_on(consul_executor, authorizer.authorize(...));
//
// Why not `co_await asio::co_spawn(other, task, asio::use_awaitable)`: in Boost 1.81 a
// cancellation reaching such a co_spawn is handed to the other executor as a raw pointer
// to a signal that lives in the awaiting coroutine's cancellation slot
// (co_spawn_cancellation_handler: dispatch(ex, [sig] { sig->emit(); })). When the task
// completes while that hand-over is queued, the awaiting coroutine resumes, its slot is
// reused or freed, and the queued emit then writes freed memory (a heap-use-after-free
// under ASan; tests/unit/runtime/run_on_test.cpp). A drain that cuts off a connection
// while its authorization, asked on the agent's executor, is just answering is exactly
// that race.
//
// Here the signal the task listens to is shared by the hand-over: it lives as long as a
// queued cancellation may still reach it. The task's own co_spawn sees the cancellation
// only on `executor`, where Asio delivers it at once.
//
// Threads: any two executors; the awaiting coroutine resumes on its own.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <utility>

namespace coromesh::runtime {

template <class T>
boost::asio::awaitable<T> run_on(boost::asio::any_io_executor executor,
                                 boost::asio::awaitable<T> task) {
  namespace asio = boost::asio;
  auto forwarded = std::make_shared<asio::cancellation_signal>();
  // Two statements: GCC 12 cannot deduce `(co_await ...).slot()` in a template.
  const asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
  auto slot = state.slot();
  if (slot.is_connected()) {
    // Runs on the canceller's thread; the emit itself only on `executor`, with the
    // signal kept alive by the queued call.
    slot.assign([forwarded, executor](asio::cancellation_type type) {
      asio::dispatch(executor, [forwarded, type] { forwarded->emit(type); });
    });
  }
  // Once the task is over the awaiting coroutine's slot is cleared as it resumes (as after
  // any operation), destroying the handler above; a hand-over already queued keeps
  // `forwarded` alive and finds nothing left to cancel.
  co_return co_await asio::co_spawn(
      std::move(executor), std::move(task),
      asio::bind_cancellation_slot(forwarded->slot(), asio::use_awaitable));
}

}  // namespace coromesh::runtime
