#include "calculator/expression/evaluator.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <limits>
#include <string>
#include <tuple>

namespace calculator::expression {
namespace {

std::int64_t negated(std::int64_t value) {
  if (value == std::numeric_limits<std::int64_t>::min()) {
    throw EvaluationError("-(" + std::to_string(value) + ") is outside the 64-bit range");
  }
  return -value;
}

boost::asio::awaitable<std::int64_t> evaluate_node(const Plan& plan, std::uint32_t index,
                                                   const Apply& apply);

// Both operands of `node` need calls and neither needs the other: run them side by side.
// Not awaitable_operators' `&&`: when both sides fail (the second often because it was
// cancelled) it throws multiple_exceptions wrapping the left side's error, whichever
// failed first. Here the first failure, by completion order, is rethrown as is.
boost::asio::awaitable<std::tuple<std::int64_t, std::int64_t>> both(const Plan& plan,
                                                                    const Node& node,
                                                                    const Apply& apply) {
  namespace asio = boost::asio;
  const auto executor = co_await asio::this_coro::executor;
  // Each side is a coroutine of its own on this executor; wait_for_one_error cancels the
  // other (terminal cancellation) as soon as one fails, and waits for both to finish, so
  // `plan`, `node` and `apply` outlive them.
  // Built outside the co_await operand: g++ 12 destroys temporaries made there twice.
  auto group = asio::experimental::make_parallel_group(
      asio::co_spawn(executor, evaluate_node(plan, node.lhs, apply), asio::deferred),
      asio::co_spawn(executor, evaluate_node(plan, node.rhs, apply), asio::deferred));
  auto [order, left_error, left, right_error, right] =
      co_await group.async_wait(asio::experimental::wait_for_one_error(), asio::use_awaitable);
  if (left_error && right_error) {
    std::rethrow_exception(order[0] == 0 ? left_error : right_error);
  }
  if (left_error) {
    std::rethrow_exception(left_error);
  }
  if (right_error) {
    std::rethrow_exception(right_error);
  }
  co_return std::tuple{left, right};
}

// Recursion depth is bounded by the plan's height (at most max_operations binary nodes
// plus max_depth negations), and coroutine frames live on the heap, not the stack.
boost::asio::awaitable<std::int64_t> evaluate_node(const Plan& plan, std::uint32_t index,
                                                   const Apply& apply) {
  const Node& node = plan.nodes[index];
  if (node.calls == 0) {
    co_return evaluate_locally(plan, index);
  }
  if (node.kind == Node::Kind::negate) {
    co_return negated(co_await evaluate_node(plan, node.lhs, apply));
  }
  const bool left_calls = plan.nodes[node.lhs].calls > 0;
  const bool right_calls = plan.nodes[node.rhs].calls > 0;
  std::int64_t l = 0;
  std::int64_t r = 0;
  if (left_calls && right_calls) {
    std::tie(l, r) = co_await both(plan, node, apply);
  } else if (left_calls) {
    // Only one side calls out: await it directly, no parallel group to pay for.
    l = co_await evaluate_node(plan, node.lhs, apply);
    r = evaluate_locally(plan, node.rhs);
  } else if (right_calls) {
    l = evaluate_locally(plan, node.lhs);
    r = co_await evaluate_node(plan, node.rhs, apply);
  } else {
    l = evaluate_locally(plan, node.lhs);
    r = evaluate_locally(plan, node.rhs);
  }
  co_return co_await apply(node.op, l, r);
}

}  // namespace

std::int64_t evaluate_locally(const Plan& plan, std::uint32_t index) {
  // A call-free subtree is a literal under zero or more negations: walk down, then apply
  // the negations innermost first (each one can overflow only on the minimum).
  std::uint32_t negations = 0;
  while (plan.nodes[index].kind == Node::Kind::negate) {
    ++negations;
    index = plan.nodes[index].lhs;
  }
  if (plan.nodes[index].kind != Node::Kind::literal) {
    throw std::logic_error("evaluate_locally: the subtree takes operator calls");
  }
  std::int64_t value = plan.nodes[index].value;
  for (; negations > 0; --negations) {
    value = negated(value);
  }
  return value;
}

boost::asio::awaitable<std::int64_t> evaluate(const Plan& plan, const Apply& apply) {
  co_return co_await evaluate_node(plan, plan.root(), apply);
}

}  // namespace calculator::expression
