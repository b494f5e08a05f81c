#pragma once

// One side of Asio's awaitable `||` whose failure must end the race:
//
//   auto first = co_await (runtime::caught(serve(...)) || cut_off.async_wait(use_tuple));
//   if (first.index() == 0 && std::get<0>(first)) { /* handle or rethrow it */ }
//
// Why: `a || b` (boost/asio/experimental/awaitable_operators.hpp) is a parallel group
// waited with wait_for_one_success(): a side that *throws* does not cancel the other,
// the group waits for that one, and when it then succeeds the result is its own, the
// exception dropped. Raced with a timer that never throws (as_tuple), a throwing side
// waits for the timer: a connection's cut-off that comes only with a drain, or never. (When
// both sides fail, `||` throws asio::multiple_exceptions holding the one that failed
// first, not that exception itself.) caught() makes the failure a successful completion
// carrying it, so the `||` ends with it and cancels the other side.
//
// Costs one coroutine frame per call: fine around a connection or a loop, not per request.
// Threads: runs on the awaiting coroutine's executor, as `task` would.

#include <boost/asio/awaitable.hpp>
#include <exception>
#include <string>
#include <utility>

namespace coromesh::runtime {

// The exception `task` ended with, or null when it returned.
inline boost::asio::awaitable<std::exception_ptr> caught(boost::asio::awaitable<void> task) {
  try {
    co_await std::move(task);
  } catch (...) {
    co_return std::current_exception();
  }
  co_return nullptr;
}

// What `error` says, for a log line: its what(), or "unknown exception".
inline std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace coromesh::runtime
