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
  return interceptors_[index]->around(invocation, Next(*this, index + 1, invocation, terminal));
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
  } catch (...) {
    fault.message = "unknown exception";
  }
  return fault;
}

// --- PhaseInterceptor -------------------------------------------------------------------

asio::awaitable<void> PhaseInterceptor::around(Invocation& invocation, Next next) {
  process_request(invocation);
  std::exception_ptr error;
  try {
    co_await next();
  } catch (...) {
    error = std::current_exception();
  }
  if (error) {
    process_fault(invocation, error);
    std::rethrow_exception(error);
  }
  process_response(invocation);
}

// --- Timeout ----------------------------------------------------------------------------

TimeoutInterceptor::TimeoutInterceptor(Duration per_attempt, std::optional<int> weight,
                                       std::string name)
    : Interceptor(std::move(name), weight, weights::timeout), per_attempt_(per_attempt) {
  if (per_attempt_ <= Duration::zero()) {
    throw std::invalid_argument("timeout: the per-attempt timeout must be positive");
  }
}

asio::awaitable<void> TimeoutInterceptor::around(Invocation& invocation, Next next) {
  Duration budget = per_attempt_;
  if (invocation.deadline().is_set()) {
    budget = std::min(budget, invocation.deadline().remaining(invocation.clock()));
  }
  if (budget <= Duration::zero()) {
    invocation.reject(name(), Reason::deadline_exceeded);
  }
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, budget);
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

namespace {

bool local_overload(const Fault& fault) {
  return fault.reason &&
         (*fault.reason == Reason::rate_limited || *fault.reason == Reason::bulkhead_full ||
          *fault.reason == Reason::concurrency_limited);
}

// The rest of the chain, run and timed on the chain's clock, its exception captured:
// what the breaker and the adaptive limit both learn from.
struct TimedOutcome {
  Duration duration;
  std::exception_ptr error;
};

asio::awaitable<TimedOutcome> run_timed(Invocation& invocation, Next& next) {
  const auto start = invocation.clock().now();
  std::exception_ptr error;
  try {
    co_await next();
  } catch (...) {
    error = std::current_exception();
  }
  co_return TimedOutcome{invocation.clock().now() - start, error};
}

}  // namespace

CircuitBreakerInterceptor::CircuitBreakerInterceptor(std::shared_ptr<CircuitBreaker> breaker,
                                                     std::optional<int> weight, std::string name)
    : Interceptor(std::move(name), weight, weights::circuit_breaker), breaker_(std::move(breaker)) {
  if (!breaker_) {
    throw std::invalid_argument("circuit_breaker: null breaker");
  }
}

asio::awaitable<void> CircuitBreakerInterceptor::around(Invocation& invocation, Next next) {
  const Admission admission = breaker_->acquire();
  if (!admission) {
    invocation.reject(name(), admission.reason());
  }
  const TimedOutcome outcome = co_await run_timed(invocation, next);
  if (!outcome.error) {
    breaker_->on_success(outcome.duration);
    co_return;
  }
  const Fault fault = Fault::from(outcome.error);
  if (fault.cancelled || local_overload(fault)) {
    breaker_->release_permission();
  } else {
    breaker_->on_failure(outcome.duration);
  }
  std::rethrow_exception(outcome.error);
}

// --- Rate limit -------------------------------------------------------------------------

RateLimitInterceptor::RateLimitInterceptor(std::shared_ptr<TokenBucket> bucket,
                                           std::optional<int> weight, std::string name)
    : Interceptor(std::move(name), weight, weights::rate_limit), bucket_(std::move(bucket)) {
  if (!std::get<0>(bucket_)) {
    throw std::invalid_argument("rate_limit: null token bucket");
  }
}

RateLimitInterceptor::RateLimitInterceptor(std::shared_ptr<LeakyBucket> bucket,
                                           std::optional<int> weight, std::string name)
    : Interceptor(std::move(name), weight, weights::rate_limit), bucket_(std::move(bucket)) {
  if (!std::get<1>(bucket_)) {
    throw std::invalid_argument("rate_limit: null leaky bucket");
  }
}

asio::awaitable<void> RateLimitInterceptor::around(Invocation& invocation, Next next) {
  const Admission admission = bucket_.index() == 0 ? std::get<0>(bucket_)->try_acquire()
                                                   : std::get<1>(bucket_)->try_acquire();
  if (!admission) {
    invocation.reject(name(), admission.reason());
  }
  co_await next();
}

// --- Bulkhead ---------------------------------------------------------------------------

BulkheadInterceptor::BulkheadInterceptor(std::shared_ptr<Bulkhead> bulkhead,
                                         std::optional<int> weight, std::string name)
    : Interceptor(std::move(name), weight, weights::bulkhead), bulkhead_(std::move(bulkhead)) {
  if (!bulkhead_) {
    throw std::invalid_argument("bulkhead: null bulkhead");
  }
}

asio::awaitable<void> BulkheadInterceptor::around(Invocation& invocation, Next next) {
  Bulkhead::Permit permit = co_await bulkhead_->acquire();
  if (!permit) {
    invocation.reject(name(), permit.reason());
  }
  co_await next();
}

// --- Adaptive limit ---------------------------------------------------------------------

AdaptiveLimitInterceptor::AdaptiveLimitInterceptor(std::shared_ptr<AdaptiveLimit> limit,
                                                   std::optional<int> weight, std::string name)
    : Interceptor(std::move(name), weight, weights::adaptive_limit), limit_(std::move(limit)) {
  if (!limit_) {
    throw std::invalid_argument("adaptive_limit: null limit");
  }
}

asio::awaitable<void> AdaptiveLimitInterceptor::around(Invocation& invocation, Next next) {
  const Admission admission = limit_->acquire();
  if (!admission) {
    invocation.reject(name(), admission.reason());
  }
  const TimedOutcome outcome = co_await run_timed(invocation, next);
  if (!outcome.error) {
    limit_->on_sample(outcome.duration, true);
    co_return;
  }
  const Fault fault = Fault::from(outcome.error);
  if (fault.cancelled || local_overload(fault)) {
    limit_->release();
  } else {
    limit_->on_sample(outcome.duration, false);
  }
  std::rethrow_exception(outcome.error);
}

// --- Log --------------------------------------------------------------------------------

LogInterceptor::LogInterceptor(std::optional<int> weight, std::string name)
    : Interceptor(std::move(name), weight, weights::log) {}

asio::awaitable<void> LogInterceptor::around(Invocation& invocation, Next next) {
  const auto start = invocation.clock().now();
  log::debug("qos.call.start", {{"operation", invocation.operation()}});
  std::exception_ptr error;
  try {
    co_await next();
  } catch (...) {
    error = std::current_exception();
  }
  const Duration duration = invocation.clock().now() - start;
  if (!error) {
    log::info("qos.call", {{"operation", invocation.operation()},
                           {"outcome", "ok"},
                           {"attempts", invocation.attempt()},
                           {"duration_s", duration}});
    co_return;
  }
  const Fault fault = Fault::from(error);
  if (fault.reason) {
    log::warn("qos.call", {{"operation", invocation.operation()},
                           {"outcome", "rejected"},
                           {"attempts", invocation.attempt()},
                           {"duration_s", duration},
                           {"policy", fault.policy},
                           {"reason", to_string(*fault.reason)}});
  } else {
    log::warn("qos.call", {{"operation", invocation.operation()},
                           {"outcome", "error"},
                           {"attempts", invocation.attempt()},
                           {"duration_s", duration},
                           {"error", fault.message}});
  }
  std::rethrow_exception(error);
}

}  // namespace coromesh::qos
