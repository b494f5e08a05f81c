#include "coromesh/qos/chain.hpp"

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include "coromesh/log/logger.hpp"
#include "coromesh/qos/cancellable_call.hpp"
#include "coromesh/qos/deadline_watchdog.hpp"

namespace coromesh::qos {

namespace asio = boost::asio;

// --- Invocation / Next / ChainCore ------------------------------------------------------

const std::string& Invocation::operation() const noexcept {
  return core_->operation();
}

const Clock& Invocation::clock() const noexcept {
  return core_->clock();
}

std::shared_ptr<UnrepeatableMarks> Invocation::unrepeatable_marks() const {
  std::call_once(marks_made_, [this] {
    marks_owner_ = std::make_shared<UnrepeatableMarks>();
    marks_.store(marks_owner_.get(), std::memory_order_release);
  });
  return marks_owner_;
}

const Fault& Invocation::fault(const std::exception_ptr& error) {
  if (!last_fault_ || last_fault_->error != error) {
    last_fault_ = Fault::from(error, core_->classifier());
    if (last_fault_->kind == FaultClass::cancelled && cutoff_watch_ != nullptr &&
        cutoff_watch_->expired()) {
      last_fault_->kind = FaultClass::timeout;
    }
  }
  return *last_fault_;
}

void Invocation::reject(std::string_view policy, Reason reason) const {
  core_->notify_rejection(policy, reason);
  QosRejected rejected(std::string(policy), reason);
  rejected.set_notified_by(core_);
  throw rejected;
}

void Invocation::note_refusal(std::string_view policy, Reason reason) const {
  core_->notify_rejection(policy, reason);
}

void Invocation::cut_off(std::string_view policy) const {
  core_->notify_rejection(policy, Reason::deadline_exceeded);
  QosRejected rejected = QosRejected::cut_off_by(std::string(policy));
  rejected.set_notified_by(core_);
  throw rejected;
}

asio::awaitable<void> Next::operator()() const {
  return core_->run_from(index_, *invocation_, *terminal_);
}

asio::awaitable<void> Next::starting_at(Clock::time_point now) const {
  return core_->run_from(index_, *invocation_, *terminal_, now);
}

ChainCore::ChainCore(std::vector<std::shared_ptr<Interceptor>> interceptors, ChainOptions options)
    : interceptors_(std::move(interceptors)), options_(std::move(options)) {
  if (options_.clock == nullptr) {
    options_.clock = &Clock::steady();
  }
  for (const auto& interceptor : interceptors_) {
    if (!interceptor) {
      throw std::invalid_argument("qos chain: null interceptor");
    }
  }
  std::stable_sort(interceptors_.begin(), interceptors_.end(),
                   [](const std::shared_ptr<Interceptor>& a,
                      const std::shared_ptr<Interceptor>& b) { return a->weight() < b->weight(); });
  const std::size_t n = interceptors_.size();
  synchronous_.assign(n, nullptr);
  segment_end_.assign(n, n);
  preempts_.assign(n, 0);
  retrying_.assign(n, nullptr);
  for (std::size_t i = n; i-- > 0;) {
    if (interceptors_[i]->synchronous()) {
      synchronous_[i] = static_cast<SynchronousInterceptor*>(interceptors_[i].get());
      preempts_[i] = synchronous_[i]->preempts() ? 1 : 0;
      segment_end_[i] = (i + 1 < n && synchronous_[i + 1] != nullptr) ? segment_end_[i + 1] : i + 1;
    } else if (i + 1 < n && synchronous_[i + 1] != nullptr) {
      retrying_[i] = dynamic_cast<RetryingInterceptor*>(interceptors_[i].get());
    }
  }
}

std::vector<std::string> ChainCore::order() const {
  std::vector<std::string> names;
  names.reserve(interceptors_.size());
  for (const auto& interceptor : interceptors_) {
    names.push_back(interceptor->name());
  }
  return names;
}

void ChainCore::notify_rejection(std::string_view policy, Reason reason) const {
  if (hook_) {
    hook_(policy, reason);
  }
}

asio::awaitable<void> ChainCore::run_from(std::size_t index, Invocation& invocation,
                                          const Terminal& terminal,
                                          std::optional<Clock::time_point> now) const {
  if (index >= interceptors_.size()) {
    return terminal(invocation);
  }
  if (synchronous_[index] != nullptr) {
    return run_segment(index, invocation, terminal, now, nullptr);
  }
  if (retrying_[index] != nullptr) {
    // Its attempts run in the segment's frame. Like its nested form it reads the clock
    // itself (on_call) rather than taking `now`.
    return run_segment(index + 1, invocation, terminal, std::nullopt, retrying_[index]);
  }
  return interceptors_[index]->around(invocation, Next(*this, index + 1, invocation, terminal));
}

void refuse_if_cancelled(const asio::cancellation_state& state) {
  if (state.cancelled() != asio::cancellation_type::none) {
    throw boost::system::system_error(asio::error::operation_aborted, "qos chain: not started");
  }
}

namespace {

// A call that comes to a value after its caller was cancelled (a handler that ignored the
// cancellation of a client hanging up, or of a drain) ends as cancelled all the same: its
// caller has given up on that value (the HTTP server drops the answer and counts 499 or
// 503), and the interceptors count what the caller saw, not a success nobody received.
// As a preemptive timeout treats a call that ignored its cut-off.
void discard_if_cancelled(const asio::cancellation_state& state) {
  if (state.cancelled() != asio::cancellation_type::none) {
    throw boost::system::system_error(asio::error::operation_aborted,
                                      "qos chain: the caller went away before the answer");
  }
}

// Puts the invocation's outer cut-off watch back on every way out of a preempted segment.
class CutoffWatchScope {
 public:
  CutoffWatchScope(Invocation& invocation, const WatchedDeadline& watch) noexcept
      : invocation_(invocation), outer_(invocation.set_cutoff_watch(&watch)) {}
  ~CutoffWatchScope() { invocation_.set_cutoff_watch(outer_); }
  CutoffWatchScope(const CutoffWatchScope&) = delete;
  CutoffWatchScope& operator=(const CutoffWatchScope&) = delete;

