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

void MetricsInterceptor::on_outcome(Invocation&, const Outcome& outcome) noexcept {
  using Result = CallObserver::Result;
  const Result result = outcome.ok()                                   ? Result::ok
                        : outcome.fault->refused()                     ? Result::rejected
                        : outcome.fault->kind == FaultClass::cancelled ? Result::cancelled
                                                                       : Result::error;
  observer_->observe(result, outcome.elapsed);
}

}  // namespace coromesh::qos
