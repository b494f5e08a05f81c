#include "coromesh/metrics/process_collector.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "coromesh/metrics/registry.hpp"
#include "exposition.hpp"
#include "test_env.hpp"

namespace coromesh::metrics {
namespace {

using testing::has_line;
using testing::sample;

std::map<std::string, prometheus::MetricFamily> by_name(
    const std::vector<prometheus::MetricFamily>& families) {
  std::map<std::string, prometheus::MetricFamily> out;
  for (const auto& family : families) {
    out.emplace(family.name, family);
  }
  return out;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST(ProcessCollector, ReportsPlausibleValuesForThisProcess) {
  auto families = by_name(ProcessCollector().Collect());
  ASSERT_EQ(families.size(), 6u);

  const auto& cpu = families.at("process_cpu_seconds_total");
  EXPECT_EQ(cpu.type, prometheus::MetricType::Counter);
  EXPECT_GE(cpu.metric.at(0).counter.value, 0.0);

  EXPECT_GT(families.at("process_resident_memory_bytes").metric.at(0).gauge.value, 0.0);
  EXPECT_GE(families.at("process_virtual_memory_bytes").metric.at(0).gauge.value,
            families.at("process_resident_memory_bytes").metric.at(0).gauge.value);
  EXPECT_GE(families.at("process_open_fds").metric.at(0).gauge.value, 3.0);  // stdin/out/err
  EXPECT_GE(families.at("process_max_fds").metric.at(0).gauge.value,
            families.at("process_open_fds").metric.at(0).gauge.value);

  const double start = families.at("process_start_time_seconds").metric.at(0).gauge.value;
  EXPECT_LE(start, now_seconds() + 1.0);
  EXPECT_GT(start, now_seconds() - 3600.0) << "this test process started within the hour";
}

TEST(ProcessCollector, RendersWithStandardTypeLines) {
  MetricsRegistry registry;
  registry.add_collectable(std::make_shared<ProcessCollector>());
  auto text = registry.render();
  EXPECT_TRUE(has_line(text, "# TYPE process_cpu_seconds_total counter")) << text;
  for (const char* gauge : {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                            "process_open_fds", "process_max_fds", "process_start_time_seconds"}) {
    EXPECT_TRUE(has_line(text, std::string("# TYPE ") + gauge + " gauge")) << text;
    EXPECT_TRUE(sample(text, gauge)) << gauge << "\n" << text;
  }
}

void write(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A fake procfs: a command name with spaces and a ')' must not shift the fields.
TEST(ProcessCollector, ParsesAFakeProcTreeWithAHostileCommandName) {
  coromesh::testing::TempDir root("proc");
  const auto self = root.path() / "self";
  std::filesystem::create_directories(self / "fd");
  for (const char* fd : {"0", "1", "2", "7"}) {
    write(self / "fd" / fd, "");
  }
  const long ticks = ::sysconf(_SC_CLK_TCK);
  const long page = ::sysconf(_SC_PAGESIZE);
  // Fields 14/15 (utime/stime) = 3*ticks and 1*ticks; 22 (starttime) = 100*ticks;
  // 23 (vsize) = 123456789; 24 (rss) = 10 pages.
  write(self / "stat", "42 (evil) name (x) S 1 42 42 0 -1 4194304 0 0 0 0 " +
                           std::to_string(3 * ticks) + " " + std::to_string(ticks) +
                           " 0 0 20 0 1 0 " + std::to_string(100 * ticks) +
                           " 123456789 10 18446744073709551615 0 0\n");
  write(root.path() / "stat", "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n");
  write(self / "limits",
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max open files            unlimited            unlimited            files     \n");

  auto families = by_name(ProcessCollector(root.path()).Collect());
  ASSERT_EQ(families.size(), 6u);
  EXPECT_EQ(families.at("process_cpu_seconds_total").metric.at(0).counter.value, 4.0);
  EXPECT_EQ(families.at("process_virtual_memory_bytes").metric.at(0).gauge.value, 123456789.0);
  EXPECT_EQ(families.at("process_resident_memory_bytes").metric.at(0).gauge.value,
            10.0 * static_cast<double>(page));
  EXPECT_EQ(families.at("process_open_fds").metric.at(0).gauge.value, 4.0);
  EXPECT_TRUE(std::isinf(families.at("process_max_fds").metric.at(0).gauge.value));
  EXPECT_EQ(families.at("process_start_time_seconds").metric.at(0).gauge.value, 1700000100.0);
}

TEST(ProcessCollector, LeavesOutWhatItCannotRead) {
  coromesh::testing::TempDir root("proc");
  std::filesystem::create_directories(root.path() / "self");
  write(root.path() / "self" / "stat", "garbage without the closing paren");
  write(root.path() / "self" / "limits", "Max open files  lots\n");
  EXPECT_TRUE(ProcessCollector(root.path()).Collect().empty());
  EXPECT_TRUE(ProcessCollector(root.path() / "missing").Collect().empty());
}

}  // namespace
}  // namespace coromesh::metrics
