#include "calculator/expression/evaluator.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "calculator/expression/parser.hpp"
#include "calculator/operators/arithmetic.hpp"

namespace calculator::expression {
namespace {

namespace asio = boost::asio;

// What the operator services would answer, thrown as the frontend's client would.
struct OperatorFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

arithmetic::Outcome compute(Op op, std::int64_t l, std::int64_t r) {
  switch (op) {
    case Op::add:
      return arithmetic::add(l, r);
    case Op::sub:
      return arithmetic::subtract(l, r);
    case Op::mul:
      return arithmetic::multiply(l, r);
    case Op::div:
      return arithmetic::divide(l, r);
    case Op::mod:
      // mod-svc's contract (services/calculator/mod-svc/modsvc/operands.py): C++'s %,
      // with INT64_MIN % -1 == 0 where C++ itself is undefined.
      if (r == 0) {
        return {0, arithmetic::Failure::division_by_zero};
      }
      return {r == -1 ? 0 : l % r, arithmetic::Failure::none};
  }
  return {};
}

// An operator that answers after yielding to the executor (so that independent calls
// overlap, as real calls over the network do) and records how many calls were in flight.
struct RecordingOperators {
  int in_flight = 0;
  int max_in_flight = 0;
  std::vector<std::string> calls;

  Apply apply() {
    return [this](Op op, std::int64_t l, std::int64_t r) { return call(op, l, r); };
  }
  asio::awaitable<std::int64_t> call(Op op, std::int64_t l, std::int64_t r) {
    calls.push_back(std::to_string(l) + std::string(symbol(op)) + std::to_string(r));
    max_in_flight = std::max(max_in_flight, ++in_flight);
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    --in_flight;
    const auto outcome = compute(op, l, r);
    if (!outcome.ok()) {
      throw OperatorFailed(std::string(arithmetic::to_string(outcome.failure)));
    }
    co_return outcome.value;
  }
};

// Runs evaluate() to completion on a single-threaded io_context.
std::variant<std::int64_t, std::exception_ptr> run(const Plan& plan, const Apply& apply) {
  asio::io_context context;
  std::optional<std::variant<std::int64_t, std::exception_ptr>> outcome;
  asio::co_spawn(context, evaluate(plan, apply), [&](std::exception_ptr e, std::int64_t value) {
    if (e) {
      outcome.emplace(e);
    } else {
      outcome.emplace(value);
    }
  });
  context.run_for(std::chrono::seconds(30));
  if (!outcome) {
    throw std::logic_error("the evaluation did not finish");
  }
  return *outcome;
}

Plan plan_of(const std::string& text) {
  auto parsed = parse(text);
  if (!parsed.ok()) {
    throw std::invalid_argument(parsed.error->message);
  }
  return parsed.plan;
}

// The value, or the message of the exception the evaluation ended with.
std::string outcome_of(const std::string& text) {
  RecordingOperators operators;
  const auto outcome = run(plan_of(text), operators.apply());
  if (const auto* value = std::get_if<std::int64_t>(&outcome)) {
    return std::to_string(*value);
  }
  try {
    std::rethrow_exception(std::get<std::exception_ptr>(outcome));
  } catch (const OperatorFailed& e) {
    return std::string("operator: ") + e.what();
  } catch (const EvaluationError& e) {
    return std::string("local: ") + e.what();
  }
}

struct Case {
  std::string text;
  std::string outcome;
};

class EvaluatorTableTest : public ::testing::TestWithParam<Case> {};

TEST_P(EvaluatorTableTest, ComputesOrFails) {
  EXPECT_EQ(outcome_of(GetParam().text), GetParam().outcome);
}

INSTANTIATE_TEST_SUITE_P(
    Table, EvaluatorTableTest,
    ::testing::Values(
        Case{"1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5", "9"}, Case{"1+2*3", "7"}, Case{"(1+2)*3", "9"},
        Case{"8-4-2", "2"}, Case{"8/4/2", "1"}, Case{"2*3+4*5", "26"}, Case{"-(-3)", "3"},
        Case{"-(2+3)*2", "-10"}, Case{"-7/2", "-3"}, Case{"7/-2", "-3"}, Case{"42", "42"},
        Case{"-(-(7))", "7"}, Case{"(1+2)*(3+4)", "21"}, Case{"17%5", "2"}, Case{"(7%3)*4", "4"},
        Case{"7%3*4", "4"}, Case{"1+7%3", "2"}, Case{"-7%2", "-1"}, Case{"7%-2", "1"},
        Case{"100%7%3", "2"}, Case{"-9223372036854775808%-1", "0"},
        Case{"7%0", "operator: division_by_zero"}, Case{"((1+2)*(3+4))-((5*6)/(7-4))", "11"},
        Case{"9223372036854775807", "9223372036854775807"},
        Case{"-9223372036854775808", "-9223372036854775808"},
        Case{"1/0", "operator: division_by_zero"},
        Case{"9223372036854775807+1", "operator: overflow"},
        Case{"-9223372036854775808-1", "operator: overflow"},
        Case{"-9223372036854775808/-1", "operator: overflow"},
        Case{"4611686018427387904*2", "operator: overflow"},
        Case{"-(-9223372036854775808)",
             "local: -(-9223372036854775808) is outside the 64-bit range"},
        Case{"-(0-9223372036854775807-1)",
             "local: -(-9223372036854775808) is outside the 64-bit range"}));

TEST(EvaluatorConcurrencyTest, IndependentOperationsRunAtTheSameTime) {
  RecordingOperators operators;
  const auto outcome = run(plan_of("(1+2)*(3+4)"), operators.apply());
  EXPECT_EQ(std::get<std::int64_t>(outcome), 21);
  EXPECT_EQ(operators.max_in_flight, 2);
  EXPECT_EQ(operators.calls.size(), 3U);
  EXPECT_EQ(operators.calls.back(), "3*7");  // after both of its operands
}

TEST(EvaluatorConcurrencyTest, DependentOperationsRunInOrder) {
  RecordingOperators operators;
  EXPECT_EQ(std::get<std::int64_t>(run(plan_of("1+2+3"), operators.apply())), 6);
  EXPECT_EQ(operators.max_in_flight, 1);
  EXPECT_EQ(operators.calls, (std::vector<std::string>{"1+2", "3+3"}));
}

TEST(EvaluatorConcurrencyTest, RemaindersAreOperatorCallsLikeTheOthers) {
  RecordingOperators operators;
  EXPECT_EQ(std::get<std::int64_t>(run(plan_of("(7 % 3) * 4"), operators.apply())), 4);
  EXPECT_EQ(operators.calls, (std::vector<std::string>{"7%3", "1*4"}));
}

TEST(EvaluatorConcurrencyTest, FanOutIsBoundedByThePlan) {
  // Eight independent products: all eight in flight at once, never more.
  RecordingOperators operators;
  const auto outcome = run(plan_of("(1*1+2*2)+(3*3+4*4)+((5*5+6*6)+(7*7+8*8))"), operators.apply());
  EXPECT_EQ(std::get<std::int64_t>(outcome), 204);
  EXPECT_EQ(operators.max_in_flight, 8);
  EXPECT_EQ(operators.calls.size(), 15U);
}

TEST(EvaluatorCancellationTest, AFailureCancelsTheOtherBranch) {
  // Left: an operator that waits far longer than the test runs unless cancelled.
  // Right: an operator that fails at once. The evaluation must end with the right
  // side's error, the left side having seen the cancellation.
  bool left_cancelled = false;
  bool left_finished = false;
  const Apply apply = [&](Op op, std::int64_t, std::int64_t) -> asio::awaitable<std::int64_t> {
    return [](Op op, bool& cancelled, bool& finished) -> asio::awaitable<std::int64_t> {
      if (op == Op::div) {
        throw OperatorFailed("division_by_zero");
      }
      asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::hours(1));
      try {
        co_await timer.async_wait(asio::use_awaitable);
      } catch (const boost::system::system_error& e) {
        cancelled = e.code() == asio::error::operation_aborted;
        throw;
      }
      finished = true;
      co_return 0;
    }(op, left_cancelled, left_finished);
  };
  const auto outcome = run(plan_of("(1+2)*(1/0)"), apply);
  ASSERT_TRUE(std::holds_alternative<std::exception_ptr>(outcome));
  EXPECT_THROW(std::rethrow_exception(std::get<std::exception_ptr>(outcome)), OperatorFailed);
  EXPECT_TRUE(left_cancelled);
  EXPECT_FALSE(left_finished);
}

TEST(EvaluatorCancellationTest, TheFirstFailureWinsWhicheverSideItIsOn) {
  // Both sides fail; the right one first. awaitable_operators' && would report the left
  // one (wrapped in multiple_exceptions); the evaluator reports the right one as is.
  const Apply apply = [](Op op, std::int64_t, std::int64_t) -> asio::awaitable<std::int64_t> {
    return [](Op op) -> asio::awaitable<std::int64_t> {
      if (op == Op::add) {
        // Yields twice before failing: the right side has failed by then.
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        throw OperatorFailed("left");
      }
      throw OperatorFailed("right");
    }(op);
  };
  const auto outcome = run(plan_of("(1+2)*(3-4)"), apply);
  ASSERT_TRUE(std::holds_alternative<std::exception_ptr>(outcome));
  try {
    std::rethrow_exception(std::get<std::exception_ptr>(outcome));
    FAIL() << "no exception";
  } catch (const OperatorFailed& e) {
    EXPECT_STREQ(e.what(), "right");
  }
}

}  // namespace
}  // namespace calculator::expression
