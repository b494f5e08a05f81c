// What choosing an endpoint costs per call: LoadBalancer::pick() + Pick::done() for
// each policy over 8 endpoints, on 1 thread and on 2 threads sharing one balancer (as
// the io threads of one sidecar upstream would).
// Run: build/bin/bench_load_balancer.
//
// Absolute numbers depend on the box; compare the policies, and 1 thread with 2.

#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <string>

#include "coromesh/connect/load_balancer.hpp"

namespace {

namespace connect = coromesh::connect;
using namespace std::chrono_literals;

std::shared_ptr<const connect::EndpointSet> eight_endpoints() {
  auto set = std::make_shared<connect::EndpointSet>();
  set->service = "b";
  set->generation = 1;
  for (std::uint16_t i = 0; i < 8; ++i) {
    auto id = "b-sidecar-" + std::to_string(i);
    set->endpoints.push_back({.key = "n1/" + id,
                              .instance_id = id,
                              .node = "n1",
                              .address = "127.0.0.1",
                              .port = static_cast<std::uint16_t>(21000 + i),
                              .service = "b"});
  }
  return set;
}

template <connect::BalancePolicy Policy>
void BM_PickDone(benchmark::State& state) {
  static connect::LoadBalancer balancer({.policy = Policy, .seed = 1});
  static const auto set = eight_endpoints();
  for (auto _ : state) {
    auto pick = balancer.pick(set);
    benchmark::DoNotOptimize(pick.endpoint().port);
    pick.done(1ms, connect::Outcome::success);
  }
}

BENCHMARK(BM_PickDone<connect::BalancePolicy::round_robin>)->Threads(1)->Threads(2);
BENCHMARK(BM_PickDone<connect::BalancePolicy::least_request>)->Threads(1)->Threads(2);
BENCHMARK(BM_PickDone<connect::BalancePolicy::p2c_ewma>)->Threads(1)->Threads(2);

}  // namespace

BENCHMARK_MAIN();
