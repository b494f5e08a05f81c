// What a declared operation's QoS chain costs per call, against the same call without
// it, both awaited from a coroutine on an io_context as a handler would:
//
//   BM_BareCall             co_await call()
//   BM_DefaultChain         every policy a declaration can list that a JVM team would
//                           also stack (timeout, retry, circuit breaker, rate limit,
//                           bulkhead, metrics), each at its declared default (policies.hpp)
//                           in the default order; the rate limit raised so that it never
//                           refuses. The figure benchmarks/suites/qos.sh compares with
//                           the same chain of resilience4j decorators.
//   BM_FullChain            timeout + circuit breaker + rate limit + bulkhead + metrics
//                           (no retry), the timeout in deadline mode
//   BM_FullChainPreemptive  the same with the preemptive timeout, the default mode (the
//                           io_context's deadline watchdog and an inline child coroutine)
//   BM_Chain/<kind>         a chain of that one policy (at its defaults; metrics with
//                           its Prometheus observer); BM_Chain/no_policy: an empty
//                           chain, what the chain itself costs around any policy
//
// Each runs on 1 thread and on 2 threads sharing one chain (two io threads of a service).
// The overhead is the difference from BM_BareCall at the same thread count; the goal is
// under 250 ns on one thread and under 1.25x that per call with 2 threads contending.
// Run: build/bin/bench_qos_chain, or benchmarks/run.sh qos for the side by side.

#include <benchmark/benchmark.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
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

// High enough never to refuse: the cost measured is the admitting path.
constexpr qos::rate_limit kNeverRefusing{.permits = 1'000'000'000, .period = 1s};

// The chains measured, each built once and shared by every benchmark thread.
enum class Subject : std::uint8_t {
  default_chain,
  full_deadline,
  full_preemptive,
  timeout,
  retry,
  circuit_breaker,
  rate_limit,
  bulkhead,
  adaptive_limit,
  metrics,
  no_policy,
};
constexpr std::size_t kSubjects = static_cast<std::size_t>(Subject::no_policy) + 1;

qos::PolicySet policies_of(Subject subject) {
  qos::PolicySet set;
  switch (subject) {
    case Subject::default_chain:
      set.timeout_policy = qos::timeout{};
      set.retry_policy = qos::retry{};
      set.breaker_policy = qos::circuit_breaker{};
      set.rate_limit_policy = kNeverRefusing;
      set.bulkhead_policy = qos::bulkhead{};
      set.metrics_policy = qos::metrics{};
      break;
    case Subject::full_deadline:
    case Subject::full_preemptive:
      set.timeout_policy =
          qos::timeout{.per_attempt = 1s,
                       .mode = subject == Subject::full_deadline ? qos::TimeoutMode::deadline
                                                                 : qos::TimeoutMode::preemptive};
      set.breaker_policy = qos::circuit_breaker{};
      set.rate_limit_policy = kNeverRefusing;
      set.bulkhead_policy = qos::bulkhead{.max_concurrent = 1000};
      set.metrics_policy = qos::metrics{};
      break;
    case Subject::timeout:
      set.timeout_policy = qos::timeout{};
      break;
    case Subject::retry:
      set.retry_policy = qos::retry{};
      break;
    case Subject::circuit_breaker:
      set.breaker_policy = qos::circuit_breaker{};
      break;
    case Subject::rate_limit:
      set.rate_limit_policy = kNeverRefusing;
      break;
    case Subject::bulkhead:
      set.bulkhead_policy = qos::bulkhead{};
      break;
    case Subject::adaptive_limit:
      // Its defaults, but never below the 2 calls the benchmark threads keep in flight:
      // on a loaded machine a descheduled thread's slow call makes the limit back off
      // to its minimum (1), which would refuse the other thread.
      set.adaptive_policy = qos::adaptive_limit{.min_limit = 2};
      break;
    case Subject::metrics:
      set.metrics_policy = qos::metrics{};
      break;
    case Subject::no_policy:  // what the chain itself costs, whatever it holds
      break;
  }
  return set;
}

struct Chains {
  Chains() : qos_metrics(registry) {
    for (std::size_t i = 0; i < kSubjects; ++i) {
      // The observer and the rejection hook are the Prometheus ones a service wires up.
      chains[i] = std::make_unique<qos::OperationQos<std::int64_t>>(
          "bench", policies_of(static_cast<Subject>(i)), nullptr,
          qos::BuildOptions{.observer = qos_metrics.observer("bench", "server")},
          qos_metrics.rejection_hook("bench", "server"));
    }
  }

  const qos::OperationQos<std::int64_t>& operator[](Subject subject) const {
    return *chains[static_cast<std::size_t>(subject)];
  }

  coromesh::metrics::MetricsRegistry registry;
  coromesh::QosMetrics qos_metrics;
  std::array<std::unique_ptr<qos::OperationQos<std::int64_t>>, kSubjects> chains;
};

const Chains& chains() {
  static const Chains instance;
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

void BM_Chain(benchmark::State& state, Subject subject) {
  const auto& chain = chains()[subject];
  run_on_io(state, [&chain](benchmark::State& s) -> asio::awaitable<void> {
    std::int64_t x = 0;
    const qos::OperationQos<std::int64_t>::Call next = [&x] { return call(x); };
    for (auto _ : s) {
      try {
        x = co_await chain.execute(next);
      } catch (const std::exception& e) {
        // A refusal ends this benchmark with the reason, not the whole binary (GB
        // aborts when a thread leaves its loop early without an error).
        s.SkipWithError(e.what());
        break;
      }
    }
    benchmark::DoNotOptimize(x);
  });
}

void BM_DefaultChain(benchmark::State& state) {
  BM_Chain(state, Subject::default_chain);
}
void BM_FullChain(benchmark::State& state) {
  BM_Chain(state, Subject::full_deadline);
}
void BM_FullChainPreemptive(benchmark::State& state) {
  BM_Chain(state, Subject::full_preemptive);
}

BENCHMARK(BM_BareCall)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_DefaultChain)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_FullChain)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_FullChainPreemptive)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Chain, timeout, Subject::timeout)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Chain, retry, Subject::retry)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Chain, circuit_breaker, Subject::circuit_breaker)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Chain, rate_limit, Subject::rate_limit)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Chain, bulkhead, Subject::bulkhead)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Chain, adaptive_limit, Subject::adaptive_limit)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Chain, metrics, Subject::metrics)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Chain, no_policy, Subject::no_policy)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