 private:
  Invocation& invocation_;
  const WatchedDeadline* outer_;
};

}  // namespace

// One coroutine frame for a whole run of synchronous interceptors: their request phases
// outermost first, the rest of the chain, then the outcome phases innermost first for
// those that admitted the call. A rejection in a request phase is a fault for the ones
// outside it, exactly as it would be in the nested form.
//
// With a preempting interceptor in the run (the preemptive timeout), the rest runs as a
// CancellableCall registered with the DeadlineWatchdog at the earliest deadline such an
// interceptor set. If that deadline passes, the interceptors inside the one that set it
// see the rest's own outcome and that one and those outside it see deadline_exceeded, as
// in the nested form where the timeout wraps the inner ones.
//
// With `retry`, the frame runs the retrying interceptor's loop around all of that, step
// for step as its nested form (RetryingInterceptor::around) does: each attempt is one
// pass of the segment, whose outcome phases have run before retry sees the fault.
asio::awaitable<void> ChainCore::run_segment(std::size_t begin, Invocation& invocation,
                                             const Terminal& terminal,
                                             std::optional<Clock::time_point> now,
                                             RetryingInterceptor* retry) const {
  if (retry != nullptr) {
    now = retry->on_call(invocation);
  }
  const std::size_t end = segment_end_[begin];
  for (std::uint32_t attempt = 1;; ++attempt) {
    if (retry != nullptr) {
      invocation.set_attempt(attempt);
    }
    // A time handed down by the caller is still the time (it has not suspended since).
    const auto start = now ? *now : clock().now();
    invocation.set_phase_time(start);
    std::size_t admitted = begin;
    std::size_t cutoff = end;  // the preempting interceptor with the earliest deadline
    Deadline cutoff_deadline;
    std::exception_ptr error;
    try {
      for (; admitted < end; ++admitted) {
        synchronous_[admitted]->on_request(invocation);
        if (preempts_[admitted] != 0 &&
            (cutoff == end || invocation.deadline().when() < cutoff_deadline.when())) {
          cutoff = admitted;
          cutoff_deadline = invocation.deadline();
        }
      }
      if (cutoff == end) {
        co_await run_from(end, invocation, terminal);
      } else {
        // Both declared before `rest`: `rest` keeps the executor by reference, and the
        // watch's signal must outlive the rest's cancellation state.
        const auto executor = co_await asio::this_coro::executor;
        WatchedDeadline watch(executor, steady_time(cutoff_deadline.when(), start));
        const CutoffWatchScope cutoff_scope(invocation, watch);
        // The rest runs with a cancellation state of its own: whether the caller has
        // given up already is asked here.
        refuse_if_cancelled(co_await asio::this_coro::cancellation_state);
        CancellableCall rest(executor);
        if (end == interceptors_.size()) {
          terminal.start_cancellable(terminal.call, invocation, rest, watch.slot());
        } else {
          rest.start(run_from(end, invocation, terminal), watch.slot());
        }
        if (!rest.finished()) {
          co_await rest.wait(watch.signal());
        }
        watch.release();
        // Cut off only when the watchdog's cancellation reached the rest while it ran: a
        // rest that finished just before the watchdog fired keeps what it came to.
        if (!watch.expired() || !rest.cancelled()) {
          rest.rethrow();
        } else {
          // Cut off: the ones inside the cutoff see what the rest came to...
          std::exception_ptr rest_error;
          try {
            rest.rethrow();
          } catch (...) {
            rest_error = std::current_exception();
          }
          // The cancellation the cut-off caused is a timeout for them, not the caller
          // going away (the breaker and the adaptive limit count it): `watch` has expired.
          const Fault* rest_fault = rest_error ? &invocation.fault(rest_error) : nullptr;
          const auto ended = clock().now();
          const Outcome inner{ended - start, rest_fault, ended};
          for (std::size_t k = admitted; k-- > cutoff + 1;) {
            synchronous_[k]->on_outcome(invocation, inner);
          }
          // ...the cutoff and those outside it see the deadline it enforced.
          admitted = cutoff + 1;
          invocation.cut_off(interceptors_[cutoff]->name());
        }
      }
      discard_if_cancelled(co_await asio::this_coro::cancellation_state);
    } catch (...) {
      error = std::current_exception();
    }
    const Fault* fault = error ? &invocation.fault(error) : nullptr;
    const auto ended = clock().now();
    const Outcome outcome{ended - start, fault, ended};
    for (std::size_t k = admitted; k-- > begin;) {
      synchronous_[k]->on_outcome(invocation, outcome);
    }
    if (!error) {
      co_return;
    }
    if (retry == nullptr) {
      std::rethrow_exception(error);
    }
    const std::optional<Duration> backoff = retry->on_attempt_fault(invocation, error, attempt);
    if (!backoff) {
      std::rethrow_exception(error);
    }
    if (*backoff > Duration::zero()) {
      co_await RetryingInterceptor::wait_backoff(*backoff);
    }
    now.reset();
  }
}

// The watchdog keeps steady time; the chain's clock may be a test's manual clock.
std::chrono::steady_clock::time_point ChainCore::steady_time(Clock::time_point when,
                                                             Clock::time_point now) const {
  if (&clock() == &Clock::steady()) {
    return when;
  }
  return std::chrono::steady_clock::now() + (when - now);
}

// --- Retrying interceptors ---------------------------------------------------------------

asio::awaitable<void> RetryingInterceptor::wait_backoff(Duration backoff) {
  if (backoff > Duration::zero()) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor, backoff);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

// The nested form of the loop ChainCore::run_segment runs when a synchronous interceptor
// follows: the same steps in the same order.
asio::awaitable<void> RetryingInterceptor::around(Invocation& invocation, Next next) {
  const std::optional<Clock::time_point> first_start = on_call(invocation);
  for (std::uint32_t attempt = 1;; ++attempt) {
    invocation.set_attempt(attempt);
    std::exception_ptr error;
    try {
      if (attempt == 1 && first_start) {
        co_await next.starting_at(*first_start);
      } else {
        co_await next();
      }
      co_return;
    } catch (...) {
      error = std::current_exception();
    }
    const std::optional<Duration> backoff = on_attempt_fault(invocation, error, attempt);
    if (!backoff) {
      std::rethrow_exception(error);
    }
    if (*backoff > Duration::zero()) {
      co_await wait_backoff(*backoff);
    }
  }
}

// --- Synchronous and phase interceptors -------------------------------------------------

asio::awaitable<void> SynchronousInterceptor::around(Invocation& invocation, Next next) {
  const auto start = invocation.clock().now();
  invocation.set_phase_time(start);
  on_request(invocation);
  std::exception_ptr error;
  try {
    co_await next();
    discard_if_cancelled(co_await asio::this_coro::cancellation_state);
  } catch (...) {
    error = std::current_exception();
  }
  const Fault* fault = error ? &invocation.fault(error) : nullptr;
  const auto ended = invocation.clock().now();
  on_outcome(invocation, Outcome{ended - start, fault, ended});
  if (error) {
    std::rethrow_exception(error);
  }
}

void PhaseInterceptor::on_outcome(Invocation& invocation, const Outcome& outcome) noexcept {
  try {
    if (outcome.ok()) {
      process_response(invocation);
    } else {
      process_fault(invocation, outcome.fault->error);
    }
  } catch (const std::exception& e) {
    log::error(
        "qos.phase_failed",
        {{"operation", invocation.operation()}, {"interceptor", name()}, {"error", e.what()}});
  } catch (...) {
    log::error("qos.phase_failed",
               {{"operation", invocation.operation()}, {"interceptor", name()}});
  }
}

}  // namespace coromesh::qos
