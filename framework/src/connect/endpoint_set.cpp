#include "coromesh/connect/endpoint_set.hpp"

#include <algorithm>

namespace coromesh::connect {

bool EndpointSet::contains(std::string_view key) const noexcept {
  return std::any_of(endpoints.begin(), endpoints.end(),
                     [key](const Endpoint& endpoint) { return endpoint.key == key; });
}

EndpointSet make_endpoint_set(std::string_view service,
                              const std::vector<consul::ServiceInstance>& instances,
                              std::uint64_t generation) {
  EndpointSet set;
  set.service = std::string(service);
  set.generation = generation;
  set.endpoints.reserve(instances.size());
  for (const auto& instance : instances) {
    if (instance.status != consul::HealthStatus::passing || instance.port == 0) {
      continue;
    }
    set.endpoints.push_back(Endpoint{
        .key = instance.node + "/" + instance.id,
        .instance_id = instance.id,
        .node = instance.node,
        .address = instance.address,
        .port = instance.port,
        .service = std::string(service),
    });
  }
  std::sort(set.endpoints.begin(), set.endpoints.end(),
            [](const Endpoint& a, const Endpoint& b) { return a.key < b.key; });
  return set;
}

}  // namespace coromesh::connect
