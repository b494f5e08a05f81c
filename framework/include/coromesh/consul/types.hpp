#pragma once

// The values the Consul agent client speaks in: what a service registers, what health
// queries return, KV entries, and the index/wait pair of blocking queries. Plain data,
// independent of how they travel (the agent's HTTP API today, xDS perhaps later).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace coromesh::consul {

using namespace std::chrono_literals;

// Aggregated health, worst first when compared: an instance with any critical check
// (maintenance mode included) is critical.
enum class HealthStatus : std::uint8_t { critical, warning, passing };
std::string_view to_string(HealthStatus status) noexcept;

// Consul polls `url` every `interval`; 2xx is passing, 429 warning, anything else critical.
struct HttpCheck {
  std::string url;
  std::chrono::milliseconds interval = 10s;
  std::chrono::milliseconds timeout = 5s;
  std::string method;  // empty: GET
  // Consul removes the service after its check has been critical this long; unset: never.
  std::optional<std::chrono::milliseconds> deregister_critical_service_after;
};

// The service reports itself with pass/warn/fail_ttl (check ID ttl_check_id(service_id))
// at least every `ttl`, or Consul marks it critical.
struct TtlCheck {
  std::chrono::milliseconds ttl = 15s;
  std::optional<std::chrono::milliseconds> deregister_critical_service_after;
};

using ServiceCheck = std::variant<HttpCheck, TtlCheck>;

// The check ID Consul gives the single check registered with service `service_id`.
std::string ttl_check_id(std::string_view service_id);

// For `kind = "connect-proxy"` registrations (the sidecar).
struct ProxyConfig {
  std::string destination_service_name;
  std::string destination_service_id;
  std::string local_service_address;
  std::uint16_t local_service_port = 0;
};

struct ServiceRegistration {
  std::string id;  // unique on the agent; empty: Consul uses `name`
  std::string name;
  std::vector<std::string> tags;
  std::string address;  // empty: the agent's node address
  std::uint16_t port = 0;
  std::map<std::string, std::string> meta;
  std::optional<ServiceCheck> check;
  std::string kind;  // empty for a typical service, "connect-proxy" for a sidecar
  std::optional<ProxyConfig> proxy;
};

// A service as the local agent holds it (GET /v1/agent/service/<id>).
struct AgentService {
  std::string id;
  std::string name;
  std::vector<std::string> tags;
  std::string address;
  std::uint16_t port = 0;
  std::map<std::string, std::string> meta;
  std::string kind;
};

// One entry of a health query: a service instance on a node, with its aggregated status.
struct ServiceInstance {
  std::string node;
  std::string id;
  std::string name;
  std::string address;  // the service's address, or its node's when it registered none
  std::uint16_t port = 0;
  std::vector<std::string> tags;
  std::map<std::string, std::string> meta;
  std::string kind;
  HealthStatus status = HealthStatus::critical;

  friend bool operator==(const ServiceInstance&, const ServiceInstance&) = default;
};

struct KvEntry {
  std::string key;
  std::string value;  // decoded (Consul sends base64)
  std::uint64_t modify_index = 0;
  std::uint64_t flags = 0;

  friend bool operator==(const KvEntry&, const KvEntry&) = default;
};

// A blocking query: with index > 0 Consul holds the answer until its data moves past
// `index` or `wait` passes (Consul adds up to wait/16 of jitter). index 0 answers at once.
struct QueryOptions {
  std::uint64_t index = 0;
  std::chrono::milliseconds wait = 0ms;  // 0: Consul's default (5 minutes) when index > 0
};

template <class T>
struct QueryResult {
  T value;
  std::uint64_t index = 0;  // X-Consul-Index: pass it back as QueryOptions::index
};

}  // namespace coromesh::consul
