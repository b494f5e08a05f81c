#include "coromesh/qos/chain.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include "coromesh/log/logger.hpp"

namespace coromesh::qos {

namespace asio = boost::asio;

// --- Invocation / Next / ChainCore ------------------------------------------------------

Invocation::Invocation(const ChainCore& core, CallOptions options) noexcept
    : core_(&core), options_(options) {}

const std::string& Invocation::operation() const noexcept {
  return core_->operation();
}

const Clock& Invocation::clock() const noexcept {
  return core_->clock();
}

void Invocation::reject(std::string_view policy, Reason reason) const {
  core_->notify_rejection(policy, reason);
  throw QosRejected(std::string(policy), reason);
}

asio::awaitable<void> Next::operator()() const {
  return core_->run_from(index_, *invocation_, *terminal_);
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
  for (std::size_t i = n; i-- > 0;) {
    if (interceptors_[i]->synchronous()) {
      synchronous_[i] = static_cast<SynchronousInterceptor*>(interceptors_[i].get());
      segment_end_[i] = (i + 1 < n && synchronous_[i + 1] != nullptr) ? segment_end_[i + 1] : i + 1;
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
                                          const Terminal& terminal) const {
  if (index >= interceptors_.size()) {
    return terminal(invocation);
  }
  if (synchronous_[index] != nullptr) {
    return run_segment(index, invocation, terminal);
  }
  return interceptors_[index]->around(invocation, Next(*this, index + 1, invocation, terminal));
}

// One coroutine frame for a whole run of synchronous interceptors: their request phases
// outermost first, the rest of the chain, then the outcome phases innermost first for
// those that admitted the call. A rejection in a request phase is a fault for the ones
// outside it, exactly as it would be in the nested form.
asio::awaitable<void> ChainCore::run_segment(std::size_t begin, Invocation& invocation,
                                             const Terminal& terminal) const {
  const std::size_t end = segment_end_[begin];
  const auto start = clock().now();
  invocation.set_phase_time(start);
  std::size_t admitted = begin;
  std::exception_ptr error;
  try {
    for (; admitted < end; ++admitted) {
      synchronous_[admitted]->on_request(invocation);
    }
    co_await run_from(end, invocation, terminal);
  } catch (...) {
    error = std::current_exception();
  }
  std::optional<Fault> fault;
  if (error) {
    fault = Fault::from(error);
  }
  const Outcome outcome{clock().now() - start, fault ? &*fault : nullptr};
  for (std::size_t k = admitted; k-- > begin;) {
    synchronous_[k]->on_outcome(invocation, outcome);
  }
  if (error) {
    std::rethrow_exception(error);
  }
}

// --- Fault ------------------------------------------------------------------------------

Fault Fault::from(std::exception_ptr error) {
  Fault fault;
  fault.error = error;
  try {
    std::rethrow_exception(error);
  } catch (const QosRejected& rejected) {
    fault.reason = rejected.reason();
    fault.policy = rejected.policy();
    fault.message = rejected.what();
  } catch (const boost::system::system_error& system_error) {
    fault.message = system_error.what();
    fault.cancelled = system_error.code() == asio::error::operation_aborted;
  } catch (const std::exception& exception) {
    fault.message = exception.what();
    if (const auto* carrier = dynamic_cast<const HasHttpStatus*>(&exception)) {
      fault.status = carrier->http_status();
    }
  } catch (...) {
    fault.message = "unknown exception";
  }
  return fault;
}

bool Fault::is_neutral() const noexcept {
  const bool local_overload =
      reason && (*reason == Reason::rate_limited || *reason == Reason::bulkhead_full ||
                 *reason == Reason::concurrency_limited);
  return cancelled || local_overload || (status >= 400 && status < 500);
}

// --- Synchronous and phase interceptors -------------------------------------------------

asio::awaitable<void> SynchronousInterceptor::around(Invocation& invocation, Next next) {
  const auto start = invocation.clock().now();
  invocation.set_phase_time(start);
  on_request(invocation);
  std::exception_ptr error;
  try {
    co_await next();
  } catch (...) {
    error = std::current_exception();
  }
  std::optional<Fault> fault;
  if (error) {
    fault = Fault::from(error);
  }
  on_outcome(invocation, Outcome{invocation.clock().now() - start, fault ? &*fault : nullptr});
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

// --- Timeout ----------------------------------------------------------------------------

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
  auto group = asio::experimental::make_parallel_group(
      timer.async_wait(asio::deferred), asio::co_spawn(executor, next(), asio::deferred));
  const asio::experimental::wait_for_one condition;
  auto [order, timer_error, call_error] = co_await group.async_wait(condition, asio::use_awaitable);
  invocation.set_attempt_deadline(Deadline::none());
  if (order[0] == 0 && !timer_error) {
    invocation.reject(name(), Reason::deadline_exceeded);
  }
  if (call_error) {
    std::rethrow_exception(call_error);
  }
}

// --- Retry ------------------------------------------------------------------------------

RetryInterceptor::RetryInterceptor(RetryConfig config, RetryOptions options,
                                   std::optional<int> weight, std::string name)
    : Interceptor(std::move(name), weight, weights::retry),
      policy_(config),
      options_(std::move(options)),
      rng_(options_.seed) {}

bool RetryInterceptor::retryable(const Fault& fault, std::uint32_t attempts,
                                 bool idempotent) const {
  const auto& config = policy_.config();
  if (attempts >= config.max_attempts || (config.idempotent_only && !idempotent) ||
      fault.cancelled) {
    return false;
  }
  if (fault.reason) {
    return options_.retry_attempt_timeouts && *fault.reason == Reason::deadline_exceeded;
  }
  if (fault.status != 0) {
    return policy_.should_retry(attempts, fault.status, idempotent);
  }
  try {
    std::rethrow_exception(fault.error);
  } catch (const std::exception& error) {
    return policy_.should_retry(attempts, error, idempotent);
  } catch (...) {
    return false;
  }
}

Duration RetryInterceptor::next_backoff(std::uint32_t retry) {
  const std::lock_guard lock(rng_mutex_);
  return policy_.backoff(retry, rng_);
}

asio::awaitable<void> RetryInterceptor::around(Invocation& invocation, Next next) {
  if (options_.budget) {
    options_.budget->on_request();
  }
  for (std::uint32_t attempt = 1;; ++attempt) {
    invocation.set_attempt(attempt);
    std::exception_ptr error;
    try {
      co_await next();
      co_return;
    } catch (...) {
      error = std::current_exception();
    }
    const Fault fault = Fault::from(error);
    if (!retryable(fault, attempt, invocation.idempotent())) {
      std::rethrow_exception(error);
    }
    const Duration backoff = next_backoff(attempt);
    if (invocation.deadline().is_set() &&
        backoff >= invocation.deadline().remaining(invocation.clock())) {
      std::rethrow_exception(error);
    }
    if (options_.budget) {
      const Admission admission = options_.budget->try_retry();
      if (!admission) {
        invocation.reject(name(), admission.reason());
      }
    }
    if (backoff > Duration::zero()) {
      auto executor = co_await asio::this_coro::executor;
      asio::steady_timer timer(executor, backoff);
      co_await timer.async_wait(asio::use_awaitable);
    }
  }
}

// --- Circuit breaker --------------------------------------------------------------------

CircuitBreakerInterceptor::CircuitBreakerInterceptor(std::shared_ptr<CircuitBreaker> breaker,
                                                     std::optional<int> weight, std::string name)
    : SynchronousInterceptor(std::move(name), weight, weights::circuit_breaker),
      breaker_(std::move(breaker)) {
  if (!breaker_) {
    throw std::invalid_argument("circuit_breaker: null breaker");
  }
}

void CircuitBreakerInterceptor::on_request(Invocation& invocation) {
  const Admission admission = breaker_->acquire();
  if (!admission) {
    invocation.reject(name(), admission.reason());
  }
}

void CircuitBreakerInterceptor::on_outcome(Invocation&, const Outcome& outcome) noexcept {
  if (outcome.ok()) {
    breaker_->on_success(outcome.elapsed);
  } else if (outcome.fault->is_neutral()) {
    breaker_->release_permission();
  } else {
    breaker_->on_failure(outcome.elapsed);
  }
}

// --- Rate limit -------------------------------------------------------------------------

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

// --- Bulkhead ---------------------------------------------------------------------------

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

// --- Adaptive limit ---------------------------------------------------------------------

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
    limit_->on_sample(outcome.elapsed, true);
  } else if (outcome.fault->is_neutral()) {
    limit_->release();
  } else {
    limit_->on_sample(outcome.elapsed, false);
  }
}

// --- Log --------------------------------------------------------------------------------

LogInterceptor::LogInterceptor(std::optional<int> weight, std::string name)
    : SynchronousInterceptor(std::move(name), weight, weights::log) {}

void LogInterceptor::on_request(Invocation& invocation) {
  log::debug("qos.call.start", {{"operation", invocation.operation()}});
}

void LogInterceptor::on_outcome(Invocation& invocation, const Outcome& outcome) noexcept {
  if (outcome.ok()) {
    log::info("qos.call", {{"operation", invocation.operation()},
                           {"outcome", "ok"},
                           {"attempts", invocation.attempt()},
                           {"duration_s", outcome.elapsed}});
    return;
  }
  const Fault& fault = *outcome.fault;
  if (fault.reason) {
    log::warn("qos.call", {{"operation", invocation.operation()},
                           {"outcome", "rejected"},
                           {"attempts", invocation.attempt()},
                           {"duration_s", outcome.elapsed},
                           {"policy", fault.policy},
                           {"reason", to_string(*fault.reason)}});
  } else {
    log::warn("qos.call", {{"operation", invocation.operation()},
                           {"outcome", "error"},
                           {"attempts", invocation.attempt()},
                           {"duration_s", outcome.elapsed},
                           {"error", fault.message}});
  }
}

// --- Metrics ----------------------------------------------------------------------------

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
  const Result result = outcome.ok()            ? Result::ok
                        : outcome.fault->reason ? Result::rejected
                                                : Result::error;
  observer_->observe(result, outcome.elapsed);
}

}  // namespace coromesh::qos
