#pragma once

// The QoS policy kinds as declaration values: literal types a declaration lists
// (`qos::retry{.max_attempts = 3}`). policies.hpp has their defaults and how they are
// checked; policy_fields.hpp describes their fields.

#include <chrono>
#include <cstdint>
#include <type_traits>

#include "coromesh/qos/adaptive_limit.hpp"
#include "coromesh/qos/bulkhead.hpp"
#include "coromesh/qos/circuit_breaker.hpp"
#include "coromesh/qos/clock.hpp"
#include "coromesh/qos/rate_limiter.hpp"
#include "coromesh/qos/reason.hpp"
#include "coromesh/qos/retry.hpp"
#include "coromesh/qos/timeout_interceptor.hpp"

namespace coromesh::qos {

struct timeout {
  Duration per_attempt = std::chrono::seconds(1);
  Duration overall = Duration::zero();  // zero: no overall deadline beyond the caller's
  TimeoutMode mode = TimeoutMode::preemptive;
  int weight = 0;

  friend constexpr bool operator==(const timeout&, const timeout&) = default;
};

struct retry {
  std::uint32_t max_attempts = 3;
  Duration base_backoff = std::chrono::milliseconds(25);
  Duration max_backoff = std::chrono::milliseconds(250);
  double multiplier = 2.0;
  Jitter jitter = Jitter::full;
  StatusSet retry_on{502, 503, 504};
  bool retry_transport_errors = true;
  bool idempotent_only = true;
  // Declares that the operation may be retried although its method (POST, PATCH) is not
  // idempotent: after any retryable failure, a lost answer included (the request may have
  // been processed). Only for a handler that is idempotent by design (e.g. keyed by a
  // request id). Without it, a retry on such an operation sends the request again only
  // when it certainly never reached the callee (qos/fault.hpp: not_delivered, such as a
  // refused connect).
  bool non_idempotent = false;
  bool budget = true;
  double budget_ratio = 0.2;
  std::uint32_t budget_min_per_second = 10;
  Duration budget_ttl = std::chrono::seconds(10);
  int weight = 0;

  friend constexpr bool operator==(const retry&, const retry&) = default;

  constexpr RetryConfig config() const noexcept {
    RetryConfig c;
    c.max_attempts = max_attempts;
    c.base_backoff = base_backoff;
    c.max_backoff = max_backoff;
    c.multiplier = multiplier;
    c.jitter = jitter;
    c.retryable_statuses = retry_on;
    c.retry_transport_errors = retry_transport_errors;
    c.idempotent_only = idempotent_only && !non_idempotent;
    return c;
  }
  constexpr RetryBudgetConfig budget_config() const noexcept {
    return {
        .ratio = budget_ratio, .min_retries_per_second = budget_min_per_second, .ttl = budget_ttl};
  }
};

struct circuit_breaker {
  double failure_rate = 0.5;
  double slow_call_rate = 1.0;
  Duration slow_call = std::chrono::seconds(60);
  std::uint32_t window = 100;  // calls, count-based
  WindowType window_type = WindowType::count_based;
  Duration window_duration = std::chrono::seconds(60);  // time-based
  std::uint32_t minimum_calls = 100;
  Duration open_for = std::chrono::seconds(60);
  std::uint32_t half_open_calls = 10;
  int weight = 0;

  friend constexpr bool operator==(const circuit_breaker&, const circuit_breaker&) = default;

  constexpr CircuitBreakerConfig config() const noexcept {
    CircuitBreakerConfig c;
    c.window_type = window_type;
    c.window_size = window;
    c.window_duration = window_duration;
    c.failure_rate_threshold = failure_rate;
    c.slow_call_rate_threshold = slow_call_rate;
    c.slow_call_duration = slow_call;
    c.minimum_calls = minimum_calls;
    c.wait_in_open = open_for;
    c.permitted_calls_in_half_open = half_open_calls;
    return c;
  }
};

enum class RateAlgorithm : std::uint8_t { token_bucket, leaky_bucket };

struct rate_limit {
  std::uint64_t permits = 50;
  Duration period = std::chrono::seconds(1);
  std::uint64_t burst = 0;  // zero: the same as permits
  RateAlgorithm algorithm = RateAlgorithm::token_bucket;
  // Leaky bucket only: delay admitted calls so they leave at the fixed rate (a queue of
  // `burst` places), instead of only metering them.
  bool shape = false;
  int weight = 0;

