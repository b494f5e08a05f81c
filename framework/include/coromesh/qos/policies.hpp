#pragma once

// The QoS policies as declaration values: literal types a declaration lists, checked at
// compile time, turned into a running chain by the framework (qos/policy_set.hpp).
//
//   namespace qos = coromesh::qos;
//   constexpr auto server_side = qos::server(qos::timeout{100ms},
//                                            qos::rate_limit{5000, 1s},
//                                            qos::circuit_breaker{.failure_rate = 0.5,
//                                                                 .window = 100},
//                                            qos::log{});
//
// Every field has a default (the table below; borrowed from resilience4j, Envoy and
// Linkerd), so `qos::bulkhead{}` is a complete policy. `weight` orders the chain
// (lowest outermost); 0 means the kind's default weight (chain.hpp), which gives
// fallback(retry(circuit_breaker(rate_limit(timeout(bulkhead(adaptive_limit(call))))))).
//
//   policy            field                  default
//   timeout           per_attempt            1 s
//                     overall                none (0): the caller's deadline only
//                     mode                   preemptive
//   retry             max_attempts           3 (the first call included)
//                     base_backoff           25 ms, doubled per retry (multiplier 2)
//                     max_backoff            250 ms, full jitter
//                     retry_on               502, 503, 504 and transport errors
//                     idempotent_only        true
//                     budget                 on: 20 % of requests + 10 retries/s over 10 s
//   circuit_breaker   window                 100 calls (count-based; time-based: 60 s)
//                     failure_rate           0.5
//                     slow_call_rate         1.0 of calls slower than slow_call (60 s)
//                     minimum_calls          100
//                     open_for               60 s, then 10 half-open probe calls
//   rate_limit        permits / period       50 per 1 s, burst = permits, token bucket
//   bulkhead          max_concurrent         25, no wait queue
//   adaptive_limit    initial / min / max    20 / 1 / 200, AIMD backoff 0.9, tolerance 2x
//   fallback          value or function      answers every rejection and error
//   log, metrics      -                      one line per call; calls + duration metrics
//
// Declaration checks: validate_declaration(list) is constexpr and returns the first
// problem (empty when the list can work); COROMESH_OPERATION turns a problem into a
// compile error that quotes it.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "coromesh/qos/adaptive_limit.hpp"
#include "coromesh/qos/bulkhead.hpp"
#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/circuit_breaker.hpp"
#include "coromesh/qos/rate_limiter.hpp"
#include "coromesh/qos/retry.hpp"

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
  // idempotent. Only for a handler that is idempotent by design (e.g. keyed by a request
  // id); without it, retry on such an operation does not compile.
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
// std::string or a vector, give a function. Which faults it answers: on_rejections
// (QosRejected, any reason) and on_errors (any other exception).
template <class T>
struct fallback {
  T handler;
  bool on_rejections = true;
  bool on_errors = true;
  int weight = 0;
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

// --- per-policy checks ------------------------------------------------------------------

constexpr std::string_view validate(const timeout& t) noexcept {
  if (t.per_attempt <= Duration::zero()) {
    return "timeout: per_attempt must be positive";
  }
  if (t.overall < Duration::zero()) {
    return "timeout: overall must not be negative";
  }
  if (t.overall > Duration::zero() && t.per_attempt > t.overall) {
    return "timeout: per_attempt exceeds overall, so the overall timeout always cuts it";
  }
  return {};
}

constexpr std::string_view validate(const retry& r) noexcept {
  if (auto e = validate(r.config()); !e.empty()) {
    return e;
  }
  return r.budget ? validate(r.budget_config()) : std::string_view{};
}

constexpr std::string_view validate(const circuit_breaker& c) noexcept {
  return validate(c.config());
}

constexpr std::string_view validate(const rate_limit& r) noexcept {
  if (r.shape && r.algorithm != RateAlgorithm::leaky_bucket) {
    return "rate limit: shape needs algorithm = leaky_bucket (a token bucket does not queue)";
  }
  return r.algorithm == RateAlgorithm::token_bucket ? validate(r.token_bucket_config())
                                                    : validate(r.leaky_bucket_config());
}

constexpr std::string_view validate(const bulkhead& b) noexcept {
  return validate(b.config());
}

constexpr std::string_view validate(const adaptive_limit& a) noexcept {
  return validate(a.config());
}

template <class T>
constexpr std::string_view validate(const fallback<T>& f) noexcept {
  if (!f.on_rejections && !f.on_errors) {
    return "fallback: answers neither rejections nor errors, so it never applies";
  }
  return {};
}

constexpr std::string_view validate(const log&) noexcept {
  return {};
}
constexpr std::string_view validate(const metrics&) noexcept {
  return {};
}

// The weight a policy will run at.
template <class P>
constexpr int effective_weight(const P& p) noexcept {
  if (p.weight != 0) {
    return p.weight;
  }
  using T = std::remove_cvref_t<P>;
  if constexpr (std::is_same_v<T, timeout>) {
    return weights::timeout;
  } else if constexpr (std::is_same_v<T, retry>) {
    return weights::retry;
  } else if constexpr (std::is_same_v<T, circuit_breaker>) {
    return weights::circuit_breaker;
  } else if constexpr (std::is_same_v<T, rate_limit>) {
    return weights::rate_limit;
  } else if constexpr (std::is_same_v<T, bulkhead>) {
    return weights::bulkhead;
  } else if constexpr (std::is_same_v<T, adaptive_limit>) {
    return weights::adaptive_limit;
  } else if constexpr (is_fallback<T>::value) {
    return weights::fallback;
  } else if constexpr (std::is_same_v<T, log>) {
    return weights::log;
  } else {
    return weights::metrics;
  }
}

// --- lists ------------------------------------------------------------------------------

enum class Side : std::uint8_t { server, client };

// The policies of one side of an operation, in declaration order.
template <Side S, class... Ps>
struct PolicyList {
  static constexpr Side side = S;
  std::tuple<Ps...> policies;

