#pragma once

// The standard process metrics every Prometheus client library exports, under the same
// names and types so existing dashboards and alerts work unchanged:
//
//   process_cpu_seconds_total        counter  user + system CPU time
//   process_resident_memory_bytes    gauge
//   process_virtual_memory_bytes     gauge
//   process_open_fds                 gauge
//   process_max_fds                  gauge    soft RLIMIT_NOFILE
//   process_start_time_seconds       gauge    since the Unix epoch
//
// Linux only: values come from <proc>/self/stat, <proc>/stat (boot time),
// <proc>/self/fd and <proc>/self/limits, read on every Collect() (once per scrape).
// A value that cannot be read is left out of that scrape rather than reported as 0,
// which Prometheus would take as a real reading.
//
// Threads: Collect() is const and keeps no state; any thread may call it, concurrently.

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <filesystem>
#include <vector>

namespace coromesh::metrics {

class ProcessCollector final : public prometheus::Collectable {
 public:
  // `proc_root` is where procfs is mounted; tests point it at a fake tree.
  explicit ProcessCollector(std::filesystem::path proc_root = "/proc");

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::filesystem::path proc_root_;
  double clock_ticks_per_second_;
  double page_size_bytes_;
};

}  // namespace coromesh::metrics
