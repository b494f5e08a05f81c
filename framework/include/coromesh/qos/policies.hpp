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
//   fallback          value or function      answers rejections, the callee's failures,
//                                            transport errors and timeouts; never a
//                                            caller's 4xx or a cancellation (fault.hpp)
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
#include "coromesh/qos/policy_description.hpp"
#include "coromesh/qos/rate_limiter.hpp"
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
    c.idempotent_only = idempotent_only;
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
// (QosRejected, any reason) and on_errors (the callee's failures, transport errors and
// timeouts). Never a caller's own 4xx nor a cancellation (the decision table in fault.hpp).
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

// --- descriptions -----------------------------------------------------------------------
//
// Each kind described once (policy_description.hpp): the override reader, the bounds
// check, the summary and the PolicySet slot all follow from these tables. The bounds keep
// a live override from asking for absurd memory (a breaker window is one slot per call)
// or from overflowing deadline arithmetic:
//
//   durations                      [0, 24h]
//   retry.max_attempts             [0, 10]        multiplier [1, 100]
//   counts of calls (window,       [0, 100000]    budget_ratio [0, 1000]
//     minimum_calls, half_open)                   rates (failure_rate...) [0, 1]
//   rate_limit permits, burst      [0, 1e9]       adaptive backoff_ratio [0, 1]
//   bulkhead, adaptive limits      [0, 1e6]       adaptive tolerance [0, 100]
//   budget_min_per_second          [0, 1e6]       weight [-1e6, 1e6]
//
// (Zero passes the bounds where the policy's own check has a better message for it.)

inline constexpr Duration kMaxPolicyDuration = std::chrono::hours(24);
inline constexpr Duration kNoDuration = Duration::zero();

template <>
struct EnumNames<TimeoutMode> {
  static constexpr std::array values{EnumName<TimeoutMode>{"preemptive", TimeoutMode::preemptive},
                                     EnumName<TimeoutMode>{"deadline", TimeoutMode::deadline}};
};
template <>
struct EnumNames<Jitter> {
  static constexpr std::array values{EnumName<Jitter>{"none", Jitter::none},
                                     EnumName<Jitter>{"full", Jitter::full},
                                     EnumName<Jitter>{"equal", Jitter::equal}};
};
template <>
struct EnumNames<WindowType> {
  static constexpr std::array values{EnumName<WindowType>{"count", WindowType::count_based},
                                     EnumName<WindowType>{"time", WindowType::time_based}};
};
template <>
struct EnumNames<RateAlgorithm> {
  static constexpr std::array values{
      EnumName<RateAlgorithm>{"token_bucket", RateAlgorithm::token_bucket},
      EnumName<RateAlgorithm>{"leaky_bucket", RateAlgorithm::leaky_bucket}};
};

template <>
struct Description<timeout> {
  static constexpr std::string_view kind = "timeout";
  static constexpr int default_weight = weights::timeout;
  static constexpr bool summarized = true;
  static constexpr auto fields = std::tuple{
      bounded("per_attempt", &timeout::per_attempt, kNoDuration, kMaxPolicyDuration,
              "timeout: per_attempt must be in [0, 24h]")
          .in_summary("="),
      bounded("overall", &timeout::overall, kNoDuration, kMaxPolicyDuration,
              "timeout: overall must be in [0, 24h]")
          .in_summary("/", [](const timeout& t) { return t.overall > Duration::zero(); }),
      flag("mode", &timeout::mode),
      bounded("weight", &timeout::weight, -1'000'000, 1'000'000,
              "timeout: weight must be in [-1000000, 1000000]")};
};

