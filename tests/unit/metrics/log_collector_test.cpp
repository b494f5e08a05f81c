#include "coromesh/metrics/log_collector.hpp"

#include <gtest/gtest.h>

#include <memory>

#include "coromesh/metrics/registry.hpp"
#include "exposition.hpp"

namespace coromesh::metrics {
namespace {

using testing::sample;

TEST(LogCollector, ExportsDroppedLinesByReason) {
  MetricsRegistry registry;
  log::DroppedLines dropped{.queue_full = 3, .rate_limited = 1234};
  registry.add_collectable(std::make_shared<LogCollector>([&] { return dropped; }));
  auto text = registry.render();
  EXPECT_EQ(sample(text, R"(coromesh_log_lines_dropped_total{reason="queue_full"})"), 3.0) << text;
  EXPECT_EQ(sample(text, R"(coromesh_log_lines_dropped_total{reason="rate_limited"})"), 1234.0);
  dropped.rate_limited = 2000;
  EXPECT_EQ(sample(registry.render(), R"(coromesh_log_lines_dropped_total{reason="rate_limited"})"),
            2000.0)
      << "read afresh on every scrape";
}

TEST(LogCollector, ReadsTheProcessLogger) {
  MetricsRegistry registry;
  registry.add_collectable(std::make_shared<LogCollector>());
  static int run = 0;  // a fresh budget should the test run again (--gtest_repeat)
  const auto key = "run=" + std::to_string(++run);
  const auto before = log::dropped_lines().rate_limited;
  for (std::uint32_t i = 0; i < log::kLimitedLinesPerSecond + 5; ++i) {
    log::warn_limited("test.log_collector", key);
  }
  auto value =
      sample(registry.render(), R"(coromesh_log_lines_dropped_total{reason="rate_limited"})");
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(*value, static_cast<double>(before + 5));
}

}  // namespace
}  // namespace coromesh::metrics
