#pragma once

// AgentClient on the local Consul agent's HTTP API (v1), through a pooled http::Client.
//
// Ownership: owns its http::Client (connections to the agent are not shared with
// service traffic). Threading: bound to the executor it is built with; call it only from
// coroutines on that executor. Destroy it only when no call is in flight.

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <string>
#include <string_view>

#include "coromesh/consul/agent_client.hpp"
#include "coromesh/http/client.hpp"

namespace coromesh::consul {

struct HttpAgentOptions {
  // "host:port" of the agent's HTTP API; an "http://" prefix (as in CONSUL_HTTP_ADDR) is
  // accepted.
  std::string address = "127.0.0.1:8500";
  std::string token;  // sent as X-Consul-Token when set (ACLs); never logged
  // Deadline of each call; a blocking query gets its wait plus Consul's jitter on top.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(5);
  http::ClientOptions http;
};

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
                                          std::string client_cert_serial) override;
  Task<QueryResult<std::optional<KvEntry>>> kv_get(std::string key, QueryOptions query) override;
  Task<bool> kv_put(std::string key, std::string value) override;

  const http::Destination& destination() const noexcept { return destination_; }
  // The pool of ordinary calls (statistics). Blocking queries have their own, see below.
  http::Client& http_client() noexcept { return http_; }
  // Closes the idle connections of both pools (at shutdown).
  void close_idle();

 private:
  struct Answer;
  Task<Answer> call(http::Verb verb, std::string target, std::string body,
                    std::chrono::milliseconds wait = {},
                    std::string_view content_type = "application/json");
  Task<QueryResult<std::vector<ServiceInstance>>> health(std::string endpoint, std::string name,
                                                         bool passing_only, QueryOptions query);

  HttpAgentOptions options_;
  http::Destination destination_;
  http::Client http_;
  // Blocking queries go through a pool that does not retry a dead pooled connection: that
  // failure usually means the agent restarted, and the watch must learn it to reset its
  // index (a restarted agent's index starts over; a query with the old one would hang).
  http::Client long_poll_;
};

}  // namespace coromesh::consul
