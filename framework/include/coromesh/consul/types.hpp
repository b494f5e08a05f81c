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

// Consul connects to `address` ("host:port") every `interval`: passing while it accepts.
struct TcpCheck {
  std::string address;
  std::chrono::milliseconds interval = 10s;
  std::chrono::milliseconds timeout = 5s;
};

// Mirrors the health of another service instance on the same agent (a sidecar's check on
// the service it fronts).
struct AliasCheck {
  std::string service_id;
};

using ServiceCheck = std::variant<HttpCheck, TtlCheck, TcpCheck, AliasCheck>;

// The check ID Consul gives the single check registered with service `service_id`.
std::string ttl_check_id(std::string_view service_id);

// One upstream of a connect-proxy: a loopback listener that reaches `destination_name`.
struct ProxyUpstream {
  std::string destination_name;
  std::string local_bind_address;  // empty: the proxy's default (127.0.0.1)
  std::uint16_t local_bind_port = 0;
  std::string protocol;  // Config.protocol: "" or "tcp" (L4), "http" (L7)

  friend bool operator==(const ProxyUpstream&, const ProxyUpstream&) = default;
};

// For `kind = "connect-proxy"` registrations (the sidecar).
struct ProxyConfig {
  std::string destination_service_name;
  std::string destination_service_id;
  std::string local_service_address;
  std::uint16_t local_service_port = 0;
  std::vector<ProxyUpstream> upstreams;
  // Proxy.Config, the proxy's own opaque settings (e.g. "protocol": "http"): its scalar
  // values as text (numbers and booleans as JSON writes them); nested values are left out.
  std::map<std::string, std::string> config;

  friend bool operator==(const ProxyConfig&, const ProxyConfig&) = default;
};

struct ServiceRegistration {
  std::string id;  // unique on the agent; empty: Consul uses `name`
  std::string name;
  std::vector<std::string> tags;
  std::string address;  // empty: the agent's node address
  std::uint16_t port = 0;
  std::map<std::string, std::string> meta;
  std::optional<ServiceCheck> check;
  // Further checks (Consul's `Checks`); the instance passes only while every one does.
  std::vector<ServiceCheck> extra_checks;
  std::string kind;  // empty for a typical service, "connect-proxy" for a sidecar
  std::optional<ProxyConfig> proxy;
  // `"Connect": {"Native": true}`: the service speaks Connect mTLS itself, and Consul
  // lists it among its own Connect endpoints (/v1/health/connect/<name>).
  bool connect_native = false;
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
  std::optional<ProxyConfig> proxy;  // set for kind "connect-proxy"
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

// The Connect CA's trust anchors (GET /v1/agent/connect/ca/roots). During a rotation
// several roots are listed: a peer must trust every one, the active one signs new leaves.
struct CaRoot {
  std::string id;  // the root's key ID, as in ActiveRootID
  std::string name;
  std::string root_cert_pem;
  bool active = false;

  friend bool operator==(const CaRoot&, const CaRoot&) = default;
};

struct CaRoots {
  std::string trust_domain;  // "<cluster-uuid>.consul": every SPIFFE ID of the mesh names it
  std::string active_root_id;
  std::vector<CaRoot> roots;

  // The root whose id is active_root_id; nullptr when the answer names none.
  const CaRoot* active_root() const noexcept;

  friend bool operator==(const CaRoots&, const CaRoots&) = default;
};

// A service's Connect certificate (GET /v1/agent/connect/ca/leaf/<service>). The private
// key is a secret: never log it (nor the whole struct).
struct LeafCertificate {
  std::string serial_number;    // "0b:1a:…", as ClientCertSerial expects it
  std::string cert_pem;         // the leaf first, then any intermediates: send all of it
  std::string private_key_pem;  // EC P-256, SEC1 ("EC PRIVATE KEY") PEM
  std::string service;
  std::string service_uri;  // spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>
  std::chrono::system_clock::time_point valid_after;
  std::chrono::system_clock::time_point valid_before;

  friend bool operator==(const LeafCertificate&, const LeafCertificate&) = default;
};

// POST /v1/agent/connect/authorize: may the client certificate's service call the target?
struct AuthorizeResult {
  bool authorized = false;
  std::string reason;  // Consul's explanation ("Matched L4 intention: …", "Default behavior …")

  friend bool operator==(const AuthorizeResult&, const AuthorizeResult&) = default;
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

// A hash-based blocking query (the agent's own endpoints, e.g. GET /v1/agent/service/<id>):
// with a hash, the agent holds the answer until the content's hash differs from it or
// `wait` passes. An empty hash answers at once.
struct HashQueryOptions {
  std::string hash;
  std::chrono::milliseconds wait = 0ms;  // 0: Consul's default (5 minutes) with a hash
};

template <class T>
struct HashQueryResult {
  T value;
  // X-Consul-ContentHash: pass it back as HashQueryOptions::hash. Empty when the agent
  // sent none (the value is absent, or the agent cannot block on this endpoint).
  std::string hash;
};

}  // namespace coromesh::consul
