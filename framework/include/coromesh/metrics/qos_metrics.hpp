#pragma once

// The metrics of the declared operations' QoS, one set per service:
//
//   coromesh_qos_rejections_total{operation,policy,reason}            counter
//   coromesh_qos_calls_total{operation,side,result}                   counter
//       result: ok | error | rejected (as the chain's innermost point saw it)
//   coromesh_qos_call_duration_seconds{operation,side}                histogram
//   coromesh_qos_circuit_breaker_state{operation,side,state}          gauge, 1 for the
//       current state of closed | open | half_open, 0 for the others
//   coromesh_qos_concurrency_limit{operation,side}                    gauge (adaptive)
//   coromesh_qos_bulkhead_in_use{operation,side}                      gauge
//
// The gauges are read from the running policy objects at each scrape, so a live override
// that replaces an object is followed without re-registration. Every rejection is also
// logged once (`qos.rejected`, warn) with the operation, policy and reason.
//
// Threads: rejection hooks and observers are called on io threads, concurrently;
// registration (rejection_hook, observer, export_state) belongs at start-up.

#include <functional>
#include <memory>
#include <string>

#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/policy_runtime.hpp"

namespace coromesh::metrics {

class MetricsRegistry;

class QosMetrics {
 public:
  explicit QosMetrics(MetricsRegistry& registry);
  ~QosMetrics();
  QosMetrics(const QosMetrics&) = delete;
  QosMetrics& operator=(const QosMetrics&) = delete;

  // The chain's rejection hook for one operation side (`side` is "server" or "client";
  // it goes to the log line, the counter keeps the three labels of the design).
  qos::RejectionHook rejection_hook(std::string operation, std::string side);

  // The MetricsInterceptor observer for one operation side.
  std::shared_ptr<qos::CallObserver> observer(const std::string& operation,
                                              const std::string& side);

  // Exports the state gauges of one operation side, read through `objects` at each scrape.
  void export_state(std::string operation, std::string side,
                    std::function<std::shared_ptr<const qos::PolicyObjects>()> objects);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace coromesh::metrics
