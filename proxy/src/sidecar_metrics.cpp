#include "sidecar_metrics.hpp"

#include <prometheus/registry.h>

#include <exception>

#include "coromesh/log/logger.hpp"
#include "coromesh/service/fault_classifier.hpp"

namespace coromesh::sidecar {

namespace {

// 0.5 ms .. 2.5 s: a loopback TLS connect is ~1 ms, a remote one tens of ms.
prometheus::Histogram::BucketBoundaries connect_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5};
}

// 1 ms .. 10 s: a loopback request is about a millisecond; route timeouts go to seconds.
prometheus::Histogram::BucketBoundaries request_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
}

}  // namespace

SidecarMetrics::SidecarMetrics(metrics::MetricsRegistry& registry)
    : inbound_active_(prometheus::BuildGauge()
                          .Name("coromesh_sidecar_inbound_connections_active")
                          .Help("Connections open on the public mTLS listener.")
                          .Register(*registry.prometheus_registry())),
      inbound_total_(prometheus::BuildCounter()
                         .Name("coromesh_sidecar_inbound_connections_total")
                         .Help("Connections accepted on the public mTLS listener.")
                         .Register(*registry.prometheus_registry())),
      upstream_active_(prometheus::BuildGauge()
                           .Name("coromesh_sidecar_upstream_connections_active")
                           .Help("Connections open on an upstream listener.")
                           .Register(*registry.prometheus_registry())),
      upstream_total_(prometheus::BuildCounter()
                          .Name("coromesh_sidecar_upstream_connections_total")
                          .Help("Connections accepted on an upstream listener.")
                          .Register(*registry.prometheus_registry())),
      bytes_(prometheus::BuildCounter()
                 .Name("coromesh_sidecar_bytes_total")
                 .Help("Bytes proxied, by listener and direction.")
                 .Register(*registry.prometheus_registry())),
      handshakes_(prometheus::BuildCounter()
                      .Name("coromesh_sidecar_handshakes_total")
                      .Help("TLS handshakes and peer checks, by result and refusal reason.")
                      .Register(*registry.prometheus_registry())),
      denials_(prometheus::BuildCounter()
                   .Name("coromesh_sidecar_authorization_denials_total")
                   .Help("Inbound peers refused by the intentions, by decision source.")
                   .Register(*registry.prometheus_registry())),
      connect_failures_(prometheus::BuildCounter()
                            .Name("coromesh_sidecar_upstream_connect_failures_total")
                            .Help("Upstream endpoint attempts that failed, by reason.")
                            .Register(*registry.prometheus_registry())),
      connect_duration_(prometheus::BuildHistogram()
                            .Name("coromesh_sidecar_upstream_connect_duration_seconds")
                            .Help("Time to a verified mTLS connection to an upstream endpoint.")
                            .Register(*registry.prometheus_registry())),
      requests_(prometheus::BuildCounter()
                    .Name("coromesh_sidecar_upstream_requests_total")
                    .Help("http-mode upstream requests answered, by status class.")
                    .Register(*registry.prometheus_registry())),
      retries_(prometheus::BuildCounter()
                   .Name("coromesh_sidecar_upstream_retries_total")
                   .Help("http-mode upstream requests sent again to another endpoint.")
                   .Register(*registry.prometheus_registry())),
      inbound_requests_(prometheus::BuildCounter()
                            .Name("coromesh_sidecar_inbound_requests_total")
                            .Help("http-mode requests on the public listener answered, by "
                                  "status class.")
                            .Register(*registry.prometheus_registry())),
      request_duration_(prometheus::BuildHistogram()
                            .Name("coromesh_sidecar_request_duration_seconds")
                            .Help("http mode: from a request read to its answer, retries "
                                  "included.")
                            .Register(*registry.prometheus_registry())),
      request_failures_(prometheus::BuildCounter()
                            .Name("coromesh_sidecar_request_failures_total")
                            .Help("http-mode requests that failed, by whose fault.")
                            .Register(*registry.prometheus_registry())) {}

void SidecarMetrics::add_http_handles(ListenerMetrics& metrics) {
  const auto& listener = metrics.listener;
  metrics.request_duration = &request_duration_.Add({{"listener", listener}}, request_buckets());
  metrics.faults = {
      .timeout = &request_failures_.Add({{"listener", listener}, {"fault", "timeout"}}),
      .transport = &request_failures_.Add({{"listener", listener}, {"fault", "transport"}}),
      .callee_failure =
          &request_failures_.Add({{"listener", listener}, {"fault", "callee_failure"}}),
      .caller_error = &request_failures_.Add({{"listener", listener}, {"fault", "caller_error"}}),
      .cancelled = &request_failures_.Add({{"listener", listener}, {"fault", "cancelled"}}),
      .rejected = &request_failures_.Add({{"listener", listener}, {"fault", "rejected"}})};
}

