#pragma once

// The sidecar's metric families (coromesh_sidecar_*), on the service's registry so that
// the admin port's /metrics serves them next to the process and HTTP families:
//
//   coromesh_sidecar_inbound_connections_active / _total
//   coromesh_sidecar_upstream_connections_active{upstream} / _total{upstream}
//   coromesh_sidecar_bytes_total{listener,direction}   direction: from_client | to_client
//   coromesh_sidecar_handshakes_total{listener,result,reason}
//   coromesh_sidecar_authorization_denials_total{source}
//   coromesh_sidecar_upstream_connect_failures_total{upstream,reason}  an endpoint not
//     reached (or none to try), by a fixed vocabulary (proxy/README.md), both modes
//   coromesh_sidecar_upstream_connect_duration_seconds{upstream}  (TCP + TLS + checks)
//   coromesh_sidecar_upstream_requests_total{upstream,code}  http mode: 2xx … 5xx, or
//     "local" for an answer the sidecar made itself (no endpoint, every attempt failed);
//     4xx also counts a client that hung up mid-request (the 499 of the framework)
//   coromesh_sidecar_upstream_retries_total{upstream}        http mode
//   coromesh_sidecar_inbound_requests_total{code}            http mode, as upstream_requests
//   coromesh_sidecar_request_duration_seconds{listener}      http mode: request read to
//     answer ready, retries included
//   coromesh_sidecar_request_failures_total{listener,fault}  http mode: requests that
//     failed, by whose fault, as the framework classifies the same error
//     (service/fault_classifier.hpp): timeout (a deadline or route timeout passed: 504),
//     transport (nothing reached, or the answer lost: the connection closed before or
//     while answering: 502/503), callee_failure (a 5xx answer, or one that is not HTTP),
//     caller_error (a request the sidecar refused as it came: malformed, too large, a
//     framing it cannot pass on; answered 400, 413, 431 or 501 by the sidecar itself,
//     counted as code="local" too; a callee's 4xx passed on is not counted), rejected (a
//     429 answer, passed on as it came: the callee's limit refused, as a coromesh caller
//     counts it; a request whose caller's deadline was spent when it came: refused, 504,
//     as a coromesh service refuses it; not the callee's timeout; or that never left for
//     want of Consul's first answer or of the sidecar's own leaf: 503, as the framework
//     counts discovery_unavailable and identity_unavailable), cancelled (in flight when
//     the drain's grace ran out, or its client hung up: nobody's failure)
//   coromesh_sidecar_upstream_endpoints{upstream}, coromesh_sidecar_leaf_expiry_timestamp_seconds,
//   coromesh_sidecar_tls_material_generation (read at scrape time, see SidecarGauges)
//
// `listener` is "inbound" or the upstream's service name. Handles are looked up once
// per listener (ListenerMetrics), never per connection, and the byte counters are added
// to in chunks (see pump.hpp), so the hot path touches no map and no lock.
//
// Threads: any; prometheus-cpp metrics are atomic.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <array>
#include <functional>
#include <memory>
#include <string>

#include "coromesh/metrics/registry.hpp"
#include "coromesh/qos/fault.hpp"
#include "coromesh/qos/reason.hpp"

namespace coromesh::sidecar {

// The handles one listener uses.
// http mode: failures by class (see the family above).
struct FaultCounters {
  prometheus::Counter* timeout = nullptr;
  prometheus::Counter* transport = nullptr;
  prometheus::Counter* callee_failure = nullptr;
  // Refused as it came (http_exchange.hpp refusal_of): the caller's error.
  prometheus::Counter* caller_error = nullptr;
  // Cancelled in flight: the drain's grace ran out (this sidecar's shutdown), or the
  // client hung up (its caller gave up); nobody's fault, as the framework counts both.
  prometheus::Counter* cancelled = nullptr;
  // Refused before anything was tried (a deadline spent on arrival, http_exchange.hpp),
  // or by the callee's limit (a 429 passed on, count_answer).
  prometheus::Counter* rejected = nullptr;

  // The counter of a fault the framework classified (qos/fault.hpp).
  prometheus::Counter* of(qos::FaultClass kind) const noexcept;
  // Counts an answer passed on as it came, by the class the framework gives its status
  // (service/fault_classifier.hpp classify_error_status): a 5xx callee_failure, a 429
  // rejected (the callee's limit refused), nothing for the rest. Another 4xx is the
  // request's own error, which the callee said and the caller reads; `caller_error` is
  // kept for what the sidecar refused itself as it came.
  void count_answer(unsigned status) const noexcept;
};

struct ListenerMetrics {
  std::string listener;
  prometheus::Gauge* active = nullptr;
  prometheus::Counter* total = nullptr;
  prometheus::Counter* bytes_from_client = nullptr;
  prometheus::Counter* bytes_to_client = nullptr;
  prometheus::Histogram* connect_duration = nullptr;  // upstream listeners only
  // http-mode upstreams: requests answered by status class (index status / 100, 0 for
  // answers the sidecar made up itself, e.g. 502 with no endpoint), retries made.
  std::array<prometheus::Counter*, 6> requests_by_class{};
  prometheus::Counter* retries = nullptr;
  prometheus::Histogram* request_duration = nullptr;
  FaultCounters faults;

  // http mode: counts one request the sidecar refused as it came (ExchangeControl::refused):
  // code="local", fault="caller_error".
  std::function<void()> refusal_counter() const;
  // http mode: counts one request whose client hung up while it was being forwarded
  // (ExchangeControl::hung_up): code="4xx", as the 499 the framework's server counts for
  // the same (no answer is sent). The forward counts its cancellation (fault="cancelled").
  std::function<void()> hang_up_counter() const;
  // http mode: counts one request refused before anything was tried (a deadline spent on
  // arrival, http_exchange.hpp), by the fault class the framework gives the refusal
  // (qos::classify_fault): code="local", fault="rejected"; and logs it, rate limited.
  void count_refusal(const qos::QosRejected& refusal) const;
};

class SidecarMetrics {
 public:
  explicit SidecarMetrics(metrics::MetricsRegistry& registry);

  ListenerMetrics inbound();
  ListenerMetrics upstream(const std::string& service);

  void handshake(const std::string& listener, std::string_view result, std::string_view reason);
  void authorization_denied(std::string_view source);
  void upstream_connect_failure(const std::string& upstream, std::string_view reason);

 private:
  prometheus::Family<prometheus::Gauge>& inbound_active_;
  prometheus::Family<prometheus::Counter>& inbound_total_;
  prometheus::Family<prometheus::Gauge>& upstream_active_;
  prometheus::Family<prometheus::Counter>& upstream_total_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Family<prometheus::Counter>& handshakes_;
  prometheus::Family<prometheus::Counter>& denials_;
  prometheus::Family<prometheus::Counter>& connect_failures_;
  prometheus::Family<prometheus::Histogram>& connect_duration_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& inbound_requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Counter>& request_failures_;

  void add_http_handles(ListenerMetrics& metrics);
};

}  // namespace coromesh::sidecar
