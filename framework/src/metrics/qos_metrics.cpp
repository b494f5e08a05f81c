#include "coromesh/metrics/qos_metrics.hpp"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "coromesh/log/logger.hpp"
#include "coromesh/metrics/http_server_metrics.hpp"
#include "coromesh/metrics/registry.hpp"

namespace coromesh::metrics {

namespace {

// Lock-free per-call metrics (prometheus-cpp's Histogram takes a mutex per observation,
// which was a fifth of the whole chain's cost): relaxed atomic counters, summed at
// scrape. Sharded by thread, each shard on its own cache lines, so io threads sharing an
// operation do not bounce one counter between their cores.
class CallMetrics final : public qos::CallObserver {
 public:
  CallMetrics(std::string operation, std::string side, std::vector<double> bounds)
      : operation_(std::move(operation)), side_(std::move(side)), bounds_(std::move(bounds)) {
    for (auto& shard : shards_) {
      shard.buckets = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
    }
  }

  void observe(Result result, qos::Duration elapsed) noexcept override {
    Shard& shard = shards_[shard_index()];
    shard.results[static_cast<std::size_t>(result)].fetch_add(1, std::memory_order_relaxed);
    const double seconds = std::chrono::duration<double>(elapsed).count();
    std::size_t bucket = 0;
    while (bucket < bounds_.size() && seconds > bounds_[bucket]) {
      ++bucket;
    }
    shard.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
    const auto ns = elapsed.count() > 0 ? static_cast<std::uint64_t>(elapsed.count()) : 0U;
    shard.sum_ns.fetch_add(ns, std::memory_order_relaxed);
  }

  void collect(prometheus::MetricFamily& calls, prometheus::MetricFamily& durations) const {
    static constexpr const char* kNames[] = {"ok", "error", "rejected"};
    for (std::size_t i = 0; i < 3; ++i) {
      std::uint64_t total = 0;
      for (const auto& shard : shards_) {
        total += shard.results[i].load(std::memory_order_relaxed);
      }
      prometheus::ClientMetric metric;
      metric.label = {{"operation", operation_}, {"result", kNames[i]}, {"side", side_}};
      metric.counter.value = static_cast<double>(total);
      calls.metric.push_back(std::move(metric));
    }
    prometheus::ClientMetric metric;
    metric.label = {{"operation", operation_}, {"side", side_}};
    std::uint64_t cumulative = 0;
    std::uint64_t sum_ns = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
      for (const auto& shard : shards_) {
        cumulative += shard.buckets[i].load(std::memory_order_relaxed);
      }
      prometheus::ClientMetric::Bucket bucket;
      bucket.cumulative_count = cumulative;
      bucket.upper_bound =
          i < bounds_.size() ? bounds_[i] : std::numeric_limits<double>::infinity();
      metric.histogram.bucket.push_back(bucket);
    }
    for (const auto& shard : shards_) {
      sum_ns += shard.sum_ns.load(std::memory_order_relaxed);
    }
    metric.histogram.sample_count = cumulative;
    metric.histogram.sample_sum = static_cast<double>(sum_ns) / 1e9;
    durations.metric.push_back(std::move(metric));
  }

 private:
  static constexpr std::size_t kShards = 8;
  struct alignas(64) Shard {
    std::array<std::atomic<std::uint64_t>, 3> results{};
    std::atomic<std::uint64_t> sum_ns{0};
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets;  // a separate allocation each
  };

  // A small number per thread, assigned on first use: io threads get distinct shards.
  static std::size_t shard_index() noexcept {
    static std::atomic<std::size_t> next{0};
    thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
    return mine % kShards;
  }

  std::string operation_;
  std::string side_;
  std::vector<double> bounds_;
  std::array<Shard, kShards> shards_;
};

struct StateSource {
  std::string operation;
  std::string side;
  std::function<std::shared_ptr<const qos::PolicyObjects>()> objects;
};

prometheus::ClientMetric gauge_sample(std::vector<prometheus::ClientMetric::Label> labels,
                                      double value) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  return metric;
}

prometheus::MetricFamily gauge_family(std::string name, std::string help) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  return family;
}

}  // namespace

