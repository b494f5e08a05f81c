#include "coromesh/qos/metrics_interceptor.hpp"

#include <stdexcept>
#include <utility>

namespace coromesh::qos {

MetricsInterceptor::MetricsInterceptor(std::shared_ptr<CallObserver> observer,
                                       std::optional<int> weight, std::string name)
    : SynchronousInterceptor(std::move(name), weight, weights::metrics),
      observer_(std::move(observer)) {
  if (!observer_) {
    throw std::invalid_argument("metrics: null observer");
  }
}

void MetricsInterceptor::on_outcome(Invocation& invocation, const Outcome& outcome) noexcept {
  using Result = CallObserver::Result;
  if (!outcome.ok() && invocation.notified(*outcome.fault)) {
    // A refusal by a policy inside this one (a weight put it there): the rejection hook
    // has counted it already, as result="rejected" and by policy and reason.
    return;
  }
  const Result result = outcome.ok() ? Result::ok : result_of(*outcome.fault);
  observer_->observe(result, outcome.elapsed);
}

}  // namespace coromesh::qos
