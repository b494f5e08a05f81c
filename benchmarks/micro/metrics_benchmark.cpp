// What a request costs the metrics layer: OperationMetrics::observe() (counter pointer
// cached per status code) against prometheus-cpp used naively, looking the series up
// with Family::Add({labels}) on every request. Run: build/bin/bench_metrics.
//
// The ratio table printed at the end is the point; absolute numbers depend on the box.

#include <benchmark/benchmark.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "coromesh/metrics/http_server_metrics.hpp"
#include "coromesh/metrics/registry.hpp"

namespace {

using coromesh::metrics::HttpServerMetrics;
using coromesh::metrics::MetricsRegistry;

// Status codes in the proportions a healthy service sees, so the cache is exercised on
// more than one slot.
int status_for(std::int64_t i) {
  return i % 16 == 0 ? 503 : (i % 8 == 0 ? 400 : 200);
}

struct Shared {
  MetricsRegistry registry;
  HttpServerMetrics server{registry, "calc"};
  coromesh::metrics::OperationMetrics& add = server.operation("add");
  prometheus::Family<prometheus::Counter>& naive_requests =
      prometheus::BuildCounter()
          .Name("naive_requests_total")
          .Help("baseline")
          .Register(*registry.prometheus_registry());
  prometheus::Family<prometheus::Histogram>& naive_durations =
      prometheus::BuildHistogram()
          .Name("naive_duration_seconds")
          .Help("baseline")
          .Register(*registry.prometheus_registry());
  std::vector<double> buckets = HttpServerMetrics::default_duration_buckets();
};

Shared& shared() {
  static Shared instance;  // one set of series for every thread, as in a server
  return instance;
}

void BM_Observe(benchmark::State& state) {
  auto& add = shared().add;
  std::int64_t i = 0;
  for (auto _ : state) {
    add.observe(status_for(i++), 0.0012);
  }
}

// The baseline the brief names: the counter only, found by labels on every request.
void BM_NaiveCounterAdd(benchmark::State& state) {
  auto& family = shared().naive_requests;
  std::int64_t i = 0;
  for (auto _ : state) {
    family
        .Add({{"service", "calc"}, {"operation", "add"}, {"code", std::to_string(status_for(i++))}})
        .Increment();
  }
}

// Same work as observe() (counter and histogram), done naively: Family::Add for the
// histogram also constructs a throw-away Histogram before it finds the existing one.
void BM_NaiveCounterAndHistogramAdd(benchmark::State& state) {
  auto& s = shared();
  std::int64_t i = 0;
  for (auto _ : state) {
    s.naive_requests
        .Add({{"service", "calc"}, {"operation", "add"}, {"code", std::to_string(status_for(i++))}})
        .Increment();
    s.naive_durations.Add({{"service", "calc"}, {"operation", "add"}}, s.buckets).Observe(0.0012);
  }
}

BENCHMARK(BM_Observe)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_NaiveCounterAdd)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_NaiveCounterAndHistogramAdd)->Threads(1)->Threads(2)->UseRealTime();

// Prints the usual console table, then how many times faster observe() is than each
// baseline at the same thread count.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // Colour codes only on a terminal: the numbers are often pasted into notes.
  RatioReporter() : ConsoleReporter(::isatty(STDOUT_FILENO) != 0 ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    // With --benchmark_repetitions the median (reported after the repetitions)
    // replaces the single runs.
    for (const auto& run : runs) {
      if (run.error_occurred) {
        continue;
      }
      if (run.run_type == Run::RT_Iteration ||
          (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median")) {
        ns_per_op_[run.run_name.str()] = {run.GetAdjustedRealTime(), run.GetAdjustedCPUTime()};
      }
    }
  }

  void print_ratios() const {
    // CPU time is shown too: on a shared machine real time includes waiting for a core.
    std::printf(
        "\nobserve() vs naive prometheus-cpp (ns per request; ratio > 1: observe() is "
        "faster)\n");
    std::printf("  %-9s %-31s %17s %17s %15s\n", "", "baseline", "baseline real/cpu",
                "observe real/cpu", "ratio real/cpu");
    for (const char* threads : {"threads:1", "threads:2"}) {
      auto ours = find(std::string("BM_Observe/real_time/") + threads);
      for (const char* baseline : {"BM_NaiveCounterAdd", "BM_NaiveCounterAndHistogramAdd"}) {
        auto theirs = find(std::string(baseline) + "/real_time/" + threads);
        if (ours.real > 0 && theirs.real > 0) {
          std::printf("  %-9s %-31s %8.1f /%7.1f %8.1f /%7.1f %6.1fx /%6.1fx\n", threads, baseline,
                      theirs.real, theirs.cpu, ours.real, ours.cpu, theirs.real / ours.real,
                      theirs.cpu / ours.cpu);
        }
      }
    }
  }

 private:
  struct Time {
    double real = 0;
    double cpu = 0;
  };
  Time find(const std::string& name) const {
    auto it = ns_per_op_.find(name);
    return it == ns_per_op_.end() ? Time{} : it->second;
  }
  std::map<std::string, Time> ns_per_op_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios();
  benchmark::Shutdown();
  return 0;
}
