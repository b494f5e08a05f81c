#pragma once

// Each kind described once (field_table.hpp has the machinery): the override reader,
// the bounds check, the summary and the PolicySet slot all follow from these tables.
// The bounds keep a live override from asking for absurd memory (a breaker window is
// one slot per call) or from overflowing deadline arithmetic:
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

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <tuple>

#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/field_table.hpp"
#include "coromesh/qos/policy_kinds.hpp"

namespace coromesh::qos {

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
      // In the summary too (",min=20,open=30s"): without them two breakers that open
      // after very different numbers of calls, or stay open very differently long, read
      // alike in Meta.
      bounded("minimum_calls", &circuit_breaker::minimum_calls, 0U, 100'000U,
              "circuit_breaker: minimum_calls must be in [0, 100000]")
          .in_summary(",min="),
      bounded("open_for", &circuit_breaker::open_for, kNoDuration, kMaxPolicyDuration,
              "circuit_breaker: open_for must be in [0, 24h]")
          .in_summary(",open="),
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

}  // namespace coromesh::qos
