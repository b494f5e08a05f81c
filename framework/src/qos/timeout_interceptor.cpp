#include "coromesh/qos/timeout_interceptor.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <utility>

namespace coromesh::qos {

namespace asio = boost::asio;

TimeoutInterceptor::TimeoutInterceptor(Duration per_attempt, std::optional<int> weight,
                                       std::string name, TimeoutMode mode)
    : SynchronousInterceptor(std::move(name), weight, weights::timeout),
      per_attempt_(per_attempt),
      mode_(mode) {
  if (per_attempt_ <= Duration::zero()) {
    throw std::invalid_argument("timeout: the per-attempt timeout must be positive");
  }
}

Deadline TimeoutInterceptor::attempt_deadline(Invocation& invocation, Clock::time_point now) const {
  const Deadline attempt = invocation.overall_deadline().min(Deadline::at(now + per_attempt_));
  if (attempt.when() <= now) {
    invocation.reject(name(), Reason::deadline_exceeded);
  }
  return attempt;
}

void TimeoutInterceptor::on_request(Invocation& invocation) {
  invocation.set_attempt_deadline(attempt_deadline(invocation, invocation.phase_time()));
}

void TimeoutInterceptor::on_outcome(Invocation& invocation, const Outcome&) noexcept {
  invocation.set_attempt_deadline(Deadline::none());
}

asio::awaitable<void> TimeoutInterceptor::around(Invocation& invocation, Next next) {
  if (mode_ == TimeoutMode::deadline) {
    co_await SynchronousInterceptor::around(invocation, next);
    co_return;
  }
  const Deadline attempt = attempt_deadline(invocation, invocation.clock().now());
  invocation.set_attempt_deadline(attempt);
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, attempt.remaining(invocation.clock()));
  // Not `call || timer`: awaitable_operators' || waits for the first *success*, so a call
  // failing fast would wait out the timer. A parallel group with wait_for_one cancels
  // the other operation as soon as either completes, whatever its outcome. The timer is
  // started first and directly (not through co_spawn) so its cancellation slot is in
  // place even when the call completes at once (a cancellation emitted to an operation
  // that has not started yet is lost).
  // The timer marks the attempt timed out before the group cancels the rest, so the
  // interceptors further in see a timeout, not the caller going away.
  invocation.set_attempt_timed_out(false);
  auto timed_wait = timer.async_wait(asio::deferred([&invocation](boost::system::error_code ec) {
    if (!ec) {
      invocation.set_attempt_timed_out(true);
    }
    return asio::deferred.values(ec);
  }));
  auto group = asio::experimental::make_parallel_group(
      std::move(timed_wait), asio::co_spawn(executor, next(), asio::deferred));
  const asio::experimental::wait_for_one condition;
  auto [order, timer_error, call_error] = co_await group.async_wait(condition, asio::use_awaitable);
  invocation.set_attempt_deadline(Deadline::none());
  invocation.set_attempt_timed_out(false);
  if (order[0] == 0 && !timer_error) {
    invocation.reject(name(), Reason::deadline_exceeded);
  }
  if (call_error) {
    std::rethrow_exception(call_error);
  }
}

}  // namespace coromesh::qos
