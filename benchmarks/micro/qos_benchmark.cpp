// What the QoS policies cost per call: circuit breaker (acquire + on_success), token
// bucket (try_acquire), adaptive limit (acquire + on_sample), and all three together,
// against a bare (non-inlined) function call. Each runs on 1 thread and on 2 threads
// sharing one instance of each policy, as io threads of one service would.
// Run: build/bin/bench_qos.
//
// Absolute numbers depend on the box; the per-policy cost over the bare call is the point.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>

#include "coromesh/qos/adaptive_limit.hpp"
#include "coromesh/qos/circuit_breaker.hpp"
#include "coromesh/qos/rate_limiter.hpp"

namespace {

namespace qos = coromesh::qos;
using namespace std::chrono_literals;

struct Shared {
  qos::CircuitBreaker breaker{{}};
  // High enough that the bucket never empties: the cost measured is the admitting path.
  qos::TokenBucket bucket{{.permits = 1'000'000'000, .period = 1s, .burst = 1'000'000}};
  qos::AdaptiveLimit limit{{.initial_limit = 200, .max_limit = 1000}};
};

Shared& shared() {
  static Shared instance;
  return instance;
}

[[gnu::noinline]] std::int64_t bare_call(std::int64_t x) {
  benchmark::DoNotOptimize(x);
  return x + 1;
}

void BM_BareCall(benchmark::State& state) {
  std::int64_t x = 0;
  for (auto _ : state) {
    x = bare_call(x);
  }
  benchmark::DoNotOptimize(x);
}

void BM_CircuitBreaker(benchmark::State& state) {
  auto& breaker = shared().breaker;
  for (auto _ : state) {
    auto a = breaker.acquire();
    benchmark::DoNotOptimize(a);
    breaker.on_success(1ms);
  }
}

void BM_TokenBucket(benchmark::State& state) {
  auto& bucket = shared().bucket;
  for (auto _ : state) {
    auto a = bucket.try_acquire();
    benchmark::DoNotOptimize(a);
  }
}

void BM_AdaptiveLimit(benchmark::State& state) {
  auto& limit = shared().limit;
  for (auto _ : state) {
    auto a = limit.acquire();
    benchmark::DoNotOptimize(a);
    if (a) {
      limit.on_sample(1ms, true);
    }
  }
}

void BM_BreakerBucketLimit(benchmark::State& state) {
  auto& s = shared();
  std::int64_t x = 0;
  for (auto _ : state) {
    auto b = s.breaker.acquire();
    auto r = s.bucket.try_acquire();
    auto l = s.limit.acquire();
    if (b && r && l) {
      x = bare_call(x);
      s.limit.on_sample(1ms, true);
      s.breaker.on_success(1ms);
    }
  }
  benchmark::DoNotOptimize(x);
}

BENCHMARK(BM_BareCall)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_CircuitBreaker)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_TokenBucket)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_AdaptiveLimit)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_BreakerBucketLimit)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
