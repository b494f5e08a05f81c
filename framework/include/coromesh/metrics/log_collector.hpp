#pragma once

// The logger's own health, so a flood that the logger had to thin out shows on a
// dashboard even though its lines never reached the log:
//
//   coromesh_log_lines_dropped_total{reason="queue_full"}    counter  stderr could not keep up
//   coromesh_log_lines_dropped_total{reason="rate_limited"}  counter  over a key's budget
//
// Read from log::dropped_lines() on every Collect(); add one per process registry
// (MetricsRegistry::add_collectable).
//
// Threads: Collect() is const and may be called from any thread, concurrently.

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <vector>

#include "coromesh/log/logger.hpp"

namespace coromesh::metrics {

class LogCollector final : public prometheus::Collectable {
 public:
  // `source` is log::dropped_lines unless a test gives another.
  explicit LogCollector(std::function<log::DroppedLines()> source = log::dropped_lines);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::function<log::DroppedLines()> source_;
};

}  // namespace coromesh::metrics
