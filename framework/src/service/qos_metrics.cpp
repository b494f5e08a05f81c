#include "coromesh/service/qos_metrics.hpp"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <array>
#include <atomic>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "coromesh/log/logger.hpp"
#include "coromesh/metrics/http_server_metrics.hpp"
#include "coromesh/metrics/registry.hpp"
#include "coromesh/qos/reason.hpp"
#include "coromesh/qos/thread_shard.hpp"

namespace coromesh {

namespace {

// How often each (policy, reason) refused a call. The pairs an operation side can
// produce are few and fixed by its policies, so they live in a small append-only table:
// counting scans the published entries without a lock, and only a pair seen for the
// first time takes the mutex to append itself. Past the table's capacity (a custom
// interceptor inventing policy names) rejections count under policy="other".
class RejectionCounts {
 public:
  void count(std::string_view policy, qos::Reason reason) noexcept {
    if (Entry* entry = find(policy, reason, published_.load(std::memory_order_acquire))) {
      entry->count.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    append(policy, reason).count.fetch_add(1, std::memory_order_relaxed);
  }

  template <class F>
  void for_each(F&& f) const {
    const std::size_t n = published_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) {
      f(entries_[i].policy, entries_[i].reason, entries_[i].count.load(std::memory_order_relaxed));
    }
  }

 private:
  static constexpr std::size_t kCapacity = 32;
  static constexpr std::size_t kReasons = std::size(qos::kAllReasons);
  static_assert(kCapacity > kReasons);
  struct Entry {
    std::string policy;
    qos::Reason reason{};
    std::atomic<std::uint64_t> count{0};
  };

  Entry* find(std::string_view policy, qos::Reason reason, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
      if (entries_[i].reason == reason && entries_[i].policy == policy) {
        return &entries_[i];
      }
    }
    return nullptr;
  }

  Entry& append(std::string_view policy, qos::Reason reason) noexcept {
    const std::lock_guard lock(mutex_);
    const std::size_t n = published_.load(std::memory_order_relaxed);
    if (Entry* entry = find(policy, reason, n)) {  // appended meanwhile by another thread
      return *entry;
    }
    // The last kReasons slots are kept for policy="other", one per reason: named pairs
    // stop short of them, so every entry appended, named or other, fits the table.
    const bool other = n >= kCapacity - kReasons;
    if (other) {
      if (Entry* entry = find("other", reason, n)) {
        return *entry;
      }
    }
    Entry& entry = entries_[n];
    try {
      entry.policy.assign(other ? std::string_view("other") : policy);
    } catch (...) {  // no memory for a label: count it, unnamed, rather than throw
    }
    entry.reason = reason;
    published_.store(n + 1, std::memory_order_release);
    return entry;
  }

  std::array<Entry, kCapacity> entries_{};
  std::atomic<std::size_t> published_{0};
  std::mutex mutex_;
};

// Per-call metrics of one operation side (prometheus-cpp's Histogram takes a mutex per
// observation, which was a fifth of the whole chain's cost): relaxed atomic counters,
// summed at scrape. Sharded by thread, each shard on its own cache lines, so io threads
// sharing an operation do not bounce one counter between their cores.
class SideMetrics final : public qos::CallObserver {
 public:
  SideMetrics(std::string operation, std::string side, std::vector<double> bounds)
      : operation_(std::move(operation)), side_(std::move(side)), bounds_(std::move(bounds)) {
    for (auto& shard : shards_) {
      shard.buckets = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
    }
  }

  const std::string& operation() const noexcept { return operation_; }
  const std::string& side() const noexcept { return side_; }

  void observe(Result result, qos::Duration elapsed) noexcept override {
    const qos::ShardSlot slot = qos::owned_shard();
    Shard& shard = shards_[slot.index];
    qos::add_to_shard(shard.results[static_cast<std::size_t>(result)], 1, slot);
    const double seconds = std::chrono::duration<double>(elapsed).count();
    std::size_t bucket = 0;
    while (bucket < bounds_.size() && seconds > bounds_[bucket]) {
      ++bucket;
    }
    qos::add_to_shard(shard.buckets[bucket], 1, slot);
    const auto ns = elapsed.count() > 0 ? static_cast<std::uint64_t>(elapsed.count()) : 0U;
    qos::add_to_shard(shard.sum_ns, ns, slot);
  }

  void reject(std::string_view policy, qos::Reason reason) noexcept {
    const qos::ShardSlot slot = qos::owned_shard();
    qos::add_to_shard(shards_[slot.index].results[static_cast<std::size_t>(Result::rejected)], 1,
                      slot);
    rejections_.count(policy, reason);
  }

