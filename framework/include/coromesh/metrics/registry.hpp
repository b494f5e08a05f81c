#pragma once

// The process's metrics: a prometheus-cpp registry plus extra collectables (the process
// collector, a sidecar's per-upstream gauges, ...), rendered in the Prometheus text
// exposition format for the framework's own `GET /metrics` route. There is deliberately
// no second HTTP stack here (no prometheus-cpp civetweb Exposer): the service's Beast
// server serves `render()` with `kContentType`.
//
// Ownership: MetricsRegistry shares ownership of the prometheus::Registry and of every
// collectable added, so metric objects handed out by families stay valid as long as
// any owner (this object or, e.g., an HttpServerMetrics built on it) is alive.
//
// Threads: every member may be called from any thread, concurrently. render() takes a
// snapshot; a scrape never blocks the hot path beyond prometheus-cpp's own per-metric
// locks.

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
class Collectable;
class Registry;
}  // namespace prometheus

namespace coromesh::metrics {

class MetricsRegistry {
 public:
  // The content type of `render()`'s output (Prometheus text format 0.0.4).
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

  // Starts with a fresh, empty prometheus::Registry.
  MetricsRegistry();
  // Wraps an existing registry, e.g. one a library already registers into.
  explicit MetricsRegistry(std::shared_ptr<prometheus::Registry> registry);

  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;
  ~MetricsRegistry();

  // The wrapped registry, for building families with prometheus::BuildCounter() & co.
  const std::shared_ptr<prometheus::Registry>& prometheus_registry() const noexcept {
    return registry_;
  }

  // Adds a source of metric families that is collected on every render(), after the
  // registry's own families. Family names must not clash with the registry's.
  void add_collectable(std::shared_ptr<prometheus::Collectable> collectable);

  // The whole exposition: every family of the registry and of each collectable.
  std::string render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex mutex_;  // guards collectables_ (added at start-up, read per scrape)
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
};

}  // namespace coromesh::metrics
