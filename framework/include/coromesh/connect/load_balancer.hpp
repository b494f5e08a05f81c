#pragma once

// Chooses an endpoint of an EndpointSet for each call (or connection) and learns from
// how it went.
//
//   auto pick = balancer.pick(watch.snapshot());
//   if (!pick) { /* no endpoint */ }
//   ... dial pick.endpoint().address:port, verify its certificate names
//       pick.endpoint().service ...
//   pick.done(elapsed, Outcome::success);
//
// Policies:
// - round_robin: each endpoint in turn; exact over any run of picks while the candidates
//   stay the same.
// - least_request: the endpoint with the fewest calls in flight; ties rotate. A scan of
//   the whole set, which is small (tens of endpoints).
// - p2c_ewma: two candidates drawn at random, the cheaper one wins (Finagle's and
//   Linkerd's peak EWMA): cost = latency estimate × (in flight + 1). The estimate jumps
//   to any slower sample at once (peak) and otherwise moves toward new samples with a
//   weight that grows with the time since the last one (decay time `ewma_decay`); an
//   endpoint that is not measured decays toward 0, so a once-slow endpoint is probed
//   again later. An endpoint never measured costs 0 while idle and a prohibitive penalty
//   while busy: new endpoints get one probe at a time until their first answer.
//
// Outcomes: `success` and `callee_failure` (it answered, with an error) are latency
// samples; `connect_failure` (no connection, nothing measured) is not. Both failures
// count toward outlier ejection, success resets the count. A Pick destroyed without
// done() — the call was cancelled — is nobody's fault: it only leaves the in-flight
// count.
//
// Outlier ejection (Envoy's consecutive_5xx with local-origin errors folded in): after
// `consecutive_failures` failures in a row an endpoint is ejected for
// base_ejection_time × (its number of ejections), at most max_ejection_time; the count
// starts over once an endpoint has gone max_ejection_time without being ejected. An
// endpoint is ejected only while fewer than max_ejection_percent of the set are (Envoy's
// rule: with 2 endpoints and 50%, one can be ejected). Ejected endpoints are skipped
// unless every candidate is ejected (then all of them are candidates again: better a
// doubtful endpoint than none). Returning from ejection is passive: once its time is
// up the endpoint is a candidate again, with a fresh failure count (failures of calls
// that were out when it was ejected are counted as failures, not toward a streak).
//
// State: each endpoint's counters and estimates are kept by Endpoint::key, and survive
// snapshot changes for endpoints that stay; endpoints that leave are forgotten (a Pick
// still out on one keeps its state alive until done).
//
// Threads: pick(), done() and endpoint_stats() may be called from any thread
// concurrently. The per-endpoint state is atomics; the hot path takes no mutex. A new
// snapshot is indexed once, under a mutex, by the first pick() that sees it (a reader
// still passing an older snapshot than the newest is served, but re-indexed under that
// mutex at each pick: pass the watch's current snapshot); ejection decisions (rare) take
// another. The current index is read through an AtomicSnapshot: a spin flag held for a
// reference-count increment, never a sleeping lock.
// Picks keep the balancer's state alive: a Pick may outlive its LoadBalancer.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/connect/endpoint_set.hpp"
#include "coromesh/qos/clock.hpp"

namespace coromesh::connect {

enum class BalancePolicy : std::uint8_t { round_robin, least_request, p2c_ewma };
std::string_view to_string(BalancePolicy policy) noexcept;
// Reads a policy by its to_string() name; false (and `out` untouched) for anything else.
bool parse_balance_policy(std::string_view text, BalancePolicy& out) noexcept;

// How a picked call ended, from the balancer's point of view.
enum class Outcome : std::uint8_t {
  success,          // answered, and not the callee's fault if it was an error (4xx)
  callee_failure,   // answered with the callee's failure (5xx, reset mid-call, timeout)
  connect_failure,  // could not connect or handshake: nothing reached the callee
};

struct OutlierEjection {
  std::uint32_t consecutive_failures = 5;  // 0: never eject
  std::chrono::milliseconds base_ejection_time = std::chrono::seconds(30);
  std::chrono::milliseconds max_ejection_time = std::chrono::seconds(300);
  std::uint32_t max_ejection_percent = 50;
};

struct LoadBalancerOptions {
  BalancePolicy policy = BalancePolicy::round_robin;
  std::chrono::milliseconds ewma_decay = std::chrono::seconds(10);  // p2c_ewma only
  OutlierEjection ejection;
  std::uint64_t seed = 0;  // p2c_ewma's random draws; 0: from std::random_device
  // Ejection times and latency decay; a test passes a qos::ManualClock. Must outlive the
  // balancer and its picks.
  const qos::Clock* clock = &qos::Clock::steady();
};

namespace detail {
struct EndpointState;
struct BalancerCore;
}  // namespace detail

// One picked endpoint, until done() or destruction. Move-only; not for concurrent use
// (one call owns it), but it may be finished on another thread than the one that picked.
class Pick {
 public:
  Pick() noexcept;
  Pick(Pick&&) noexcept;
  Pick& operator=(Pick&&) noexcept;
  ~Pick();  // abandons the pick if done() was not called

  explicit operator bool() const noexcept { return endpoint_ != nullptr; }
  // Valid while this Pick lives (it keeps its snapshot alive).
  const Endpoint& endpoint() const noexcept { return *endpoint_; }

  // Records the call's outcome; `latency` from the pick to the answer. Once; afterwards
  // this Pick is empty.
  void done(std::chrono::nanoseconds latency, Outcome outcome) noexcept;

 private:
  friend class LoadBalancer;
  Pick(std::shared_ptr<const Endpoint> endpoint, std::shared_ptr<detail::EndpointState> state,
       std::shared_ptr<detail::BalancerCore> core) noexcept;
  void release() noexcept;

  std::shared_ptr<const Endpoint> endpoint_;  // aliases its snapshot
  std::shared_ptr<detail::EndpointState> state_;
  std::shared_ptr<detail::BalancerCore> core_;
};

// What a /metrics handler needs per endpoint, read without stopping traffic (each value
// is read atomically, the set of them is not one instant).
struct EndpointStats {
  std::string key;
  std::string address;
  std::uint16_t port = 0;
  std::uint32_t in_flight = 0;
  std::uint64_t picks = 0;
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;  // callee and connect failures
  bool ejected = false;
  std::uint32_t ejections = 0;                   // times ejected (in the current streak)
  std::chrono::nanoseconds latency_estimate{0};  // p2c_ewma's current estimate
};

class LoadBalancer {
 public:
  explicit LoadBalancer(LoadBalancerOptions options = {});
  ~LoadBalancer();
  LoadBalancer(const LoadBalancer&) = delete;
  LoadBalancer& operator=(const LoadBalancer&) = delete;

  BalancePolicy policy() const noexcept;

  // An endpoint of `snapshot` by the policy, skipping ejected ones and those whose key
  // is in `excluding` (the endpoints a retry has already tried). Empty when the snapshot
  // is null or empty or every endpoint is excluded; to retry the same endpoint anyway,
  // pick again without exclusions.
  Pick pick(const std::shared_ptr<const EndpointSet>& snapshot,
            std::span<const std::string> excluding = {});

  // Indexes `snapshot` now rather than at the next pick(), so that endpoint_stats()
  // follows it even without traffic. pick() does this by itself.
  void update(const std::shared_ptr<const EndpointSet>& snapshot);

  // The endpoints of the newest snapshot seen, in its order.
  std::vector<EndpointStats> endpoint_stats() const;

 private:
  std::shared_ptr<detail::BalancerCore> core_;
};

}  // namespace coromesh::connect
