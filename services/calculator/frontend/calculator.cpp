#include "calculator/frontend/calculator.hpp"

#include <coromesh/http/client.hpp>
#include <coromesh/http/error.hpp>
#include <coromesh/qos/reason.hpp>
#include <coromesh/service/fault_classifier.hpp>
#include <coromesh/service/remote_error.hpp>
#include <string>
#include <utility>

#include "calculator/expression/evaluator.hpp"

namespace calculator::frontend {
namespace {

using coromesh::http::HttpError;
using coromesh::http::Status;

std::size_t slot(expression::Op op) {
  return static_cast<std::size_t>(op);
}

[[noreturn]] void throw_parse_error(const expression::ParseError& error) {
  const Status status = error.kind == expression::ErrorKind::too_long ? Status::payload_too_large
                                                                      : Status::bad_request;
  throw HttpError(status, std::string(expression::to_string(error.kind)), error.message);
}

// "div(7, 0)": which call failed, for the error's reason.
std::string describe(expression::Op op, std::int64_t l, std::int64_t r) {
  return std::string(expression::name(op)) + "(" + std::to_string(l) + ", " + std::to_string(r) +
         ")";
}

// The callee's status as seen by the frontend's client: its 422 is about the user's
// numbers and passes through; anything else the callee answered is its failure, answered
// as the framework answers it (upstream_error_status).
Status status_for_callee(unsigned callee_status) {
  return callee_status == 422 ? Status::unprocessable_entity
                              : static_cast<Status>(coromesh::upstream_error_status(callee_status));
}

}  // namespace

template <class Op>
Calculator::OperatorCall Calculator::bind_client(coromesh::Service& service, const Op& op) {
  // The client is owned by the service, which outlives every call.
  auto& client = service.client(op);
  return [&client](api::Operands operands, coromesh::CallContext call) {
    return client.execute(operands, call);
  };
}

Calculator::Calculator(coromesh::Service& service, expression::Limits limits) : limits_(limits) {
  operators_[slot(expression::Op::add)] = bind_client(service, api::add);
  operators_[slot(expression::Op::sub)] = bind_client(service, api::sub);
  operators_[slot(expression::Op::mul)] = bind_client(service, api::mul);
  operators_[slot(expression::Op::div)] = bind_client(service, api::div);
  operators_[slot(expression::Op::mod)] = bind_client(service, api::mod);
}

boost::asio::awaitable<api::ComputeResult> Calculator::compute(api::ComputeRequest request,
                                                               coromesh::CallContext call) const {
  const expression::Parsed parsed = expression::parse(request.expression, limits_);
  if (!parsed.ok()) {
    throw_parse_error(*parsed.error);
  }
  const expression::Apply apply = [this, call](expression::Op op, std::int64_t l, std::int64_t r) {
    return call_operator(op, l, r, call);
  };
  try {
    co_return api::ComputeResult{co_await expression::evaluate(parsed.plan, apply)};
  } catch (const expression::EvaluationError& error) {
    throw HttpError(Status::unprocessable_entity, std::string(expression::EvaluationError::code),
                    error.what());
  }
}

boost::asio::awaitable<std::int64_t> Calculator::call_operator(expression::Op op, std::int64_t l,
                                                               std::int64_t r,
                                                               coromesh::CallContext call) const {
  // Inside a handler below: the failure as the frontend answers it, naming the call. The
  // call's failure stays its cause: the framework's line for a 5xx (service.hpp) takes
  // the fault's class from it, and writes none for a refusal the client has logged.
  const auto fail = [&](Status status, std::string code, const std::string& why) {
    return HttpError(status, std::move(code), "operation " + describe(op, l, r) + " failed: " + why,
                     std::current_exception());
  };
  try {
    co_return co_await operators_[slot(op)](api::Operands{l, r}, call);
  } catch (const coromesh::RemoteError& error) {
    throw fail(status_for_callee(error.status()), error.code(), error.reason());
  } catch (const coromesh::qos::QosRejected& rejected) {
    // Our own client refused to call (open circuit, spent deadline): the
    // operator is unavailable to us, never the user's fault, so never a 4xx.
    const Status status =
        rejected.http_status() == 504 ? Status::gateway_timeout : Status::service_unavailable;
    throw fail(status, std::string(coromesh::qos::to_string(rejected.reason())), rejected.what());
  } catch (const coromesh::http::ClientError& error) {
    // As the framework answers a handler's own call that got no answer (service.hpp).
    const auto answer = coromesh::unanswered_call_status(error);
    throw fail(static_cast<Status>(answer.status), std::string(answer.code), error.what());
  }
}

}  // namespace calculator::frontend