  template <class P>
  static constexpr std::size_t count() noexcept {
    return (std::size_t{0} + ... + (std::is_same_v<P, Ps> ? 1 : 0));
  }
  static constexpr std::size_t fallback_count() noexcept {
    return (std::size_t{0} + ... + (is_fallback<Ps>::value ? 1 : 0));
  }
  // The first policy of kind P. Precondition: count<P>() > 0.
  template <class P>
  constexpr const P& get() const noexcept {
    return std::get<P>(policies);
  }
};

template <class... Ps>
constexpr PolicyList<Side::server, Ps...> server(Ps... policies) {
  return {{policies...}};
}
template <class... Ps>
constexpr PolicyList<Side::client, Ps...> client(Ps... policies) {
  return {{policies...}};
}

// The first problem with a list, empty when it can work: a kind declared twice, a
// fallback whose value cannot be the result, or what validate(PolicySet) finds.
template <Side S, class... Ps>
constexpr std::string_view validate_declaration(const PolicyList<S, Ps...>& list) noexcept;

// --- the runtime form ----------------------------------------------------------------

// Every kind a side may run, each optional: what a declaration lists (fallback aside: it
// is typed and never overridden) and what a Consul KV override changes. A literal type,
// so the compile-time checks and the start-up checks are the same code.
struct PolicySet {
  std::optional<timeout> timeout_policy;
  std::optional<retry> retry_policy;
  std::optional<circuit_breaker> breaker_policy;
  std::optional<rate_limit> rate_limit_policy;
  std::optional<bulkhead> bulkhead_policy;
  std::optional<adaptive_limit> adaptive_policy;
  std::optional<log> log_policy;
  std::optional<metrics> metrics_policy;

  friend constexpr bool operator==(const PolicySet&, const PolicySet&) = default;

