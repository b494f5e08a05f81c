#pragma once

// Runs a test body written as a coroutine on an io_context in the calling thread.
// GoogleTest's ASSERT_* cannot be used inside coroutines (they `return`); use EXPECT_*
// and `co_return`, or throw.

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <exception>
#include <functional>

namespace coromesh::testing {

// Runs `body` until it finishes; a body still running after `limit` fails the test.
inline void run_async(boost::asio::io_context& ioc, boost::asio::awaitable<void> body,
                      std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  std::exception_ptr error;
  bool done = false;
  boost::asio::co_spawn(ioc, std::move(body), [&](std::exception_ptr e) {
    error = e;
    done = true;
    ioc.stop();
  });
  ioc.restart();
  ioc.run_for(limit);
  ASSERT_TRUE(done) << "the test body did not finish in time";
  if (error) {
    std::rethrow_exception(error);
  }
}

inline boost::asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, duration);
  co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
}

// Polls `done` every 10ms until it holds or `timeout` passes; returns its last value.
inline boost::asio::awaitable<bool> eventually(std::function<bool()> done,
                                               std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      co_return false;
    }
    co_await sleep_for(std::chrono::milliseconds(10));
  }
  co_return true;
}

// Expects `error` to be Asio's operation_aborted (what a cancelled operation ends with);
// any other exception, or none, fails the test.
inline void expect_operation_aborted(const std::exception_ptr& error) {
  ASSERT_TRUE(error) << "the operation completed instead of being cancelled";
  try {
    std::rethrow_exception(error);
  } catch (const boost::system::system_error& e) {
    EXPECT_EQ(e.code(), boost::asio::error::operation_aborted) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected operation_aborted, got: " << e.what();
  }
}

}  // namespace coromesh::testing
