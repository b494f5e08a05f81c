#include "coromesh/metrics/consul_collector.hpp"

#include <utility>

namespace coromesh::metrics {

ConsulCollector::ConsulCollector(std::function<consul::RequestCounts()> source)
    : source_(std::move(source)) {}

std::vector<prometheus::MetricFamily> ConsulCollector::Collect() const {
  const auto counts = source_();
  prometheus::MetricFamily family;
  family.name = "coromesh_consul_requests_total";
  family.help = "Calls to the Consul agent by outcome (forbidden: the ACL token lacks a right).";
  family.type = prometheus::MetricType::Counter;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    prometheus::ClientMetric metric;
    metric.label = {
        {"outcome", std::string(consul::to_string(static_cast<consul::RequestOutcome>(i)))}};
    metric.counter.value = static_cast<double>(counts[i]);
    family.metric.push_back(std::move(metric));
  }
  return {std::move(family)};
}

}  // namespace coromesh::metrics
