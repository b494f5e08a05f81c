#pragma once

// Runs a Plan (plan.hpp) with an asynchronous `apply(op, l, r)` per binary operation
// (in the frontend: one call to the operator service). Independent sub-expressions run
// concurrently, dependent ones in order: in `(1+2)*(3+4)` both additions are in flight
// at once and the multiplication waits for them; in `1+2+3` one call is in flight at a
// time. Concurrency is bounded by the plan: at most one call per binary node whose
// operands are ready, so never more than Limits::max_operations.
//
// Failure: the first exception thrown by `apply` (or an overflow in a local negation,
// EvaluationError) cancels the calls still running in the other branches (Asio terminal
// cancellation, which awaiting operations such as timers and sockets honour), waits for
// them to finish, and is rethrown as is.
//
// Lifetimes and threads: `plan` and `apply` are borrowed and must outlive the returned
// awaitable (await it at once). Branches run on the awaiting coroutine's executor, so
// `apply` is only ever called from it; with a strand or a single-threaded io_context
// it needs no locking.

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <stdexcept>

#include "calculator/expression/plan.hpp"

namespace calculator::expression {

using Apply = std::function<boost::asio::awaitable<std::int64_t>(Op, std::int64_t, std::int64_t)>;

// A local step of the evaluation went outside 64 bits: -(-9223372036854775808).
class EvaluationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  static constexpr std::string_view code = "overflow";
};

boost::asio::awaitable<std::int64_t> evaluate(const Plan& plan, const Apply& apply);

// Computes a subtree that takes no calls (Node::calls == 0): literals and negations.
// Throws EvaluationError on overflow.
std::int64_t evaluate_locally(const Plan& plan, std::uint32_t node);

}  // namespace calculator::expression
