// What a declared operation's QoS chain costs per call, against the same call without
// it, both awaited from a coroutine on an io_context as a handler would:
//
//   BM_BareCall             co_await call()
//   BM_FullChain            timeout + circuit breaker + rate limit + bulkhead + metrics
//                           (the OperationQos a declaration builds, Prometheus metrics
//                           included; the timeout in deadline mode)
//   BM_FullChainPreemptive  the same with the preemptive timeout, the default mode (the
//                           io_context's deadline watchdog and an inline child coroutine)
//   BM_TimeoutOnly          the preemptive timeout alone: what cutting a call off costs
//
// Each runs on 1 thread and on 2 threads sharing one chain (two io threads of a service).
// The overhead is the difference from BM_BareCall at the same thread count; the goal is
// under 250 ns on one thread and under 2x that with 2 threads contending.
// Run: build/bin/bench_qos_chain (or benchmarks/run_micro.sh for the ratios).

#include <benchmark/benchmark.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>

#include "coromesh/metrics/registry.hpp"
#include "coromesh/qos/operation_qos.hpp"
#include "coromesh/service/qos_metrics.hpp"

namespace {

namespace asio = boost::asio;
namespace qos = coromesh::qos;
using namespace std::chrono_literals;

asio::awaitable<std::int64_t> call(std::int64_t x) {
  co_return x + 1;
}

// One chain per mode, shared by every benchmark thread.
struct Chains {
  Chains() : qos_metrics(registry) {}

  std::unique_ptr<qos::OperationQos<std::int64_t>> make(qos::TimeoutMode mode,
                                                        bool only_timeout = false) {
    qos::PolicySet set;
    set.timeout_policy = qos::timeout{.per_attempt = 1s, .mode = mode};
    if (only_timeout) {
      return std::make_unique<qos::OperationQos<std::int64_t>>("bench", set, nullptr,
                                                               qos::BuildOptions{}, nullptr);
    }
    set.breaker_policy = qos::circuit_breaker{};
    // High enough never to refuse: the cost measured is the admitting path.
    set.rate_limit_policy = qos::rate_limit{.permits = 1'000'000'000, .period = 1s};
    set.bulkhead_policy = qos::bulkhead{.max_concurrent = 1000};
    set.metrics_policy = qos::metrics{};
    return std::make_unique<qos::OperationQos<std::int64_t>>(
        "bench", set, nullptr,
        qos::BuildOptions{.observer = qos_metrics.observer("bench", "server")},
        qos_metrics.rejection_hook("bench", "server"));
  }

  coromesh::metrics::MetricsRegistry registry;
  coromesh::QosMetrics qos_metrics;
  std::unique_ptr<qos::OperationQos<std::int64_t>> deadline = make(qos::TimeoutMode::deadline);
  std::unique_ptr<qos::OperationQos<std::int64_t>> preemptive = make(qos::TimeoutMode::preemptive);
  std::unique_ptr<qos::OperationQos<std::int64_t>> timeout_only =
      make(qos::TimeoutMode::preemptive, true);
};

Chains& chains() {
  static Chains instance;
  return instance;
}

// Runs `body(state)` as a coroutine on a private io_context (one per benchmark thread).
template <class Body>
void run_on_io(benchmark::State& state, Body body) {
  asio::io_context io(1);
  asio::co_spawn(io, body(state), asio::detached);
  io.run();
}

void BM_BareCall(benchmark::State& state) {
  run_on_io(state, [](benchmark::State& s) -> asio::awaitable<void> {
    std::int64_t x = 0;
    for (auto _ : s) {
      x = co_await call(x);
    }
    benchmark::DoNotOptimize(x);
  });
}

void run_chain(benchmark::State& state, const qos::OperationQos<std::int64_t>& chain) {
  run_on_io(state, [&chain](benchmark::State& s) -> asio::awaitable<void> {
    std::int64_t x = 0;
    const qos::OperationQos<std::int64_t>::Call next = [&x] { return call(x); };
    for (auto _ : s) {
      x = co_await chain.execute(next);
    }
    benchmark::DoNotOptimize(x);
  });
}

void BM_FullChain(benchmark::State& state) {
  run_chain(state, *chains().deadline);
}

void BM_FullChainPreemptive(benchmark::State& state) {
  run_chain(state, *chains().preemptive);
}

void BM_TimeoutOnly(benchmark::State& state) {
  run_chain(state, *chains().timeout_only);
}

BENCHMARK(BM_BareCall)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_FullChain)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_FullChainPreemptive)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_TimeoutOnly)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
