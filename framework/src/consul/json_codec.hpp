#pragma once

// JSON to and from the agent API's shapes (Consul's PascalCase field names). Decoding
// is strict about types and lenient about absence: a missing optional field reads as
// empty, a field of the wrong type is a DecodeError. Private to the consul module.

#include <chrono>
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
// A recursive KV answer (GET /v1/kv/<prefix>?recurse): every entry, in the agent's order.
std::vector<KvEntry> decode_kv_entries(std::string_view body);
bool decode_bool(std::string_view body);

// Connect: the CA roots, a leaf certificate, and the authorize call.
CaRoots decode_ca_roots(std::string_view body);
LeafCertificate decode_leaf_certificate(std::string_view body);
std::string encode_authorize_request(std::string_view target, std::string_view client_cert_uri,
                                     std::string_view client_cert_serial);
AuthorizeResult decode_authorize_result(std::string_view body);
// RFC 3339 as Go writes it ("2024-05-01T10:00:00Z", fractional seconds and ±hh:mm
// offsets allowed).
std::chrono::system_clock::time_point parse_rfc3339(std::string_view text);

}  // namespace coromesh::consul::detail
