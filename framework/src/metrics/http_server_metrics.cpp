#include "coromesh/metrics/http_server_metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <utility>

#include "coromesh/metrics/registry.hpp"

namespace coromesh::metrics {

OperationMetrics::OperationMetrics(prometheus::Family<prometheus::Counter>& requests,
                                   prometheus::Histogram& duration, std::string service,
                                   std::string operation)
    : requests_(requests),
      duration_(duration),
      service_(std::move(service)),
      operation_(std::move(operation)),
      // From the histogram itself: a second HttpServerMetrics of the same service reuses
      // the one the first made, with the first one's buckets.
      bucket_count_(duration.Collect().histogram.bucket.size()) {}

void OperationMetrics::observe(int status_code, double seconds) {
  std::atomic<prometheus::Counter*>* slot = &other_code_;
  if (status_code >= kFirstCachedCode && status_code <= kLastCachedCode) {
    slot = &by_code_[static_cast<std::size_t>(status_code - kFirstCachedCode)];
  }
  // Acquire pairs with the release below, so a thread that sees the pointer also sees
  // the Counter that Family::Add constructed.
  prometheus::Counter* counter = slot->load(std::memory_order_acquire);
  if (counter == nullptr) {
    counter = &resolve_counter(status_code);
    slot->store(counter, std::memory_order_release);
  }
  counter->Increment();
  if (seconds == std::numeric_limits<double>::infinity()) {
    // Longer than every bound, but the sum must stay finite: +Inf there would stay for
    // good and make every average from it +Inf or NaN. So the +Inf bucket only (rare:
    // the vector's allocation does not matter).
    std::vector<double> increments(bucket_count_, 0.0);
    if (!increments.empty()) {
      increments.back() = 1.0;
      duration_.ObserveMultiple(increments, 0.0);
    }
    return;
  }
  // `!(x >= 0)` is also true for NaN, which would otherwise poison the sum forever.
  duration_.Observe(seconds >= 0.0 ? seconds : 0.0);
}

prometheus::Counter& OperationMetrics::resolve_counter(int status_code) {
  const bool cached = status_code >= kFirstCachedCode && status_code <= kLastCachedCode;
  return requests_.Add({{"service", service_},
                        {"operation", operation_},
                        {"code", cached ? std::to_string(status_code) : std::string("other")}});
}

std::vector<double> HttpServerMetrics::default_duration_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
}

HttpServerMetrics::HttpServerMetrics(MetricsRegistry& registry, std::string service,
                                     std::vector<double> buckets)
    : registry_(registry.prometheus_registry()),
      service_(std::move(service)),
      buckets_(std::move(buckets)),
      requests_(prometheus::BuildCounter()
                    .Name("coromesh_http_server_requests_total")
                    .Help("HTTP requests served, by operation and response status code.")
                    .Register(*registry_)),
      durations_(prometheus::BuildHistogram()
                     .Name("coromesh_http_server_request_duration_seconds")
                     .Help("Time from a request's first byte to its response's last byte.")
                     .Register(*registry_)),
      in_flight_(prometheus::BuildGauge()
                     .Name("coromesh_http_server_requests_in_flight")
                     .Help("HTTP requests currently being served.")
                     .Register(*registry_)
                     .Add({{"service", service_}})) {
  // Finite too: prometheus-cpp adds the +Inf bucket itself (a second one would be a
  // duplicate series), and a NaN bound breaks every quantile computed over it.
  if (buckets_.empty() ||
      std::adjacent_find(buckets_.begin(), buckets_.end(),
                         [](double a, double b) { return !(a < b); }) != buckets_.end() ||
      !std::all_of(buckets_.begin(), buckets_.end(), [](double b) { return std::isfinite(b); })) {
    throw std::invalid_argument(
        "HttpServerMetrics: buckets must be non-empty, finite and increasing");
  }
}

HttpServerMetrics::~HttpServerMetrics() = default;

OperationMetrics& HttpServerMetrics::operation(std::string_view name) {
  std::lock_guard lock(mutex_);
  if (auto it = operations_.find(name); it != operations_.end()) {
    return *it->second;
  }
  auto& histogram =
      durations_.Add({{"service", service_}, {"operation", std::string(name)}}, buckets_);
  // The constructor is private to keep OperationMetrics address-stable: only this map
  // owns them, never a copy.
  std::unique_ptr<OperationMetrics> created(
      new OperationMetrics(requests_, histogram, service_, std::string(name)));
  auto& result = *created;
  operations_.emplace(std::string(name), std::move(created));
  return result;
}

void HttpServerMetrics::in_flight_inc() {
  in_flight_.Increment();
}
void HttpServerMetrics::in_flight_dec() {
  in_flight_.Decrement();
}

}  // namespace coromesh::metrics
