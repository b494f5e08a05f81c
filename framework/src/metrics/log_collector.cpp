#include "coromesh/metrics/log_collector.hpp"

#include <utility>

namespace coromesh::metrics {

LogCollector::LogCollector(std::function<log::DroppedLines()> source)
    : source_(std::move(source)) {}

std::vector<prometheus::MetricFamily> LogCollector::Collect() const {
  const auto dropped = source_();
  prometheus::MetricFamily family;
  family.name = "coromesh_log_lines_dropped_total";
  family.help = "Log lines not written: the queue to stderr was full, or a key's rate limit.";
  family.type = prometheus::MetricType::Counter;
  for (const auto& [reason, count] : {std::pair{"queue_full", dropped.queue_full},
                                      std::pair{"rate_limited", dropped.rate_limited}}) {
    prometheus::ClientMetric metric;
    metric.label = {{"reason", reason}};
    metric.counter.value = static_cast<double>(count);
    family.metric.push_back(std::move(metric));
  }
  return {std::move(family)};
}

}  // namespace coromesh::metrics
