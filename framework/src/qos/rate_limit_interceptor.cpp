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

namespace {

// Gives a turn back to its bucket unless the call took it: when the wait for the turn ends
// in a cancellation, or the frame waiting is destroyed (its io_context shut down).
class UnusedTurn {
 public:
  UnusedTurn(std::shared_ptr<LeakyBucket> bucket, Clock::time_point start) noexcept
      : bucket_(std::move(bucket)), start_(start) {}
  UnusedTurn(const UnusedTurn&) = delete;
  UnusedTurn& operator=(const UnusedTurn&) = delete;
  ~UnusedTurn() {
    if (bucket_) {
      bucket_->give_back(start_);
    }
  }
  void taken() noexcept { bucket_.reset(); }

 private:
  std::shared_ptr<LeakyBucket> bucket_;  // owned: the frame may outlive the interceptor
  Clock::time_point start_;
};

}  // namespace

asio::awaitable<void> RateLimitInterceptor::around(Invocation& invocation, Next next) {
  if (!shape_) {
    co_await SynchronousInterceptor::around(invocation, next);
    co_return;
  }
  // The deadline is checked when the turn is taken, so a call refused for it takes none.
  const Deadline deadline = invocation.deadline();
  const Duration max_wait =
      deadline.is_set() ? deadline.remaining(invocation.clock()) : Duration::max();
  const auto& bucket = std::get<1>(bucket_);
  const LeakyBucket::Turn turn = bucket->try_schedule(max_wait);
  if (!turn.admission) {
    invocation.reject(name(), turn.admission.reason());
  }
  if (turn.wait > Duration::zero()) {
    UnusedTurn unused(bucket, turn.start);
    asio::steady_timer timer(co_await asio::this_coro::executor, turn.wait);
    co_await timer.async_wait(asio::use_awaitable);
    unused.taken();
  }
  co_await next();
}

}  // namespace coromesh::qos
