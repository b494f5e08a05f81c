#pragma once

// From declared policies (a PolicySet) to running policy objects, and the two text
// forms of a PolicySet: the one-line summary a service publishes in its Consul `Meta`,
// and the JSON of a live override read from Consul KV.
//
// Override document (the value of `coromesh/qos/<service>/<operation>`): an object with
// one member per policy kind to change; each member is an object of the fields to change
// (the others keep their declared values), or null to switch that kind off. Durations are
// strings with a unit ("250ms", "1s"). Unknown kinds or fields, wrong types and values
// that fail the declaration checks are refused as a whole.
//
//   {"rate_limit": {"permits": 10, "period": "1s"},
//    "timeout": {"per_attempt": "50ms"},
//    "retry": null}
//
// Fields, by kind: the fields of each kind's Description in policy_fields.hpp, under the
// names of the policy structs' members, each within its bounds there (durations at most 24h,
// a breaker window at most 100000 calls, ...). Enums by name: timeout.mode
// ("preemptive" | "deadline"), retry.jitter ("none" | "full" | "equal"),
// circuit_breaker.window_type ("count" | "time"), rate_limit.algorithm ("token_bucket" |
// "leaky_bucket"). retry.retry_on is declaration-only: a document naming it is refused
// with that reason (and 429 is never retryable: retry.hpp).
//
// Refusals name what is wrong: "rate_limit.period: expected a duration string ...",
// "circuit_breaker: window must be in [0, 100000] calls", "not valid JSON: ...".

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/metrics_interceptor.hpp"
#include "coromesh/qos/policies.hpp"

namespace coromesh::qos {

// The running objects of one side of one operation. Immutable once built; shared by
// every call that started while it was current. The policy objects are shared with the
// next build too (an override's): a later build may reconfigure them in place.
struct PolicyObjects {
  PolicySet spec;
  std::shared_ptr<CircuitBreaker> breaker;
  std::shared_ptr<TokenBucket> token_bucket;
  std::shared_ptr<LeakyBucket> leaky_bucket;
  std::shared_ptr<Bulkhead> bulkhead;
  std::shared_ptr<AdaptiveLimit> adaptive;
  std::shared_ptr<RetryBudget> budget;
  // The chain's interceptors, unordered (the chain sorts them), fallback excluded.
  std::vector<std::shared_ptr<Interceptor>> interceptors;
};

struct BuildOptions {
  const Clock* clock = nullptr;              // nullptr: Clock::steady()
  std::shared_ptr<CallObserver> observer{};  // set: every call is reported (metrics)
  FaultClassifier classify = nullptr;        // whose fault a fault is; nullptr: classify_fault
};

// Builds the objects for `spec`. Policy objects whose declaration did not change are
// taken over from `previous` (so changing the rate limit keeps the breaker's window and
// the bulkhead's in-flight count). A circuit breaker, a rate limiter (of the same
// algorithm), a bulkhead or an adaptive limit still declared is taken over even when its
// declaration changed, and reconfigured in place (CircuitBreaker::reconfigure,
// TokenBucket::reconfigure, LeakyBucket::reconfigure, Bulkhead::reconfigure,
// AdaptiveLimit::reconfigure): an OPEN breaker stays open, tokens spent stay spent, a leaky
// bucket keeps its level, and the calls in flight on `previous`'s chain keep counting
// against a new concurrency limit, so a shrink admits nothing new until they drop below
// it, and a grow admits queued calls at once. A rate limit switched to the other algorithm
// gets a new limiter. Throws std::invalid_argument with validate(spec)'s message when the
// set cannot work (and then changes nothing in `previous`).
std::shared_ptr<const PolicyObjects> build_policies(const PolicySet& spec,
                                                    const PolicyObjects* previous,
                                                    const BuildOptions& options);

// "timeout=100ms retry=3x25ms circuit_breaker=50%/100,min=100,open=1m rate_limit=5000/1s
// ...": every kind present, in default chain order; empty for an empty set. A circuit
// breaker reads <failure_rate>/<window: calls, or a duration for a time window>,
// min=<minimum_calls>,open=<open_for>. At most 512 characters (Consul's limit for a Meta
// value).
std::string summarize(const PolicySet& set);

// `base` with the override document applied (format above). Throws std::invalid_argument
// naming the kind and field at fault; `base` is never changed. Where a retry without
// the declaration's opt-in (qos::retry{.non_idempotent = true}) could never retry
// (`retries_without_opt_in` false: the server side of a POST or PATCH, whose handler ran
// whatever failed), one is refused, as at compile time: anything else would be a retry
// that never retries, shown in Meta all the same. (A client's retry on a POST does retry:
// a request that never reached the callee, qos/fault.hpp.)
PolicySet apply_override(const PolicySet& base, std::string_view document,
                         bool retries_without_opt_in = true);

}  // namespace coromesh::qos
