#include "coromesh/qos/rate_limit_interceptor.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <utility>

namespace coromesh::qos {

namespace asio = boost::asio;

RateLimitInterceptor::RateLimitInterceptor(std::shared_ptr<TokenBucket> bucket,
                                           std::optional<int> weight, std::string name)
    : SynchronousInterceptor(std::move(name), weight, weights::rate_limit),
      bucket_(std::move(bucket)) {
  if (!std::get<0>(bucket_)) {
    throw std::invalid_argument("rate_limit: null token bucket");
  }
}

RateLimitInterceptor::RateLimitInterceptor(std::shared_ptr<LeakyBucket> bucket,
                                           std::optional<int> weight, std::string name, bool shape)
    : SynchronousInterceptor(std::move(name), weight, weights::rate_limit),
      bucket_(std::move(bucket)),
      shape_(shape) {
  if (!std::get<1>(bucket_)) {
    throw std::invalid_argument("rate_limit: null leaky bucket");
  }
}

void RateLimitInterceptor::on_request(Invocation& invocation) {
  const auto now = invocation.phase_time();
  const Admission admission = bucket_.index() == 0 ? std::get<0>(bucket_)->try_acquire_at(now)
                                                   : std::get<1>(bucket_)->try_acquire_at(now);
  if (!admission) {
    invocation.reject(name(), admission.reason());
  }
}

asio::awaitable<void> RateLimitInterceptor::around(Invocation& invocation, Next next) {
  if (!shape_) {
    co_await SynchronousInterceptor::around(invocation, next);
    co_return;
  }
  const auto turn = std::get<1>(bucket_)->try_schedule();
  if (!turn) {
    invocation.reject(name(), Reason::rate_limited);
  }
  if (*turn > Duration::zero()) {
    if (invocation.deadline().is_set() &&
        *turn >= invocation.deadline().remaining(invocation.clock())) {
      invocation.reject(name(), Reason::deadline_exceeded);
    }
    asio::steady_timer timer(co_await asio::this_coro::executor, *turn);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_await next();
}

}  // namespace coromesh::qos
