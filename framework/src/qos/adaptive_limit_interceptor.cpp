#include "coromesh/qos/adaptive_limit_interceptor.hpp"

#include <stdexcept>
#include <utility>

namespace coromesh::qos {

AdaptiveLimitInterceptor::AdaptiveLimitInterceptor(std::shared_ptr<AdaptiveLimit> limit,
                                                   std::optional<int> weight, std::string name)
    : SynchronousInterceptor(std::move(name), weight, weights::adaptive_limit),
      limit_(std::move(limit)) {
  if (!limit_) {
    throw std::invalid_argument("adaptive_limit: null limit");
  }
}

void AdaptiveLimitInterceptor::on_request(Invocation& invocation) {
  const Admission admission = limit_->acquire();
  if (!admission) {
    invocation.reject(name(), admission.reason());
  }
}

void AdaptiveLimitInterceptor::on_outcome(Invocation&, const Outcome& outcome) noexcept {
  if (outcome.ok()) {
    limit_->on_sample(outcome.elapsed, true, outcome.ended);
  } else if (!counts_against_callee(outcome.fault->kind)) {
    limit_->release();
  } else {
    limit_->on_sample(outcome.elapsed, false, outcome.ended);
  }
}

}  // namespace coromesh::qos
