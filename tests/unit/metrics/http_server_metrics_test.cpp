#include "coromesh/metrics/http_server_metrics.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

#include "coromesh/metrics/registry.hpp"
#include "exposition.hpp"

namespace coromesh::metrics {
namespace {

using testing::has_line;
using testing::sample;

constexpr const char* kRequests = "coromesh_http_server_requests_total";
constexpr const char* kDuration = "coromesh_http_server_request_duration_seconds";

std::string requests_series(const char* code, const char* operation = "add",
                            const char* service = "calc") {
  return std::string(kRequests) + "{code=\"" + code + "\",operation=\"" + operation +
         "\",service=\"" + service + "\"}";
}

TEST(HttpServerMetrics, RendersTheThreeFamiliesWithTypesAndLabels) {
  MetricsRegistry registry;
  HttpServerMetrics metrics(registry, "calc");
  metrics.operation("add").observe(200, 0.002);
  metrics.in_flight_inc();

  auto text = registry.render();
  EXPECT_TRUE(has_line(text, "# TYPE coromesh_http_server_requests_total counter")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE coromesh_http_server_request_duration_seconds histogram"))
      << text;
  EXPECT_TRUE(has_line(text, "# TYPE coromesh_http_server_requests_in_flight gauge")) << text;
  EXPECT_EQ(sample(text, requests_series("200")), 1.0) << text;
  EXPECT_EQ(
      sample(
          text,
          R"(coromesh_http_server_request_duration_seconds_count{operation="add",service="calc"})"),
      1.0)
      << text;
  EXPECT_EQ(sample(text, R"(coromesh_http_server_requests_in_flight{service="calc"})"), 1.0)
      << text;
}

TEST(HttpServerMetrics, ObserveIncrementsTheCounterOfItsStatusCode) {
  MetricsRegistry registry;
  HttpServerMetrics metrics(registry, "calc");
  auto& add = metrics.operation("add");
  for (int i = 0; i < 3; ++i) {
    add.observe(200, 0.001);
  }
  add.observe(400, 0.001);
  add.observe(503, std::chrono::milliseconds(20));
  metrics.operation("div").observe(200, 0.001);

  auto text = registry.render();
  EXPECT_EQ(sample(text, requests_series("200")), 3.0) << text;
  EXPECT_EQ(sample(text, requests_series("400")), 1.0) << text;
  EXPECT_EQ(sample(text, requests_series("503")), 1.0) << text;
  EXPECT_EQ(sample(text, requests_series("200", "div")), 1.0) << text;
  EXPECT_FALSE(sample(text, requests_series("404"))) << "codes never seen have no series";
}

TEST(HttpServerMetrics, CodesOutsideHttpRangeShareOneOtherSeries) {
  MetricsRegistry registry;
  HttpServerMetrics metrics(registry, "calc");
  auto& add = metrics.operation("add");
  add.observe(0, 0.001);
  add.observe(99, 0.001);
  add.observe(600, 0.001);
  add.observe(-5, 0.001);
  add.observe(599, 0.001);

  auto text = registry.render();
  EXPECT_EQ(sample(text, requests_series("other")), 4.0) << text;
  EXPECT_EQ(sample(text, requests_series("599")), 1.0) << text;
}

TEST(HttpServerMetrics, HistogramHasTheDocumentedBucketsAndCumulativeCounts) {
  MetricsRegistry registry;
  HttpServerMetrics metrics(registry, "calc");
  auto& add = metrics.operation("add");
  add.observe(200, 0.0003);  // <= 0.0005
  add.observe(200, 0.003);   // <= 0.005
  add.observe(200, 0.7);     // <= 1
  add.observe(200, 30.0);    // only +Inf

  auto buckets = HttpServerMetrics::default_duration_buckets();
  ASSERT_EQ(buckets.front(), 0.0005);
  ASSERT_EQ(buckets.back(), 10.0);

  auto text = registry.render();
  auto bucket = [&](const char* le) {
    return sample(text, std::string(kDuration) +
                            "_bucket{operation=\"add\",service=\"calc\",le=\"" + le + "\"}");
  };
  EXPECT_EQ(bucket("0.0005"), 1.0) << text;
  EXPECT_EQ(bucket("0.001"), 1.0) << text;
  EXPECT_EQ(bucket("0.005"), 2.0) << text;
  EXPECT_EQ(bucket("0.5"), 2.0) << text;
  EXPECT_EQ(bucket("1"), 3.0) << text;
  EXPECT_EQ(bucket("10"), 3.0) << text;
  EXPECT_EQ(bucket("+Inf"), 4.0) << text;
  auto sum = sample(text, std::string(kDuration) + R"(_sum{operation="add",service="calc"})");
  ASSERT_TRUE(sum) << text;
  EXPECT_NEAR(*sum, 30.7033, 1e-9);
}

TEST(HttpServerMetrics, NegativeAndNanDurationsCountAsZero) {
  MetricsRegistry registry;
  HttpServerMetrics metrics(registry, "calc");
  auto& add = metrics.operation("add");
  add.observe(200, -1.0);
  add.observe(200, std::numeric_limits<double>::quiet_NaN());

  auto text = registry.render();
  EXPECT_EQ(sample(text, std::string(kDuration) + R"(_sum{operation="add",service="calc"})"), 0.0)
      << text;
  EXPECT_EQ(sample(text, std::string(kDuration) +
                             R"(_bucket{operation="add",service="calc",le="0.0005"})"),
            2.0)
      << text;
}

// Was: +Inf passed the `>= 0` check and went into the sum, which stayed +Inf for good
// (every later average, rate(sum) / rate(count), was +Inf or NaN). An infinite duration
// is longer than every bound: counted in the +Inf bucket, adding nothing to the sum; -Inf
// is negative and counts as zero like any negative duration.
TEST(HttpServerMetrics, InfiniteDurationsLeaveTheSumFinite) {
  MetricsRegistry registry;
  HttpServerMetrics metrics(registry, "calc");
  auto& add = metrics.operation("add");
  add.observe(200, std::numeric_limits<double>::infinity());
  add.observe(200, -std::numeric_limits<double>::infinity());
  add.observe(200, 0.7);

  auto text = registry.render();
  auto series = [&](const std::string& suffix) {
    return sample(text, std::string(kDuration) + suffix);
  };
  const auto sum = series(R"(_sum{operation="add",service="calc"})");
  ASSERT_TRUE(sum) << text;
  EXPECT_NEAR(*sum, 0.7, 1e-12) << text;
  EXPECT_EQ(series(R"(_count{operation="add",service="calc"})"), 3.0) << text;
  EXPECT_EQ(series(R"(_bucket{operation="add",service="calc",le="0.0005"})"), 1.0) << text;
  EXPECT_EQ(series(R"(_bucket{operation="add",service="calc",le="10"})"), 2.0) << text;
  EXPECT_EQ(series(R"(_bucket{operation="add",service="calc",le="+Inf"})"), 3.0) << text;
  EXPECT_EQ(sample(text, requests_series("200")), 3.0) << text;
}

TEST(HttpServerMetrics, SameOperationNameGivesTheSameObject) {
  MetricsRegistry registry;
  HttpServerMetrics metrics(registry, "calc");
  auto& first = metrics.operation("add");
  EXPECT_EQ(&first, &metrics.operation("add"));
  EXPECT_NE(&first, &metrics.operation("sub"));
  EXPECT_EQ(first.name(), "add");
}

TEST(HttpServerMetrics, TwoServicesShareFamiliesInOneRegistry) {
  MetricsRegistry registry;
  HttpServerMetrics a(registry, "a");
  HttpServerMetrics b(registry, "b");
  a.operation("op").observe(200, 0.001);
  b.operation("op").observe(200, 0.001);
  b.operation("op").observe(200, 0.001);

  auto text = registry.render();
  EXPECT_EQ(sample(text, requests_series("200", "op", "a")), 1.0) << text;
  EXPECT_EQ(sample(text, requests_series("200", "op", "b")), 2.0) << text;
  EXPECT_EQ(text.find("# TYPE coromesh_http_server_requests_total counter"),
            text.rfind("# TYPE coromesh_http_server_requests_total counter"))
      << "one family, not two: " << text;
}

TEST(HttpServerMetrics, InFlightGaugeFollowsIncDecAndTheGuard) {
  MetricsRegistry registry;
  HttpServerMetrics metrics(registry, "calc");
  const char* series = R"(coromesh_http_server_requests_in_flight{service="calc"})";
  metrics.in_flight_inc();
  metrics.in_flight_inc();
  metrics.in_flight_dec();
  EXPECT_EQ(sample(registry.render(), series), 1.0);
  {
    HttpServerMetrics::InFlight guard(metrics);
    EXPECT_EQ(sample(registry.render(), series), 2.0);
  }
  EXPECT_EQ(sample(registry.render(), series), 1.0);
}

TEST(HttpServerMetrics, RejectsBucketsThatAreNotIncreasing) {
  MetricsRegistry registry;
  EXPECT_THROW(HttpServerMetrics(registry, "x", {}), std::invalid_argument);
  EXPECT_THROW(HttpServerMetrics(registry, "x", {0.1, 0.1}), std::invalid_argument);
  EXPECT_THROW(HttpServerMetrics(registry, "x", {0.2, 0.1}), std::invalid_argument);
}

// The +Inf bucket is always added: one given as well would be a second le="+Inf" series
// in the exposition, and a NaN bound (alone, it has nothing to be out of order with)
// breaks every histogram_quantile over it.
TEST(HttpServerMetrics, RejectsBucketsThatAreNotFinite) {
  MetricsRegistry registry;
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(HttpServerMetrics(registry, "x", {0.1, inf}), std::invalid_argument);
  EXPECT_THROW(HttpServerMetrics(registry, "x", {inf}), std::invalid_argument);
  EXPECT_THROW(HttpServerMetrics(registry, "x", {nan}), std::invalid_argument);
  EXPECT_THROW(HttpServerMetrics(registry, "x", {-inf, 0.1}), std::invalid_argument);
}

TEST(HttpServerMetrics, ConcurrentObserveCountsExactly) {
  MetricsRegistry registry;
  HttpServerMetrics metrics(registry, "calc");
  auto& add = metrics.operation("add");
  constexpr int kPerThread = 100'000;
  // Both threads race to fill the same empty cache slots (200 and 500) first.
  auto work = [&add] {
    for (int i = 0; i < kPerThread; ++i) {
      add.observe(i % 10 == 0 ? 500 : 200, 0.001);
    }
  };
  std::thread one(work);
  std::thread two(work);
  one.join();
  two.join();

  auto text = registry.render();
  EXPECT_EQ(sample(text, requests_series("200")), 2.0 * kPerThread * 9 / 10) << text;
  EXPECT_EQ(sample(text, requests_series("500")), 2.0 * kPerThread / 10) << text;
  EXPECT_EQ(sample(text, std::string(kDuration) + R"(_count{operation="add",service="calc"})"),
            2.0 * kPerThread)
      << text;
}

}  // namespace
}  // namespace coromesh::metrics
