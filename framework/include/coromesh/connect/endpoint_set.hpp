#pragma once

// The Connect endpoints of one destination service at one moment: what an upstream may
// dial. Immutable once built and shared as std::shared_ptr<const EndpointSet>, so any io
// thread may read a snapshot without locking while the watch publishes the next one.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/consul/types.hpp"

namespace coromesh::connect {

struct Endpoint {
  // "<node>/<instance id>": Consul service IDs are unique per agent only, and sidecar IDs
  // derived from service IDs ("b-sidecar-proxy") commonly repeat on every node.
  std::string key;
  std::string instance_id;  // the Consul service ID of the proxy (or Connect-native service)
  std::string node;
  std::string address;  // where to dial: the sidecar's public address, or the native service's
  std::uint16_t port = 0;
  // The service this endpoint fronts: the name the peer's SPIFFE certificate must carry
  // (spiffe://…/svc/<service>), not the proxy's own name ("b-sidecar-proxy").
  std::string service;

  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

struct EndpointSet {
  std::string service;  // the destination these endpoints front
  // Sorted by key, so that the order (and round robin over it) does not depend on the
  // order of Consul's answer.
  std::vector<Endpoint> endpoints;
  // Increases with every snapshot one watch publishes: tells a newer snapshot from an
  // older one that a slow reader still holds.
  std::uint64_t generation = 0;

  bool empty() const noexcept { return endpoints.empty(); }
  bool contains(std::string_view key) const noexcept;
  std::size_t size() const noexcept { return endpoints.size(); }
};

// Builds the endpoints of `service` from a /v1/health/connect/<service> answer. Every
// instance in that answer fronts `service`: Consul indexes connect-proxy instances by
// their Proxy.DestinationServiceName and Connect-native ones by their own name, so the
// destination name is known without decoding the Proxy block. Instances that are not
// passing or have no port (nothing to dial) are left out.
EndpointSet make_endpoint_set(std::string_view service,
                              const std::vector<consul::ServiceInstance>& instances,
                              std::uint64_t generation);

}  // namespace coromesh::connect
