#pragma once

// The frontend's one operation: parse an expression, then evaluate it with one call to
// the operator service per binary operation (add, sub, mul, div, mod through their typed
// clients, so through the sidecar upstreams given by --upstreams), independent
// sub-expressions concurrently (expression/evaluator.hpp).
//
// Every failure is classified once and leaves as an http::HttpError:
//   the expression's fault      400 (empty, invalid, out-of-range literal, too many
//                               operations, too deep) or 413 (too long), with the
//                               position and what was expected;
//                               422 overflow / division_by_zero, the operator's verdict
//                               passed on (it is about the user's numbers);
//   an operator's failure       502 (it failed or answered nonsense), 503 (overloaded,
//                               circuit open, unreachable instances, no answer from Consul
//                               about its instances yet), 504 (timed out), with
//                               the callee's error code and a reason naming the operation
//                               and its operands: "operation div(7, 0) failed: ...",
//                               the call's failure kept as the HttpError's cause: the
//                               framework logs the answer (service.request_failed, with
//                               the failed call's fault class; service/service.hpp).
//
// Threads and lifetimes: built before service.run() from the service whose clients it
// uses, and must outlive service.run(), where the last compute() ends (main.cpp declares
// it after the service, so it is destroyed first: a compute() frame cut off by the drain
// and freed later by ~Service runs no code of it, its destructors only free its own
// locals). compute() runs on the service's io threads, any number at once.

#include <array>
#include <boost/asio/awaitable.hpp>
#include <coromesh/service/service.hpp>
#include <cstdint>
#include <functional>

#include "calculator/api/calculator_api.hpp"
#include "calculator/expression/parser.hpp"
#include "calculator/expression/plan.hpp"

namespace calculator::frontend {

class Calculator {
 public:
  explicit Calculator(coromesh::Service& service, expression::Limits limits = {});

  // The handler of api::compute.
  boost::asio::awaitable<api::ComputeResult> compute(api::ComputeRequest request,
                                                     coromesh::CallContext call) const;

 private:
  // One operator's typed client.
  using OperatorCall =
      std::function<boost::asio::awaitable<std::int64_t>(api::Operands, coromesh::CallContext)>;
  template <class Op>
  static OperatorCall bind_client(coromesh::Service& service, const Op& op);

  // One operator call, its failures turned into the frontend's HttpError.
  boost::asio::awaitable<std::int64_t> call_operator(expression::Op op, std::int64_t l,
                                                     std::int64_t r,
                                                     coromesh::CallContext call) const;

  std::array<OperatorCall, expression::kOpCount> operators_;  // indexed by expression::Op
  expression::Limits limits_;
};

}  // namespace calculator::frontend
