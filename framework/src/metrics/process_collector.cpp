#include "coromesh/metrics/process_collector.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

namespace coromesh::metrics {
namespace {

std::optional<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return std::move(text).str();
}

std::optional<std::uint64_t> to_u64(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

// The fields of /proc/self/stat that we export, still in kernel units.
struct StatFields {
  std::uint64_t utime_ticks = 0;
  std::uint64_t stime_ticks = 0;
  std::uint64_t start_ticks_since_boot = 0;
  std::uint64_t vsize_bytes = 0;
  std::uint64_t rss_pages = 0;
};

// proc(5): "pid (comm) state ppid ...". comm may itself contain spaces and ')', so
// fields are counted from the *last* ')'; the token after it is field 3 (state).
std::optional<StatFields> parse_stat(std::string_view text) {
  const auto close = text.rfind(')');
  if (close == std::string_view::npos) {
    return std::nullopt;
  }
  std::istringstream rest{std::string(text.substr(close + 1))};
  std::vector<std::string> fields;  // fields[0] is field 3
  for (std::string token; rest >> token && fields.size() < 22;) {
    fields.push_back(std::move(token));
  }
  if (fields.size() < 22) {
    return std::nullopt;
  }
  auto field = [&](std::size_t number) { return to_u64(fields[number - 3]); };
  auto utime = field(14), stime = field(15), start = field(22), vsize = field(23), rss = field(24);
  if (!utime || !stime || !start || !vsize || !rss) {
    return std::nullopt;
  }
  return StatFields{*utime, *stime, *start, *vsize, *rss};
}

// "btime <seconds since epoch>" in /proc/stat: when the machine booted.
std::optional<std::uint64_t> parse_boot_time(std::string_view text) {
  for (std::size_t pos = 0; pos < text.size();) {
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    auto line = text.substr(pos, end - pos);
    if (line.starts_with("btime ")) {
      return to_u64(line.substr(6));
    }
    pos = end + 1;
  }
  return std::nullopt;
}

// The soft limit on the "Max open files" line of /proc/self/limits.
std::optional<double> parse_max_fds(std::string_view text) {
  constexpr std::string_view kPrefix = "Max open files";
  auto at = text.find(kPrefix);
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  std::istringstream line{std::string(text.substr(at + kPrefix.size()))};
  std::string soft;
  if (!(line >> soft)) {
    return std::nullopt;
  }
  if (soft == "unlimited") {
    return std::numeric_limits<double>::infinity();
  }
  auto value = to_u64(soft);
  return value ? std::optional<double>(static_cast<double>(*value)) : std::nullopt;
}

std::optional<double> count_open_fds(const std::filesystem::path& fd_dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(fd_dir, ec), end;
  if (ec) {
    return std::nullopt;
  }
  // Counts the descriptor this iteration holds open too, as the Go client does.
  double count = 0;
  for (; it != end; it.increment(ec)) {
    if (ec) {
      return std::nullopt;
    }
    count += 1;
  }
  return count;
}

prometheus::MetricFamily single(std::string name, std::string help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family{std::move(name), std::move(help), type, {}};
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

}  // namespace

ProcessCollector::ProcessCollector(std::filesystem::path proc_root)
    : proc_root_(std::move(proc_root)),
      clock_ticks_per_second_(static_cast<double>(::sysconf(_SC_CLK_TCK))),
      page_size_bytes_(static_cast<double>(::sysconf(_SC_PAGESIZE))) {}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;
  const auto self = proc_root_ / "self";

  std::optional<StatFields> stat;
  if (auto text = read_file(self / "stat")) {
    stat = parse_stat(*text);
  }
  if (stat && clock_ticks_per_second_ > 0) {
    const double cpu =
        static_cast<double>(stat->utime_ticks + stat->stime_ticks) / clock_ticks_per_second_;
    families.push_back(single("process_cpu_seconds_total",
                              "Total user and system CPU time spent in seconds.",
                              MetricType::Counter, cpu));
  }
  if (stat) {
    families.push_back(single("process_resident_memory_bytes", "Resident memory size in bytes.",
                              MetricType::Gauge,
                              static_cast<double>(stat->rss_pages) * page_size_bytes_));
    families.push_back(single("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                              MetricType::Gauge, static_cast<double>(stat->vsize_bytes)));
  }
  if (auto open = count_open_fds(self / "fd")) {
    families.push_back(
        single("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, *open));
  }
  if (auto text = read_file(self / "limits")) {
    if (auto max = parse_max_fds(*text)) {
      families.push_back(single("process_max_fds", "Maximum number of open file descriptors.",
                                MetricType::Gauge, *max));
    }
  }
  if (auto text = read_file(proc_root_ / "stat"); text && stat && clock_ticks_per_second_ > 0) {
    if (auto boot = parse_boot_time(*text)) {
      const double start =
          static_cast<double>(*boot) +
          static_cast<double>(stat->start_ticks_since_boot) / clock_ticks_per_second_;
      families.push_back(single("process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.",
                                MetricType::Gauge, start));
    }
  }
  return families;
}

}  // namespace coromesh::metrics