// Also the collectable of the state gauges: it reads every registered source per scrape.
struct QosMetrics::Impl final : prometheus::Collectable {
  explicit Impl(MetricsRegistry& registry)
      : prometheus_registry(registry.prometheus_registry()),
        rejections(prometheus::BuildCounter()
                       .Name("coromesh_qos_rejections_total")
                       .Help("Calls a QoS policy refused, by operation, policy and reason.")
                       .Register(*prometheus_registry)),
        bounds(HttpServerMetrics::default_duration_buckets()) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    auto breaker = gauge_family("coromesh_qos_circuit_breaker_state",
                                "1 for the circuit breaker's current state, 0 for the others.");
    auto limit = gauge_family("coromesh_qos_concurrency_limit",
                              "The adaptive concurrency limit's current limit.");
    auto bulkhead = gauge_family("coromesh_qos_bulkhead_in_use", "Bulkhead slots in use.");
    prometheus::MetricFamily calls;
    calls.name = "coromesh_qos_calls_total";
    calls.help = "Calls through a declared operation's QoS chain, by side and result.";
    calls.type = prometheus::MetricType::Counter;
    prometheus::MetricFamily durations;
    durations.name = "coromesh_qos_call_duration_seconds";
    durations.help = "Duration of the call inside the QoS chain (attempt), by side.";
    durations.type = prometheus::MetricType::Histogram;
    std::vector<StateSource> copy;
    {
      std::lock_guard lock(mutex);
      copy = sources;
      for (const auto& observer : observers) {
        observer->collect(calls, durations);
      }
    }
    for (const auto& source : copy) {
      const auto objects = source.objects();
      if (!objects) {
        continue;
      }
      const std::vector<prometheus::ClientMetric::Label> base{{"operation", source.operation},
                                                              {"side", source.side}};
      if (objects->breaker) {
        const auto current = objects->breaker->state();
        for (auto state : {qos::CircuitBreaker::State::closed, qos::CircuitBreaker::State::open,
                           qos::CircuitBreaker::State::half_open}) {
          auto labels = base;
          labels.push_back({"state", std::string(qos::to_string(state))});
          breaker.metric.push_back(gauge_sample(std::move(labels), state == current ? 1.0 : 0.0));
        }
      }
      if (objects->adaptive) {
        limit.metric.push_back(gauge_sample(base, objects->adaptive->limit()));
      }
      if (objects->bulkhead) {
        bulkhead.metric.push_back(gauge_sample(base, objects->bulkhead->in_use()));
      }
    }
    std::vector<prometheus::MetricFamily> families;
    for (auto* family : {&calls, &durations, &breaker, &limit, &bulkhead}) {
      if (!family->metric.empty()) {
        families.push_back(std::move(*family));
      }
    }
    return families;
  }

  std::shared_ptr<prometheus::Registry> prometheus_registry;
  prometheus::Family<prometheus::Counter>& rejections;
  std::vector<double> bounds;
  mutable std::mutex mutex;
  std::vector<StateSource> sources;
  std::vector<std::shared_ptr<CallMetrics>> observers;
};

QosMetrics::QosMetrics(MetricsRegistry& registry) : impl_(std::make_shared<Impl>(registry)) {
  registry.add_collectable(impl_);
}

QosMetrics::~QosMetrics() = default;

qos::RejectionHook QosMetrics::rejection_hook(std::string operation, std::string side) {
  return [impl = impl_, operation = std::move(operation), side = std::move(side)](
             std::string_view policy, qos::Reason reason) {
    impl->rejections
        .Add({{"operation", operation},
              {"policy", std::string(policy)},
              {"reason", std::string(qos::to_string(reason))}})
        .Increment();
    log::warn("qos.rejected", {{"operation", operation},
                               {"side", side},
                               {"policy", policy},
                               {"reason", qos::to_string(reason)}});
  };
}

std::shared_ptr<qos::CallObserver> QosMetrics::observer(const std::string& operation,
                                                        const std::string& side) {
  auto created = std::make_shared<CallMetrics>(operation, side, impl_->bounds);
  std::lock_guard lock(impl_->mutex);
  impl_->observers.push_back(created);
  return created;
}

void QosMetrics::export_state(std::string operation, std::string side,
                              std::function<std::shared_ptr<const qos::PolicyObjects>()> objects) {
  std::lock_guard lock(impl_->mutex);
  impl_->sources.push_back({std::move(operation), std::move(side), std::move(objects)});
}

}  // namespace coromesh::metrics
