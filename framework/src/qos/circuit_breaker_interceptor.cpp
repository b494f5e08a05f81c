#include "coromesh/qos/circuit_breaker_interceptor.hpp"

#include <stdexcept>
#include <utility>

namespace coromesh::qos {

CircuitBreakerInterceptor::CircuitBreakerInterceptor(std::shared_ptr<CircuitBreaker> breaker,
                                                     std::optional<int> weight, std::string name)
    : SynchronousInterceptor(std::move(name), weight, weights::circuit_breaker),
      breaker_(std::move(breaker)) {
  if (!breaker_) {
    throw std::invalid_argument("circuit_breaker: null breaker");
  }
}

void CircuitBreakerInterceptor::on_request(Invocation& invocation) {
  const Admission admission = breaker_->acquire();
  if (!admission) {
    invocation.reject(name(), admission.reason());
  }
}

void CircuitBreakerInterceptor::on_outcome(Invocation&, const Outcome& outcome) noexcept {
  if (outcome.ok()) {
    breaker_->on_success(outcome.elapsed);
  } else if (!counts_against_callee(outcome.fault->kind)) {
    breaker_->release_permission(outcome.elapsed);
  } else {
    breaker_->on_failure(outcome.elapsed);
  }
}

}  // namespace coromesh::qos
