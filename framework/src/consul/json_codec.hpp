#pragma once

// JSON to and from the agent API's shapes (Consul's PascalCase field names). Decoding
// is strict about types and lenient about absence: a missing optional field reads as
// empty, a field of the wrong type is a DecodeError. Private to the consul module.

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/consul/types.hpp"

namespace coromesh::consul::detail {

// What is wrong with a body; HttpAgentClient turns it into a ConsulError.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string encode_registration(const ServiceRegistration& registration);
std::string encode_check_update(HealthStatus status, std::string_view output);

std::vector<ServiceInstance> decode_health(std::string_view body);
AgentService decode_agent_service(std::string_view body);
// GET /v1/kv/<key> answers a one-element array.
KvEntry decode_kv_entry(std::string_view body);
bool decode_bool(std::string_view body);

}  // namespace coromesh::consul::detail
