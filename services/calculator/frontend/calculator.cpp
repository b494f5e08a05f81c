#include "calculator/frontend/calculator.hpp"

#include <coromesh/http/client.hpp>
#include <coromesh/http/error.hpp>
#include <coromesh/log/logger.hpp>
#include <coromesh/qos/fault.hpp>
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

// An operator call's failure on its way out of compute(): the frontend's answer, and what
// compute() logs of it.
class OperatorFailed final : public HttpError {
 public:
  OperatorFailed(Status status, std::string code, std::string reason, expression::Op op,
                 coromesh::qos::FaultClass fault, bool logged)
      : HttpError(status, std::move(code), std::move(reason)),
        op_(op),
        fault_(fault),
        logged_(logged) {}

  expression::Op op() const noexcept { return op_; }
  coromesh::qos::FaultClass fault() const noexcept { return fault_; }
  // Whether the operator's client has logged the failure already: its chain's qos::log,
  // or, for its own refusal, its rejection hook's `qos.rejected` line.
  bool logged() const noexcept { return logged_; }

 private:
  expression::Op op_;
  coromesh::qos::FaultClass fault_;
  bool logged_;
};

// One line for each 5xx answer: an operator failed, was unreachable or timed out, and
// the user got no result. Not for a 4xx (the user's own expression or numbers), nor for
// what the operator's client has said already (OperatorFailed::logged): a refusal by its
// policies (open circuit, spent deadline) is its `qos.rejected` line, and a client whose
// chain has qos::log logs every failed call. Rate limited per operator, status and code:
// an operator down under load fails every request alike.
void log_gateway_error(const OperatorFailed& failed, std::string_view trace_id) {
  const auto status = static_cast<unsigned>(failed.status());
  if (status < 500 || failed.logged() || !coromesh::log::enabled(coromesh::log::Level::warn)) {
    return;
  }
  const std::string_view op = expression::name(failed.op());
  std::string key(op);
  key.append(1, '\x1f').append(std::to_string(status)).append(1, '\x1f').append(failed.code());
  coromesh::log::warn_limited("frontend.compute.failed", key,
                              {{"operation", "compute"},
                               {"operator", op},
                               {"status", status},
                               {"fault", coromesh::qos::to_string(failed.fault())},
                               {"error", failed.code()},
                               {"reason", failed.reason()},
                               {"trace_id", trace_id}});
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
Calculator::Operator Calculator::bind_client(coromesh::Service& service, const Op& op) {
  // The client is owned by the service, which outlives every call.
  auto& client = service.client(op);
  return {[&client](api::Operands operands, coromesh::CallContext call) {
            return client.execute(operands, call);
          },
          // Read at each failure: a live override may switch the client's log on or off.
          [&client] { return client.qos().current().log_policy.has_value(); }};
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
  } catch (const OperatorFailed& failed) {
    // Here and not in call_operator: one computation may run several failing calls, and
    // evaluate() lets the first one out. Once per answer.
    log_gateway_error(failed, call.trace_id);
    throw;
  }
}

boost::asio::awaitable<std::int64_t> Calculator::call_operator(expression::Op op, std::int64_t l,
                                                               std::int64_t r,
                                                               coromesh::CallContext call) const {
  const Operator& callee = operators_[slot(op)];
  // Inside a handler below: the failure as the frontend answers it, with its class.
  const auto fail = [&](Status status, std::string code, const std::string& why,
                        bool refusal_logged = false) {
    return OperatorFailed(status, std::move(code),
                          "operation " + describe(op, l, r) + " failed: " + why, op,
                          coromesh::classify_service_fault(std::current_exception()).kind,
                          refusal_logged || callee.logs_calls());
  };
  try {
    co_return co_await callee.call(api::Operands{l, r}, call);
  } catch (const coromesh::RemoteError& error) {
    throw fail(status_for_callee(error.status()), error.code(), error.reason());
  } catch (const coromesh::qos::QosRejected& rejected) {
    // Our own client refused to call (open circuit, spent deadline): the
    // operator is unavailable to us, never the user's fault, so never a 4xx.
    const Status status =
        rejected.http_status() == 504 ? Status::gateway_timeout : Status::service_unavailable;
    throw fail(status, std::string(coromesh::qos::to_string(rejected.reason())), rejected.what(),
               rejected.notified_by() != nullptr);
  } catch (const coromesh::http::ClientError& error) {
    // As the framework answers a handler's own call that got no answer (service.hpp).
    const auto answer = coromesh::unanswered_call_status(error);
    throw fail(static_cast<Status>(answer.status), std::string(answer.code), error.what());
  }
}

}  // namespace calculator::frontend
