#include "coromesh/qos/bulkhead_interceptor.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>
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
  synchronous_ = bulkhead_->config().max_queue == 0;
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
    const auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) {
      throw boost::system::system_error(asio::error::operation_aborted, "bulkhead queue");
    }
    invocation.reject(name(), deadline.is_set() && deadline.expired(invocation.clock())
                                  ? Reason::deadline_exceeded
                                  : permit.reason());
  }
  co_await next();
}

}  // namespace coromesh::qos