  template <class P>
  constexpr void set(const P& p) noexcept {
    if constexpr (std::is_same_v<P, timeout>) {
      timeout_policy = p;
    } else if constexpr (std::is_same_v<P, retry>) {
      retry_policy = p;
    } else if constexpr (std::is_same_v<P, circuit_breaker>) {
      breaker_policy = p;
    } else if constexpr (std::is_same_v<P, rate_limit>) {
      rate_limit_policy = p;
    } else if constexpr (std::is_same_v<P, bulkhead>) {
      bulkhead_policy = p;
    } else if constexpr (std::is_same_v<P, adaptive_limit>) {
      adaptive_policy = p;
    } else if constexpr (std::is_same_v<P, log>) {
      log_policy = p;
    } else if constexpr (std::is_same_v<P, metrics>) {
      metrics_policy = p;
    }
  }
};

// A list's policies as a PolicySet (its fallback, if any, left out).
template <Side S, class... Ps>
constexpr PolicySet to_policy_set(const PolicyList<S, Ps...>& list) noexcept {
  PolicySet set;
  std::apply([&set](const auto&... p) { (set.set(p), ...); }, list.policies);
  return set;
}

// The first problem with a set, empty when it can work: each policy's own check, and a
// retry whose attempts cannot fit in the timeout that bounds them (the timeout's
// `overall`, or its per-attempt value when a weight puts the timeout outside the retry).
constexpr std::string_view validate(const PolicySet& set) noexcept {
  std::string_view error;
  auto check = [&error](const auto& policy) {
    if (error.empty() && policy) {
      error = validate(*policy);
    }
  };
  check(set.timeout_policy);
  check(set.retry_policy);
  check(set.breaker_policy);
  check(set.rate_limit_policy);
  check(set.bulkhead_policy);
  check(set.adaptive_policy);
  if (!error.empty()) {
    return error;
  }
  if (set.retry_policy && set.timeout_policy) {
    const auto& r = *set.retry_policy;
    const auto& t = *set.timeout_policy;
    const bool timeout_outside = effective_weight(t) < effective_weight(r);
    const Duration bound = t.overall > Duration::zero() ? t.overall
                           : timeout_outside            ? t.per_attempt
                                                        : Duration::zero();
    if (bound > Duration::zero()) {
      const Duration per_attempt = timeout_outside ? Duration::zero() : t.per_attempt;
      return validate(r.config(), bound, per_attempt);
    }
  }
  return {};
}

template <Side S, class... Ps>
constexpr std::string_view validate_declaration(const PolicyList<S, Ps...>& list) noexcept {
  using L = PolicyList<S, Ps...>;
  if (L::template count<timeout>() > 1 || L::template count<retry>() > 1 ||
      L::template count<circuit_breaker>() > 1 || L::template count<rate_limit>() > 1 ||
      L::template count<bulkhead>() > 1 || L::template count<adaptive_limit>() > 1 ||
      L::template count<log>() > 1 || L::template count<metrics>() > 1 || L::fallback_count() > 1) {
    return "a policy kind is declared twice in one QoS list";
  }
  std::string_view error;
  std::apply([&error](const auto&... p) { ((error = error.empty() ? validate(p) : error), ...); },
             list.policies);
  return error.empty() ? validate(to_policy_set(list)) : error;
}

// A fixed-capacity copy of a check's message: a structural type, so it can be a template
// argument and a failed check can quote itself in the compiler's error.
struct DeclarationError {
  static constexpr std::size_t kCapacity = 200;
  char text[kCapacity]{};
  std::size_t size = 0;

  constexpr DeclarationError() noexcept = default;
  constexpr DeclarationError(std::string_view a, std::string_view b = {}, std::string_view c = {},
                             std::string_view d = {}) noexcept {
    append(a);
    append(b);
    append(c);
    append(d);
  }
  constexpr void append(std::string_view s) noexcept {
    for (char ch : s) {
      if (size + 1 < kCapacity) {
        text[size++] = ch;
      }
    }
  }
  constexpr bool empty() const noexcept { return size == 0; }
  constexpr std::string_view view() const noexcept { return {text, size}; }
};

namespace detail {
// Instantiated by COROMESH_OPERATION with the declaration's check; a problem fails the
// static_assert and the compiler prints the message as the template argument.
template <DeclarationError E>
constexpr bool declaration_ok() noexcept {
  static_assert(E.empty(),
                "coromesh: invalid QoS declaration; the message is in the "
                "'DeclarationError{...}' template argument above");
  return true;
}
}  // namespace detail

}  // namespace coromesh::qos
