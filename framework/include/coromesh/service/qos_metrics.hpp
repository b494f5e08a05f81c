#pragma once

// The metrics of the declared operations' QoS, one set per service, both sides:
//
//   coromesh_qos_calls_total{operation,side,result}                   counter
//       result: ok | error | caller_error — an attempt that reached the call, as the
//               chain's innermost point saw it: error is a failure that counts against
//               the callee (a 5xx, a handler's exception, no answer, a timeout),
//               caller_error a 4xx, the caller's own fault (bad input), kept out of
//               error so that bad input does not raise an error rate; rejected — a call
//               a QoS policy of this side refused, or (client side) one that never left
//               for want of Consul's answer or this service's own leaf, or that the callee
//               refused with 429 (its rate limit: the callee's refusal, not the caller's
//               error); cancelled — an attempt its caller
//               gave up (a server drain cutting a request off, a caller cancelling its
//               call): nobody's failure (qos::CallObserver::Result)
//   coromesh_qos_call_duration_seconds{operation,side}                histogram (attempts)
//   coromesh_qos_rejections_total{operation,side,policy,reason}       counter
//       refusals by this side's own policies only: a refusal with no policy of ours
//       behind it (no answer from Consul, a callee's 429) is in calls_total alone; the
//       callee counts its 429 here itself (side="server", policy="rate_limit")
//   coromesh_qos_circuit_breaker_state{operation,side,state}          gauge, 1 for the
//       current state of closed | open | half_open, 0 for the others
//   coromesh_qos_concurrency_limit{operation,side}                    gauge (adaptive)
//   coromesh_qos_bulkhead_in_use{operation,side}                      gauge
//
// `side` is "server" (Service::serve) or "client" (Service::client). A preemptive
// timeout that cuts an attempt off shows as that attempt's error and as a
// deadline_exceeded rejection. The gauges are read from the running policy objects at
// each scrape, so a live override that replaces an object is followed without
// re-registration. Rejections are also logged (`qos.rejected`, warn), rate limited per
// operation, side, policy and reason (log::write_limited): the counter is exact, the log
// shows a sample and how many lines it left out.
//
// Counting is lock-free on the call path (per-thread shards, summed at scrape); the
// first rejection of a new (policy, reason) pair takes a mutex once.
//
// Threads: hooks and observers are called on io threads, concurrently; observer(),
// rejection_hook() and export_state() may be called from any thread. One operation side
// has one set of series: asking again for the same (operation, side) returns the same
// counters, and export_state() replaces that side's state source.

#include <functional>
#include <memory>
#include <string>

#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/policy_runtime.hpp"

namespace coromesh::metrics {
class MetricsRegistry;
}

namespace coromesh {

class QosMetrics {
 public:
  explicit QosMetrics(metrics::MetricsRegistry& registry);
  ~QosMetrics();
  QosMetrics(const QosMetrics&) = delete;
  QosMetrics& operator=(const QosMetrics&) = delete;

  // The chain's rejection hook for one operation side: counts the rejection (and the
  // call, as result="rejected") and logs it.
  qos::RejectionHook rejection_hook(const std::string& operation, const std::string& side);

  // The MetricsInterceptor observer for one operation side.
  std::shared_ptr<qos::CallObserver> observer(const std::string& operation,
                                              const std::string& side);

  // Exports the state gauges of one operation side, read through `objects` at each scrape.
  void export_state(const std::string& operation, const std::string& side,
                    std::function<std::shared_ptr<const qos::PolicyObjects>()> objects);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace coromesh