  friend constexpr bool operator==(const rate_limit&, const rate_limit&) = default;

  constexpr std::uint64_t effective_burst() const noexcept { return burst == 0 ? permits : burst; }
  constexpr TokenBucketConfig token_bucket_config() const noexcept {
    return {.permits = permits, .period = period, .burst = effective_burst()};
  }
  constexpr LeakyBucketConfig leaky_bucket_config() const noexcept {
    return {.rate = permits, .period = period, .capacity = effective_burst()};
  }
};

struct bulkhead {
  std::uint32_t max_concurrent = 25;
  std::uint32_t max_queue = 0;
  Duration max_wait = Duration::zero();
  int weight = 0;

  friend constexpr bool operator==(const bulkhead&, const bulkhead&) = default;

  constexpr BulkheadConfig config() const noexcept {
    return {.max_concurrent = max_concurrent, .max_queue = max_queue, .max_wait = max_wait};
  }
};

struct adaptive_limit {
  std::uint32_t initial_limit = 20;
  std::uint32_t min_limit = 1;
  std::uint32_t max_limit = 200;
  double backoff_ratio = 0.9;
  Duration timeout = std::chrono::seconds(5);
  Duration latency_target = Duration::zero();
  double tolerance = 2.0;
  Duration baseline_window = std::chrono::seconds(60);
  int weight = 0;

  friend constexpr bool operator==(const adaptive_limit&, const adaptive_limit&) = default;

  constexpr AdaptiveLimitConfig config() const noexcept {
    return {.initial_limit = initial_limit,
            .min_limit = min_limit,
            .max_limit = max_limit,
            .backoff_ratio = backoff_ratio,
            .timeout = timeout,
            .latency_target = latency_target,
            .tolerance = tolerance,
            .baseline_window = baseline_window};
  }
};

// `handler` is a static value (converted to the operation's result) or a function
// pointer R(*)(const Fault&). A declaration is a constexpr value, so a static value must
// be a literal type (a number, an enum, a struct of those); for a result holding a
// std::string or a vector, give a function. Which faults it answers, by their class
// (fault.hpp): on_rejections (refusals: a policy's QosRejected, a spent deadline, a call
// discovery could not place, a callee's 429) and on_errors (the callee's failures,
// transport errors and timeouts, a preemptive timeout's cut-off included). Never a
// caller's own 4xx nor a cancellation (the decision table in fault.hpp). only_for()
// narrows the refusals it answers to some reasons:
//
//   qos::fallback{&cached_quote}.only_for({qos::Reason::rate_limited,
//                                          qos::Reason::callee_rejected})
//
// (a callee's 429 is callee_rejected, and rate_limited too when its answer says so:
// FallbackFilter::reasons).
template <class T>
struct fallback {
  T handler;
  bool on_rejections = true;
  bool on_errors = true;
  int weight = 0;
  ReasonSet reasons{};  // empty: every refusal (on_rejections)

  constexpr fallback only_for(ReasonSet only) const noexcept {
    fallback narrowed = *this;
    narrowed.reasons = only;
    return narrowed;
  }
};
template <class T>
fallback(T) -> fallback<T>;

struct log {
  int weight = 0;

  friend constexpr bool operator==(const log&, const log&) = default;
};

struct metrics {
  int weight = 0;

  friend constexpr bool operator==(const metrics&, const metrics&) = default;
};

template <class T>
struct is_fallback : std::false_type {};
template <class T>
struct is_fallback<fallback<T>> : std::true_type {};

}  // namespace coromesh::qos
