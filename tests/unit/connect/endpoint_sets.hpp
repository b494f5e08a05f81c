#pragma once

// Hand-built EndpointSet snapshots for balancer tests: endpoints named by their
// instance id, all on node "n1", fronting service "b".

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "coromesh/connect/endpoint_set.hpp"
#include "coromesh/connect/load_balancer.hpp"

namespace coromesh::connect::testing {

inline std::shared_ptr<const EndpointSet> endpoints(const std::vector<std::string>& ids,
                                                    std::uint64_t generation = 1) {
  auto set = std::make_shared<EndpointSet>();
  set->service = "b";
  set->generation = generation;
  std::uint16_t port = 21000;
  for (const auto& id : ids) {
    set->endpoints.push_back(Endpoint{.key = "n1/" + id,
                                      .instance_id = id,
                                      .node = "n1",
                                      .address = "127.0.0.1",
                                      .port = port++,
                                      .service = "b"});
  }
  return set;
}

// endpoint_stats() by instance id ("p1", not "n1/p1").
inline std::map<std::string, EndpointStats> stats_by_id(const LoadBalancer& balancer) {
  std::map<std::string, EndpointStats> out;
  for (auto& stats : balancer.endpoint_stats()) {
    out.emplace(stats.key.substr(3), stats);
  }
  return out;
}

}  // namespace coromesh::connect::testing
