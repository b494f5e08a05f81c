#include "coromesh/consul/agent_client.hpp"

namespace coromesh::consul {

// Plain forwarding, not coroutines: the returned awaitable owns the arguments.
AgentClient::Task<void> AgentClient::pass_ttl(std::string check_id, std::string output) {
  return update_ttl(std::move(check_id), HealthStatus::passing, std::move(output));
}

AgentClient::Task<void> AgentClient::warn_ttl(std::string check_id, std::string output) {
  return update_ttl(std::move(check_id), HealthStatus::warning, std::move(output));
}

AgentClient::Task<void> AgentClient::fail_ttl(std::string check_id, std::string output) {
  return update_ttl(std::move(check_id), HealthStatus::critical, std::move(output));
}

AgentClient::Task<HashQueryResult<std::optional<AgentService>>> AgentClient::agent_service_blocking(
    std::string service_id, HashQueryOptions /*query*/) {
  co_return HashQueryResult<std::optional<AgentService>>{
      .value = co_await agent_service(std::move(service_id)), .hash = {}};
}

}  // namespace coromesh::consul
