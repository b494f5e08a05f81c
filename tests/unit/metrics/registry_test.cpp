#include "coromesh/metrics/registry.hpp"

#include <gtest/gtest.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <memory>
#include <stdexcept>

#include "exposition.hpp"

namespace coromesh::metrics {
namespace {

using testing::has_line;
using testing::sample;

TEST(MetricsRegistry, ContentTypeIsPrometheusTextFormat) {
  EXPECT_EQ(MetricsRegistry::kContentType, "text/plain; version=0.0.4; charset=utf-8");
}

TEST(MetricsRegistry, EmptyRegistryRendersNothing) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.render(), "");
}

TEST(MetricsRegistry, RendersFamiliesBuiltOnTheWrappedRegistry) {
  auto prom = std::make_shared<prometheus::Registry>();
  MetricsRegistry registry(prom);
  EXPECT_EQ(registry.prometheus_registry(), prom);
  auto& family = prometheus::BuildCounter().Name("jobs_total").Help("Jobs done.").Register(*prom);
  family.Add({{"kind", "a"}}).Increment(3);

  auto text = registry.render();
  EXPECT_TRUE(has_line(text, "# HELP jobs_total Jobs done.")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE jobs_total counter")) << text;
  EXPECT_EQ(sample(text, R"(jobs_total{kind="a"})"), 3.0) << text;
}

class FixedCollectable : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily family{
        "extra_value", "An extra gauge.", prometheus::MetricType::Gauge, {}};
    prometheus::ClientMetric metric;
    metric.gauge.value = 42;
    family.metric.push_back(metric);
    return {family};
  }
};

TEST(MetricsRegistry, RendersAddedCollectablesAfterTheRegistry) {
  MetricsRegistry registry;
  prometheus::BuildGauge()
      .Name("own_value")
      .Help("Own.")
      .Register(*registry.prometheus_registry())
      .Add({})
      .Set(1);
  registry.add_collectable(std::make_shared<FixedCollectable>());

  auto text = registry.render();
  EXPECT_TRUE(has_line(text, "# TYPE extra_value gauge")) << text;
  EXPECT_EQ(sample(text, "extra_value"), 42.0) << text;
  EXPECT_LT(text.find("own_value"), text.find("extra_value")) << text;
}

TEST(MetricsRegistry, RejectsNullArguments) {
  EXPECT_THROW(MetricsRegistry(nullptr), std::invalid_argument);
  MetricsRegistry registry;
  EXPECT_THROW(registry.add_collectable(nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace coromesh::metrics