template <>
struct Description<retry> {
  static constexpr std::string_view kind = "retry";
  static constexpr int default_weight = weights::retry;
  static constexpr bool summarized = true;
  static constexpr auto fields =
      std::tuple{bounded("max_attempts", &retry::max_attempts, 0U, 10U,
                         "retry: max_attempts must be in [0, 10]")
                     .in_summary("="),
                 bounded("base_backoff", &retry::base_backoff, kNoDuration, kMaxPolicyDuration,
                         "retry: base_backoff must be in [0, 24h]")
                     .in_summary("x"),
                 bounded("max_backoff", &retry::max_backoff, kNoDuration, kMaxPolicyDuration,
                         "retry: max_backoff must be in [0, 24h]"),
                 bounded("multiplier", &retry::multiplier, 1.0, 100.0,
                         "retry: multiplier must be in [1, 100]"),
                 flag("jitter", &retry::jitter),
                 flag("retry_transport_errors", &retry::retry_transport_errors),
                 flag("idempotent_only", &retry::idempotent_only),
                 flag("budget", &retry::budget).in_summary("+budget"),
                 bounded("budget_ratio", &retry::budget_ratio, 0.0, 1000.0,
                         "retry: budget_ratio must be in [0, 1000]"),
                 bounded("budget_min_per_second", &retry::budget_min_per_second, 0U, 1'000'000U,
                         "retry: budget_min_per_second must be in [0, 1000000]"),
                 bounded("budget_ttl", &retry::budget_ttl, kNoDuration, kMaxPolicyDuration,
                         "retry: budget_ttl must be in [0, 24h]"),
                 bounded("weight", &retry::weight, -1'000'000, 1'000'000,
                         "retry: weight must be in [-1000000, 1000000]")};
};

template <>
struct Description<circuit_breaker> {
  static constexpr std::string_view kind = "circuit_breaker";
  static constexpr int default_weight = weights::circuit_breaker;
  static constexpr bool summarized = true;
  static constexpr auto fields = std::tuple{
      bounded("failure_rate", &circuit_breaker::failure_rate, 0.0, 1.0,
              "circuit_breaker: failure_rate must be in [0, 1]")
          .in_summary("=", nullptr, true),
      bounded("slow_call_rate", &circuit_breaker::slow_call_rate, 0.0, 1.0,
              "circuit_breaker: slow_call_rate must be in [0, 1]"),
      bounded("slow_call", &circuit_breaker::slow_call, kNoDuration, kMaxPolicyDuration,
              "circuit_breaker: slow_call must be in [0, 24h]"),
      bounded("window", &circuit_breaker::window, 0U, 100'000U,
              "circuit_breaker: window must be in [0, 100000] calls")
          .in_summary(
              "/",
              [](const circuit_breaker& c) { return c.window_type == WindowType::count_based; }),
      flag("window_type", &circuit_breaker::window_type),
      bounded("window_duration", &circuit_breaker::window_duration, kNoDuration, kMaxPolicyDuration,
              "circuit_breaker: window_duration must be in [0, 24h]")
          .in_summary(
              "/",
              [](const circuit_breaker& c) { return c.window_type == WindowType::time_based; }),
      bounded("minimum_calls", &circuit_breaker::minimum_calls, 0U, 100'000U,
              "circuit_breaker: minimum_calls must be in [0, 100000]"),
      bounded("open_for", &circuit_breaker::open_for, kNoDuration, kMaxPolicyDuration,
              "circuit_breaker: open_for must be in [0, 24h]"),
      bounded("half_open_calls", &circuit_breaker::half_open_calls, 0U, 100'000U,
              "circuit_breaker: half_open_calls must be in [0, 100000]"),
      bounded("weight", &circuit_breaker::weight, -1'000'000, 1'000'000,
              "circuit_breaker: weight must be in [-1000000, 1000000]")};
};

