#pragma once

// The QoS policies as declaration values: literal types a declaration lists, checked at
// compile time, turned into a running chain by the framework (policy_runtime.hpp).
// The kinds themselves are in policy_kinds.hpp, their field tables (bounds, override
// names, summary) in policy_fields.hpp.
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
//                     idempotent_only        true (a POST only when nothing reached
//                                            the callee: qos/fault.hpp's not_delivered)
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

#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/policy_fields.hpp"
#include "coromesh/qos/policy_kinds.hpp"

namespace coromesh::qos {

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
  if (!f.on_rejections && !f.reasons.empty()) {
    return "fallback: only_for names refusals, but on_rejections is off";
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
