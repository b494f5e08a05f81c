#include "coromesh/metrics/qos_metrics.hpp"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <mutex>
#include <vector>

#include "coromesh/log/logger.hpp"
#include "coromesh/metrics/http_server_metrics.hpp"
#include "coromesh/metrics/registry.hpp"

namespace coromesh::metrics {

namespace {

class CallMetrics final : public qos::CallObserver {
 public:
  CallMetrics(prometheus::Counter& ok, prometheus::Counter& error, prometheus::Counter& rejected,
              prometheus::Histogram& duration)
      : ok_(ok), error_(error), rejected_(rejected), duration_(duration) {}

  void observe(Result result, qos::Duration elapsed) noexcept override {
    switch (result) {
      case Result::ok:
        ok_.Increment();
        break;
      case Result::error:
        error_.Increment();
        break;
      case Result::rejected:
        rejected_.Increment();
        break;
    }
    duration_.Observe(std::chrono::duration<double>(elapsed).count());
  }

 private:
  prometheus::Counter& ok_;
  prometheus::Counter& error_;
  prometheus::Counter& rejected_;
  prometheus::Histogram& duration_;
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
        calls(prometheus::BuildCounter()
                  .Name("coromesh_qos_calls_total")
                  .Help("Calls through a declared operation's QoS chain, by side and result.")
                  .Register(*prometheus_registry)),
        durations(prometheus::BuildHistogram()
                      .Name("coromesh_qos_call_duration_seconds")
                      .Help("Duration of the call inside the QoS chain (attempt), by side.")
                      .Register(*prometheus_registry)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    auto breaker = gauge_family("coromesh_qos_circuit_breaker_state",
                                "1 for the circuit breaker's current state, 0 for the others.");
    auto limit = gauge_family("coromesh_qos_concurrency_limit",
                              "The adaptive concurrency limit's current limit.");
    auto bulkhead = gauge_family("coromesh_qos_bulkhead_in_use", "Bulkhead slots in use.");
    std::vector<StateSource> copy;
    {
      std::lock_guard lock(mutex);
      copy = sources;
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
    for (auto* family : {&breaker, &limit, &bulkhead}) {
      if (!family->metric.empty()) {
        families.push_back(std::move(*family));
      }
    }
    return families;
  }

  std::shared_ptr<prometheus::Registry> prometheus_registry;
  prometheus::Family<prometheus::Counter>& rejections;
  prometheus::Family<prometheus::Counter>& calls;
  prometheus::Family<prometheus::Histogram>& durations;
  mutable std::mutex mutex;
  std::vector<StateSource> sources;
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
  auto counter = [&](const char* result) -> prometheus::Counter& {
    return impl_->calls.Add({{"operation", operation}, {"side", side}, {"result", result}});
  };
  auto& histogram = impl_->durations.Add({{"operation", operation}, {"side", side}},
                                         HttpServerMetrics::default_duration_buckets());
  // The observer shares ownership of Impl so the metric references outlive it.
  struct Owned final : qos::CallObserver {
    Owned(std::shared_ptr<Impl> i, prometheus::Counter& ok, prometheus::Counter& error,
          prometheus::Counter& rejected, prometheus::Histogram& duration)
        : impl(std::move(i)), metrics(ok, error, rejected, duration) {}
    void observe(Result result, qos::Duration elapsed) noexcept override {
      metrics.observe(result, elapsed);
    }
    std::shared_ptr<Impl> impl;
    CallMetrics metrics;
  };
  return std::make_shared<Owned>(impl_, counter("ok"), counter("error"), counter("rejected"),
                                 histogram);
}

void QosMetrics::export_state(std::string operation, std::string side,
                              std::function<std::shared_ptr<const qos::PolicyObjects>()> objects) {
  std::lock_guard lock(impl_->mutex);
  impl_->sources.push_back({std::move(operation), std::move(side), std::move(objects)});
}

}  // namespace coromesh::metrics