  void collect(prometheus::MetricFamily& calls, prometheus::MetricFamily& durations,
               prometheus::MetricFamily& rejections) const {
    for (std::size_t i = 0; i < kResults; ++i) {
      std::uint64_t total = 0;
      for (const auto& shard : shards_) {
        total += shard.results[i].load(std::memory_order_relaxed);
      }
      prometheus::ClientMetric metric;
      metric.label = {{"operation", operation_}, {"result", kResultNames[i]}, {"side", side_}};
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
    rejections_.for_each([&](const std::string& policy, qos::Reason reason, std::uint64_t n) {
      prometheus::ClientMetric sample;
      sample.label = {{"operation", operation_},
                      {"policy", policy},
                      {"reason", std::string(qos::to_string(reason))},
                      {"side", side_}};
      sample.counter.value = static_cast<double>(n);
      rejections.metric.push_back(std::move(sample));
    });
  }

 private:
  // Each thread counts in its own shard while there are owned ones left (plain stores),
  // else in a shared one (fetch_add): qos::owned_shard().
  static constexpr std::size_t kShards = qos::kOwnedShards + qos::kSharedShards;
  struct alignas(64) Shard {
    std::array<std::atomic<std::uint64_t>, kResults> results{};
    std::atomic<std::uint64_t> sum_ns{0};
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets;  // a separate allocation each
  };

  std::string operation_;
  std::string side_;
  std::vector<double> bounds_;
  std::array<Shard, kShards> shards_;
  RejectionCounts rejections_;
};

prometheus::ClientMetric gauge_sample(std::vector<prometheus::ClientMetric::Label> labels,
                                      double value) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  return metric;
}

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily result;
  result.name = std::move(name);
  result.help = std::move(help);
  result.type = type;
  return result;
}

using StateSource = std::function<std::shared_ptr<const qos::PolicyObjects>()>;
using SideKey = std::pair<std::string, std::string>;  // operation, side

}  // namespace

// Also the collectable: it reads every side's counters and state sources per scrape.
struct QosMetrics::Impl final : prometheus::Collectable {
  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    auto calls = family("coromesh_qos_calls_total",
                        "Calls through a declared operation's QoS chain, by side and result.",
                        MetricType::Counter);
    auto durations = family("coromesh_qos_call_duration_seconds",
                            "Duration of the call inside the QoS chain (attempt), by side.",
                            MetricType::Histogram);
    auto rejections = family("coromesh_qos_rejections_total",
                             "Calls a QoS policy refused, by operation, side, policy and reason.",
                             MetricType::Counter);
    auto breaker =
        family("coromesh_qos_circuit_breaker_state",
               "1 for the circuit breaker's current state, 0 for the others.", MetricType::Gauge);
    auto limit = family("coromesh_qos_concurrency_limit",
                        "The adaptive concurrency limit's current limit.", MetricType::Gauge);
    auto bulkhead =
        family("coromesh_qos_bulkhead_in_use", "Bulkhead slots in use.", MetricType::Gauge);
    std::vector<std::pair<SideKey, StateSource>> states;
    {
      const std::lock_guard lock(mutex);
      for (const auto& [key, side] : sides) {
        side->collect(calls, durations, rejections);
      }
      states.assign(sources.begin(), sources.end());
    }
    // Outside the lock: reading a source takes the operation's own locks.
    for (const auto& [key, source] : states) {
      const auto objects = source();
      if (!objects) {
        continue;
      }
      const std::vector<prometheus::ClientMetric::Label> base{{"operation", key.first},
                                                              {"side", key.second}};
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
    for (auto* f : {&calls, &durations, &rejections, &breaker, &limit, &bulkhead}) {
      if (!f->metric.empty()) {
        families.push_back(std::move(*f));
      }
    }
    return families;
  }

  std::shared_ptr<SideMetrics> side(const std::string& operation, const std::string& side_name) {
    const std::lock_guard lock(mutex);
    auto& slot = sides[{operation, side_name}];
    if (!slot) {
      slot = std::make_shared<SideMetrics>(operation, side_name, bounds);
    }
    return slot;
  }

  std::vector<double> bounds = metrics::HttpServerMetrics::default_duration_buckets();
  mutable std::mutex mutex;
  std::map<SideKey, std::shared_ptr<SideMetrics>> sides;
  std::map<SideKey, StateSource> sources;
};

QosMetrics::QosMetrics(metrics::MetricsRegistry& registry) : impl_(std::make_shared<Impl>()) {
  registry.add_collectable(impl_);
}

QosMetrics::~QosMetrics() = default;

qos::RejectionHook QosMetrics::rejection_hook(const std::string& operation,
                                              const std::string& side) {
  // Rejections come in floods exactly when the service is overloaded: the log line is
  // rate limited per operation, side, policy and reason (the counter is exact).
  return [counters = impl_->side(operation, side), log_key = operation + '\x1f' + side](
             std::string_view policy, qos::Reason reason) {
    counters->reject(policy, reason);
    if (log::enabled(log::Level::warn)) {
      std::string key = log_key;
      key.append(1, '\x1f').append(policy).append(1, '\x1f').append(qos::to_string(reason));
      log::warn_limited("qos.rejected", key,
                        {{"operation", counters->operation()},
                         {"side", counters->side()},
                         {"policy", policy},
                         {"reason", qos::to_string(reason)}});
    }
  };
}

std::shared_ptr<qos::CallObserver> QosMetrics::observer(const std::string& operation,
                                                        const std::string& side) {
  return impl_->side(operation, side);
}

void QosMetrics::export_state(const std::string& operation, const std::string& side,
                              std::function<std::shared_ptr<const qos::PolicyObjects>()> objects) {
  const std::lock_guard lock(impl_->mutex);
  impl_->sources[{operation, side}] = std::move(objects);
}

}  // namespace coromesh
