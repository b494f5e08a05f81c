#include "coromesh/consul/types.hpp"

namespace coromesh::consul {

std::string_view to_string(HealthStatus status) noexcept {
  switch (status) {
    case HealthStatus::passing:
      return "passing";
    case HealthStatus::warning:
      return "warning";
    case HealthStatus::critical:
      return "critical";
  }
  return "critical";
}

std::string ttl_check_id(std::string_view service_id) {
  return "service:" + std::string(service_id);
}

const CaRoot* CaRoots::active_root() const noexcept {
  for (const auto& root : roots) {
    if (root.id == active_root_id) {
      return &root;
    }
  }
  return nullptr;
}

}  // namespace coromesh::consul