prometheus::Counter* FaultCounters::of(qos::FaultClass kind) const noexcept {
  switch (kind) {
    case qos::FaultClass::caller_error:
      return caller_error;
    case qos::FaultClass::callee_failure:
      return callee_failure;
    case qos::FaultClass::transport:
      return transport;
    case qos::FaultClass::timeout:
      return timeout;
    case qos::FaultClass::cancelled:
      return cancelled;
    case qos::FaultClass::rejected:
      return rejected;
  }
  return callee_failure;
}

void FaultCounters::count_answer(unsigned status) const noexcept {
  if (status < 400) {
    return;
  }
  const auto kind = classify_error_status(status).kind;
  if (kind != qos::FaultClass::caller_error) {
    of(kind)->Increment();
  }
}

ListenerMetrics SidecarMetrics::inbound() {
  ListenerMetrics metrics{
      .listener = "inbound",
      .active = &inbound_active_.Add({}),
      .total = &inbound_total_.Add({}),
      .bytes_from_client = &bytes_.Add({{"listener", "inbound"}, {"direction", "from_client"}}),
      .bytes_to_client = &bytes_.Add({{"listener", "inbound"}, {"direction", "to_client"}}),
      .requests_by_class = {
          &inbound_requests_.Add({{"code", "local"}}), &inbound_requests_.Add({{"code", "1xx"}}),
          &inbound_requests_.Add({{"code", "2xx"}}), &inbound_requests_.Add({{"code", "3xx"}}),
          &inbound_requests_.Add({{"code", "4xx"}}), &inbound_requests_.Add({{"code", "5xx"}})}};
  add_http_handles(metrics);
  return metrics;
}

ListenerMetrics SidecarMetrics::upstream(const std::string& service) {
  ListenerMetrics metrics{
      .listener = service,
      .active = &upstream_active_.Add({{"upstream", service}}),
      .total = &upstream_total_.Add({{"upstream", service}}),
      .bytes_from_client = &bytes_.Add({{"listener", service}, {"direction", "from_client"}}),
      .bytes_to_client = &bytes_.Add({{"listener", service}, {"direction", "to_client"}}),
      .connect_duration = &connect_duration_.Add({{"upstream", service}}, connect_buckets()),
      .requests_by_class = {&requests_.Add({{"upstream", service}, {"code", "local"}}),
                            &requests_.Add({{"upstream", service}, {"code", "1xx"}}),
                            &requests_.Add({{"upstream", service}, {"code", "2xx"}}),
                            &requests_.Add({{"upstream", service}, {"code", "3xx"}}),
                            &requests_.Add({{"upstream", service}, {"code", "4xx"}}),
                            &requests_.Add({{"upstream", service}, {"code", "5xx"}})},
      .retries = &retries_.Add({{"upstream", service}})};
  add_http_handles(metrics);
  return metrics;
}

void SidecarMetrics::handshake(const std::string& listener, std::string_view result,
                               std::string_view reason) {
  handshakes_
      .Add({{"listener", listener},
            {"result", std::string(result)},
            {"reason", std::string(reason)}})
      .Increment();
}

std::function<void()> ListenerMetrics::refusal_counter() const {
  return [local = requests_by_class[0], fault = faults.caller_error] {
    local->Increment();
    fault->Increment();
  };
}

std::function<void()> ListenerMetrics::hang_up_counter() const {
  return [client_gone = requests_by_class[4]] { client_gone->Increment(); };
}

void ListenerMetrics::count_refusal(const qos::QosRejected& refusal) const {
  const auto kind = qos::classify_fault(std::make_exception_ptr(refusal)).kind;
  requests_by_class[0]->Increment();
  faults.of(kind)->Increment();
  request_duration->Observe(0.0);
  log::write_limited(log::Level::warn, "sidecar.request_rejected", listener,
                     {{"listener", listener},
                      {"fault", qos::to_string(kind)},
                      {"policy", refusal.policy()},
                      {"reason", qos::to_string(refusal.reason())}});
}

void SidecarMetrics::authorization_denied(std::string_view source) {
  denials_.Add({{"source", std::string(source)}}).Increment();
}

void SidecarMetrics::upstream_connect_failure(const std::string& upstream,
                                              std::string_view reason) {
  connect_failures_.Add({{"upstream", upstream}, {"reason", std::string(reason)}}).Increment();
}

}  // namespace coromesh::sidecar
