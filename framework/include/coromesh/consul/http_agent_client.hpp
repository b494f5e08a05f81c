#pragma once

// AgentClient on the local Consul agent's HTTP API (v1), through a pooled http::Client.
//
// Ownership: owns its http::Client (connections to the agent are not shared with
// service traffic). Threading: bound to the executor it is built with; call it only from
// coroutines on that executor. Destroy it only when no call is in flight.

#include <array>
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "coromesh/consul/agent_client.hpp"
#include "coromesh/consul/token_source.hpp"
#include "coromesh/http/client.hpp"

namespace coromesh::consul {

struct HttpAgentOptions {
  // "host:port" of the agent's HTTP API; an "http://" prefix (as in CONSUL_HTTP_ADDR) is
  // accepted.
  std::string address = "127.0.0.1:8500";
  std::string token;  // sent as X-Consul-Token when set (ACLs); never logged
  // A file holding the token, re-read when it changes (see token_source.hpp); takes the
  // place of `token` when set. The constructor throws std::runtime_error (naming the
  // path) when it cannot be read.
  std::string token_file;
  // Deadline of each call; a blocking query gets its wait plus Consul's jitter on top.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(5);
  http::ClientOptions http;
};

// How Consul calls ended, for coromesh_consul_requests_total{outcome}.
enum class RequestOutcome : std::uint8_t {
  ok,           // 2xx
  not_found,    // 404: an answer for some calls (no such key, no such service)
  forbidden,    // 403: the ACL token lacks a permission, or is unknown (revoked)
  rejected,     // any other 4xx but 429: the caller's request (ConsulError::caller_fault())
  failed,       // 5xx: Consul's own failure
  unreachable,  // no answer: connect failure (refused, black-holed), broken connection
  throttled,    // 429: the agent asks this client to slow down (too many connections)
  timeout,      // no answer within the call's deadline: a hung or overloaded agent
};
inline constexpr std::size_t kRequestOutcomes = 8;
std::string_view to_string(RequestOutcome outcome) noexcept;
using RequestCounts = std::array<std::uint64_t, kRequestOutcomes>;  // by RequestOutcome

class HttpAgentClient final : public AgentClient {
 public:
  // Throws std::invalid_argument naming the address when it is not "host:port".
  HttpAgentClient(boost::asio::any_io_executor executor, HttpAgentOptions options);
  ~HttpAgentClient() override;

  Task<void> register_service(ServiceRegistration registration) override;
  Task<void> deregister_service(std::string service_id) override;
  Task<void> set_maintenance(std::string service_id, bool enable, std::string reason) override;
  Task<void> update_ttl(std::string check_id, HealthStatus status, std::string output) override;
  Task<std::optional<AgentService>> agent_service(std::string service_id) override;
  Task<HashQueryResult<std::optional<AgentService>>> agent_service_blocking(
      std::string service_id, HashQueryOptions query) override;
  Task<QueryResult<std::vector<ServiceInstance>>> health_service(std::string name,
                                                                 bool passing_only,
                                                                 QueryOptions query) override;
  Task<QueryResult<std::vector<ServiceInstance>>> health_connect(std::string name,
                                                                 bool passing_only,
                                                                 QueryOptions query) override;
  Task<QueryResult<CaRoots>> connect_ca_roots(QueryOptions query) override;
  Task<QueryResult<LeafCertificate>> connect_ca_leaf(std::string service,
                                                     QueryOptions query) override;
  Task<AuthorizeResult> connect_authorize(std::string target, std::string client_cert_uri,
                                          std::string client_cert_serial,
                                          std::chrono::milliseconds timeout) override;
  Task<QueryResult<std::optional<KvEntry>>> kv_get(std::string key, QueryOptions query) override;
  Task<QueryResult<std::vector<KvEntry>>> kv_list(std::string prefix, QueryOptions query) override;
  Task<bool> kv_put(std::string key, std::string value) override;

  const http::Destination& destination() const noexcept { return destination_; }
  // The pool of ordinary calls (statistics). Blocking queries have their own, see below.
  http::Client& http_client() noexcept { return http_; }
  // Closes the idle connections of both pools (at shutdown).
  void close_idle();
  // Calls so far by outcome; any thread.
  RequestCounts request_counts() const noexcept;
  std::uint64_t credentials_generation() const override { return token_.generation(); }

 private:
  struct Answer;
  // `timeout`, when positive and shorter, bounds the call instead of request_timeout.
  Task<Answer> call(http::Verb verb, std::string target, std::string body,
                    std::chrono::milliseconds wait = {},
                    std::string_view content_type = "application/json",
                    std::chrono::milliseconds timeout = {});
  Task<QueryResult<std::vector<ServiceInstance>>> health(std::string endpoint, std::string name,
                                                         bool passing_only, QueryOptions query);

  void count(RequestOutcome outcome) noexcept;

  HttpAgentOptions options_;
  TokenSource token_;
  std::array<std::atomic<std::uint64_t>, kRequestOutcomes> counts_{};
  http::Destination destination_;
  http::Client http_;
  // Blocking queries go through a pool that does not retry a dead pooled connection: that
  // failure usually means the agent restarted, and the watch must learn it to reset its
  // index (a restarted agent's index starts over; a query with the old one would hang).
  http::Client long_poll_;
};

}  // namespace coromesh::consul
