#include "coromesh/metrics/consul_collector.hpp"

#include <gtest/gtest.h>

#include <memory>

#include "coromesh/metrics/registry.hpp"
#include "exposition.hpp"

namespace coromesh::metrics {
namespace {

using testing::sample;

TEST(ConsulCollector, ExportsEveryOutcomeReadAfreshOnEachScrape) {
  MetricsRegistry registry;
  consul::RequestCounts counts{10, 2, 0, 1, 0, 3, 0, 4};
  registry.add_collectable(std::make_shared<ConsulCollector>([&] { return counts; }));
  auto text = registry.render();
  const auto of = [&](const std::string& outcome) {
    return sample(text, "coromesh_consul_requests_total{outcome=\"" + outcome + "\"}");
  };
  EXPECT_EQ(of("ok"), 10.0) << text;
  EXPECT_EQ(of("not_found"), 2.0);
  EXPECT_EQ(of("forbidden"), 0.0) << "present before the first refusal, for rate()";
  EXPECT_EQ(of("rejected"), 1.0);
  EXPECT_EQ(of("failed"), 0.0);
  EXPECT_EQ(of("unreachable"), 3.0);
  EXPECT_EQ(of("throttled"), 0.0);
  EXPECT_EQ(of("timeout"), 4.0);
  counts[static_cast<std::size_t>(consul::RequestOutcome::forbidden)] = 7;
  text = registry.render();
  EXPECT_EQ(of("forbidden"), 7.0);
}

}  // namespace
}  // namespace coromesh::metrics
