#include "coromesh/qos/timeout_interceptor.hpp"

#include <boost/asio/this_coro.hpp>
#include <chrono>
#include <stdexcept>
#include <utility>

#include "coromesh/qos/cancellable_call.hpp"
#include "coromesh/qos/deadline_watchdog.hpp"

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
  const Clock& clock = invocation.clock();
  const auto now = clock.now();
  const Deadline attempt = attempt_deadline(invocation, now);
  invocation.set_attempt_deadline(attempt);
  const auto executor = co_await asio::this_coro::executor;
  // The watchdog keeps steady time; the chain's clock may be a test's manual clock.
  const auto steady_deadline = &clock == &Clock::steady()
                                   ? attempt.when()
                                   : std::chrono::steady_clock::now() + (attempt.when() - now);
  // Declared before `call`: its signal must outlive the call's cancellation state (and
  // `executor`, which `call` keeps by reference, likewise).
  WatchedDeadline watch(executor, steady_deadline);
  // Asked before the call starts, as ChainCore::run_segment does: with Asio's default
  // throw_if_cancelled, the co_await of wait() below would throw for a caller already
  // cancelled, leaving the child running on `call` and `watch` as this frame unwinds.
  refuse_if_cancelled(co_await asio::this_coro::cancellation_state);
  CancellableCall call(executor);
  call.start(next(), watch.slot());
  if (!call.finished()) {
    co_await call.wait(watch.signal());
  }
  watch.release();
  invocation.set_attempt_deadline(Deadline::none());
  if (watch.expired() && call.cancelled()) {  // as in ChainCore::run_segment
    invocation.cut_off(name());
  }
  call.rethrow();
}

}  // namespace coromesh::qos