template <>
struct Description<rate_limit> {
  static constexpr std::string_view kind = "rate_limit";
  static constexpr int default_weight = weights::rate_limit;
  static constexpr bool summarized = true;
  static constexpr auto fields = std::tuple{
      bounded("permits", &rate_limit::permits, std::uint64_t{0}, std::uint64_t{1'000'000'000},
              "rate_limit: permits must be in [0, 1000000000]")
          .in_summary("="),
      bounded("period", &rate_limit::period, kNoDuration, kMaxPolicyDuration,
              "rate_limit: period must be in [0, 24h]")
          .in_summary("/"),
      bounded("burst", &rate_limit::burst, std::uint64_t{0}, std::uint64_t{1'000'000'000},
              "rate_limit: burst must be in [0, 1000000000]"),
      flag("algorithm", &rate_limit::algorithm)
          .in_summary(
              "-", [](const rate_limit& r) { return r.algorithm == RateAlgorithm::leaky_bucket; }),
      flag("shape", &rate_limit::shape).in_summary("+shaped"),
      bounded("weight", &rate_limit::weight, -1'000'000, 1'000'000,
              "rate_limit: weight must be in [-1000000, 1000000]")};
};

template <>
struct Description<bulkhead> {
  static constexpr std::string_view kind = "bulkhead";
  static constexpr int default_weight = weights::bulkhead;
  static constexpr bool summarized = true;
  static constexpr auto fields =
      std::tuple{bounded("max_concurrent", &bulkhead::max_concurrent, 0U, 1'000'000U,
                         "bulkhead: max_concurrent must be in [0, 1000000]")
                     .in_summary("="),
                 bounded("max_queue", &bulkhead::max_queue, 0U, 1'000'000U,
                         "bulkhead: max_queue must be in [0, 1000000]")
                     .in_summary("+", [](const bulkhead& b) { return b.max_queue > 0; }),
                 bounded("max_wait", &bulkhead::max_wait, kNoDuration, kMaxPolicyDuration,
                         "bulkhead: max_wait must be in [0, 24h]"),
                 bounded("weight", &bulkhead::weight, -1'000'000, 1'000'000,
                         "bulkhead: weight must be in [-1000000, 1000000]")};
};

template <>
struct Description<adaptive_limit> {
  static constexpr std::string_view kind = "adaptive_limit";
  static constexpr int default_weight = weights::adaptive_limit;
  static constexpr bool summarized = true;
  static constexpr auto fields =
      std::tuple{bounded("initial_limit", &adaptive_limit::initial_limit, 0U, 1'000'000U,
                         "adaptive_limit: initial_limit must be in [0, 1000000]"),
                 bounded("min_limit", &adaptive_limit::min_limit, 0U, 1'000'000U,
                         "adaptive_limit: min_limit must be in [0, 1000000]")
                     .in_summary("="),
                 bounded("max_limit", &adaptive_limit::max_limit, 0U, 1'000'000U,
                         "adaptive_limit: max_limit must be in [0, 1000000]")
                     .in_summary(".."),
                 bounded("backoff_ratio", &adaptive_limit::backoff_ratio, 0.0, 1.0,
                         "adaptive_limit: backoff_ratio must be in [0, 1]"),
                 bounded("timeout", &adaptive_limit::timeout, kNoDuration, kMaxPolicyDuration,
                         "adaptive_limit: timeout must be in [0, 24h]"),
                 bounded("latency_target", &adaptive_limit::latency_target, kNoDuration,
                         kMaxPolicyDuration, "adaptive_limit: latency_target must be in [0, 24h]"),
                 bounded("tolerance", &adaptive_limit::tolerance, 0.0, 100.0,
                         "adaptive_limit: tolerance must be in [0, 100]"),
                 bounded("baseline_window", &adaptive_limit::baseline_window, kNoDuration,
                         kMaxPolicyDuration, "adaptive_limit: baseline_window must be in [0, 24h]"),
                 bounded("weight", &adaptive_limit::weight, -1'000'000, 1'000'000,
                         "adaptive_limit: weight must be in [-1000000, 1000000]")};
};

template <>
struct Description<log> {
  static constexpr std::string_view kind = "log";
  static constexpr int default_weight = weights::log;
  static constexpr bool summarized = true;
  static constexpr auto fields = std::tuple{bounded("weight", &log::weight, -1'000'000, 1'000'000,
                                                    "log: weight must be in [-1000000, 1000000]")};
};

template <>
struct Description<metrics> {
  static constexpr std::string_view kind = "metrics";
  static constexpr int default_weight = weights::metrics;
  static constexpr bool summarized = false;  // reporting, not behaviour
  static constexpr auto fields =
      std::tuple{bounded("weight", &metrics::weight, -1'000'000, 1'000'000,
                         "metrics: weight must be in [-1000000, 1000000]")};
};

// --- per-policy checks ------------------------------------------------------------------

// Each kind's check: its fields' bounds first (so an absurd value is named as such), then
// what the values must satisfy together.
constexpr std::string_view validate(const timeout& t) noexcept {
  if (auto e = check_bounds(t); !e.empty()) {
    return e;
  }
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
  if (auto e = check_bounds(r); !e.empty()) {
    return e;
  }
  if (auto e = validate(r.config()); !e.empty()) {
    return e;
  }
  return r.budget ? validate(r.budget_config()) : std::string_view{};
}

constexpr std::string_view validate(const circuit_breaker& c) noexcept {
  const std::string_view bounds = check_bounds(c);
  return bounds.empty() ? validate(c.config()) : bounds;
}

constexpr std::string_view validate(const rate_limit& r) noexcept {
  if (r.shape && r.algorithm != RateAlgorithm::leaky_bucket) {
    return "rate limit: shape needs algorithm = leaky_bucket (a token bucket does not queue)";
  }
  if (auto e = check_bounds(r); !e.empty()) {
    return e;
  }
  return r.algorithm == RateAlgorithm::token_bucket ? validate(r.token_bucket_config())
                                                    : validate(r.leaky_bucket_config());
}

constexpr std::string_view validate(const bulkhead& b) noexcept {
  const std::string_view bounds = check_bounds(b);
  return bounds.empty() ? validate(b.config()) : bounds;
}

constexpr std::string_view validate(const adaptive_limit& a) noexcept {
  const std::string_view bounds = check_bounds(a);
  return bounds.empty() ? validate(a.config()) : bounds;
}

template <class T>
constexpr std::string_view validate(const fallback<T>& f) noexcept {
  if (!f.on_rejections && !f.on_errors) {
    return "fallback: answers neither rejections nor errors, so it never applies";
  }
  return {};
}

constexpr std::string_view validate(const log& l) noexcept {
  return check_bounds(l);
}
constexpr std::string_view validate(const metrics& m) noexcept {
  return check_bounds(m);
}

// The weight a policy will run at.
template <class P>
constexpr int effective_weight(const P& p) noexcept {
  if (p.weight != 0) {
    return p.weight;
  }
  using T = std::remove_cvref_t<P>;
  if constexpr (is_fallback<T>::value) {
    return weights::fallback;
  } else {
    return Description<T>::default_weight;
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

  // Every slot, in default chain order (outermost first): what the generic code
  // (summary, checks, overrides) iterates over.
  constexpr auto slots() noexcept {
    return std::tie(log_policy, retry_policy, breaker_policy, rate_limit_policy, timeout_policy,
                    bulkhead_policy, adaptive_policy, metrics_policy);
  }
  constexpr auto slots() const noexcept {
    return std::tie(log_policy, retry_policy, breaker_policy, rate_limit_policy, timeout_policy,
                    bulkhead_policy, adaptive_policy, metrics_policy);
  }

  // Sets the slot of P's kind; a fallback (never part of a set) is ignored.
  template <class P>
  constexpr void set(const P& p) noexcept {
    if constexpr (!is_fallback<P>::value) {
      std::get<std::optional<P>&>(slots()) = p;
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
  std::apply(
      [&error](const auto&... slot) {
        ((error = !error.empty() || !slot ? error : validate(*slot)), ...);
      },
      set.slots());
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
  const bool kind_twice = std::apply(
      [](const auto&... slot) {
        return (
            (L::template count<typename std::remove_cvref_t<decltype(slot)>::value_type>() > 1) ||
            ...);
      },
      PolicySet{}.slots());
  if (kind_twice || L::fallback_count() > 1) {
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
