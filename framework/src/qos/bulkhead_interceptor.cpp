#include "coromesh/qos/bulkhead_interceptor.hpp"

#include <stdexcept>
#include <utility>

namespace coromesh::qos {

namespace asio = boost::asio;

BulkheadInterceptor::BulkheadInterceptor(std::shared_ptr<Bulkhead> bulkhead,
                                         std::optional<int> weight, std::string name)
    : SynchronousInterceptor(std::move(name), weight, weights::bulkhead),
      bulkhead_(std::move(bulkhead)) {
  if (!bulkhead_) {
    throw std::invalid_argument("bulkhead: null bulkhead");
  }
}

void BulkheadInterceptor::on_request(Invocation& invocation) {
  const Admission admission = bulkhead_->try_enter();
  if (!admission) {
    invocation.reject(name(), admission.reason());
  }
}

void BulkheadInterceptor::on_outcome(Invocation&, const Outcome&) noexcept {
  bulkhead_->leave();
}

asio::awaitable<void> BulkheadInterceptor::around(Invocation& invocation, Next next) {
  if (synchronous()) {
    co_await SynchronousInterceptor::around(invocation, next);
    co_return;
  }
  // Never wait in the queue past the call's deadline.
  const Deadline deadline = invocation.deadline();
  const Duration limit =
      deadline.is_set() ? deadline.remaining(invocation.clock()) : Duration::max();
  Bulkhead::Permit permit = co_await bulkhead_->acquire(limit);
  if (!permit) {
    invocation.reject(name(), deadline.is_set() && deadline.expired(invocation.clock())
                                  ? Reason::deadline_exceeded
                                  : permit.reason());
  }
  co_await next();
}

}  // namespace coromesh::qos
