#pragma once

// Fallback: turns a fault of the rest of the chain into a value (a chain interceptor).

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "coromesh/qos/chain.hpp"

namespace coromesh::qos {

// Which faults a Fallback turns into a value (fault.hpp has the classes). A cancellation
// never: the caller is gone.
struct FallbackFilter {
  bool rejections = true;      // refusals: a policy's QosRejected (any reason unless
                               // `reasons` is set), a spent deadline, a call discovery
                               // could not place, a callee's 429
  bool errors = true;          // the callee's failures, transport errors, timeouts (a
                               // preemptive timeout's cut-off included)
  bool caller_errors = false;  // a 4xx: the caller's own fault, e.g. a 404 unknown_sku
  // Empty: every refusal. Else only refusals of these reasons: a policy's (circuit_open
  // ...), or a callee's (its 429, Fault::callee_reason): callee_rejected names every
  // callee's refusal, rate_limited also a callee's answered `{"error":"rate_limited"}`.
  std::vector<Reason> reasons{};
};

// Turns a fault of the rest of the chain into a value: `fn(fault)` or a static value.
// Faults outside the filter, and an exception thrown by `fn`, continue outwards.
template <class R>
class Fallback final : public Interceptor {
 public:
  using Function = std::function<R(const Fault&)>;

  explicit Fallback(Function fn, FallbackFilter filter = {},
                    std::optional<int> weight = std::nullopt, std::string name = "fallback")
      : Interceptor(std::move(name), weight, weights::fallback),
        fn_(std::move(fn)),
        filter_(std::move(filter)) {}

  // A fallback function that always answers `value`.
  static Function value(R value) {
    return [v = std::move(value)](const Fault&) { return v; };
  }

  // By the fault's class (fault.hpp), not by the exception's type: a call a preemptive
  // timeout cut off is a timeout (an error) although thrown as a QosRejected, a call
  // discovery could not place is a refusal although thrown as a ClientError, and so is a
  // callee's 429 although thrown as a RemoteError.
  bool applies(const Fault& fault) const {
    switch (fault.kind) {
      case FaultClass::cancelled:
        return false;
      case FaultClass::caller_error:
        return filter_.caller_errors;
      case FaultClass::rejected:
        return filter_.rejections && matches_reasons(fault);
      case FaultClass::callee_failure:
      case FaultClass::transport:
      case FaultClass::timeout:
        return filter_.errors && fallback_by_default(fault.kind);
    }
    return false;
  }

  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override {
    auto* typed = dynamic_cast<TypedInvocation<R>*>(&invocation);
    if (typed == nullptr) {
      throw std::logic_error("qos fallback: result type does not match the chain's");
    }
    std::exception_ptr error;
    try {
      co_await next();
      co_return;
    } catch (...) {
      error = std::current_exception();
    }
    const Fault& fault = invocation.fault(error);
    if (!applies(fault)) {
      std::rethrow_exception(error);
    }
    typed->set_result(fn_(fault));
    // After fn_ (which may throw, and then the fault goes on): told only of an answer.
    invocation.set_fallback_fault(fault);
  }

 private:
  // A refusal without any reason (discovery had no answer yet) matches only an empty
  // filter.
  bool matches_reasons(const Fault& fault) const {
    if (filter_.reasons.empty()) {
      return true;
    }
    const auto named = [this](Reason reason) {
      return std::find(filter_.reasons.begin(), filter_.reasons.end(), reason) !=
             filter_.reasons.end();
    };
    if (fault.reason) {
      return named(*fault.reason);
    }
    return fault.callee_reason && (named(*fault.callee_reason) || named(Reason::callee_rejected));
  }

  Function fn_;
  FallbackFilter filter_;
};

}  // namespace coromesh::qos
