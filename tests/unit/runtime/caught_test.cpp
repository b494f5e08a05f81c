// runtime::caught: a side of Asio's awaitable `||` whose failure ends the race. The
// first two tests pin down the Asio behaviour it exists for (`||` waits for a *success*);
// the others show that with caught() the race ends with the failure, and a success still
// wins.

#include "coromesh/runtime/caught.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/multiple_exceptions.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>

namespace coromesh::runtime {
namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> fails_at_once() {
  co_await asio::this_coro::executor;
  throw std::length_error("field value too large");
}

asio::awaitable<void> returns_at_once() {
  co_await asio::this_coro::executor;
}

// A cut-off that does not fire within the test: the race must end without it.
asio::steady_timer far_cut_off(asio::io_context& io) {
  return asio::steady_timer(io, std::chrono::hours(1));
}

TEST(Caught, WithoutItAThrowingSideWaitsForTheOtherAndItsExceptionIsDropped) {
  asio::io_context io;
  auto cut_off = far_cut_off(io);
  bool ended = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await (fails_at_once() || cut_off.async_wait(use_tuple));
        ended = true;
      },
      asio::detached);
  io.run_for(2s);
  EXPECT_FALSE(ended) << "Asio's `||` no longer waits for the other side when one throws: "
                         "caught() may no longer be needed";
  cut_off.cancel();  // the timer "wins": the exception is gone
  io.run_for(2s);
  EXPECT_TRUE(ended);
}

// When both sides fail, `||` throws neither exception but asio::multiple_exceptions
// holding the first: a catch of the failure's own type after a bare `||` misses it.
TEST(Caught, WithoutItTwoFailuresComeOutAsMultipleExceptions) {
  asio::io_context io;
  std::string caught_as;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        try {
          co_await (fails_at_once() || fails_at_once());
        } catch (const std::length_error&) {
          caught_as = "length_error";
        } catch (const asio::multiple_exceptions& e) {
          caught_as = "multiple_exceptions: " + describe(e.first_exception());
        }
      },
      asio::detached);
  io.run_for(5s);
  EXPECT_EQ(caught_as, "multiple_exceptions: field value too large");
}

TEST(Caught, AFailureEndsTheRaceAsAValueAndCancelsTheOtherSide) {
  asio::io_context io;
  auto cut_off = far_cut_off(io);
  std::optional<std::string> error;
  int index = -1;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto first = co_await (caught(fails_at_once()) || cut_off.async_wait(use_tuple));
        index = static_cast<int>(first.index());
        if (first.index() == 0 && std::get<0>(first)) {
          error = describe(std::get<0>(first));
        }
      },
      asio::detached);
  io.run_for(5s);
  ASSERT_TRUE(error.has_value()) << "the race did not end with the failure within 5 s";
  EXPECT_EQ(*error, "field value too large");
  EXPECT_EQ(index, 0);
}

TEST(Caught, ASuccessIsANullFailure) {
  asio::io_context io;
  auto cut_off = far_cut_off(io);
  int index = -1;
  bool failed = true;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto first = co_await (caught(returns_at_once()) || cut_off.async_wait(use_tuple));
        index = static_cast<int>(first.index());
        failed = first.index() == 0 && std::get<0>(first) != nullptr;
      },
      asio::detached);
  io.run_for(5s);
  EXPECT_EQ(index, 0) << "the race did not end within 5 s";
  EXPECT_FALSE(failed);
}

TEST(Caught, DescribesAnExceptionThatIsNoStdException) {
  EXPECT_EQ(describe(std::make_exception_ptr(42)), "unknown exception");
}

}  // namespace
}  // namespace coromesh::runtime
