#pragma once

// An in-memory AgentClient for tests of code built on the interface (the registrar):
// it keeps registrations in a map, records every call, and can be told to be
// unreachable, to reject registrations, or to hang.

#include <boost/asio/this_coro.hpp>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "async_test.hpp"
#include "coromesh/consul/agent_client.hpp"
#include "coromesh/http/client.hpp"

namespace coromesh::consul {

class FakeAgentClient final : public AgentClient {
 public:
  std::vector<std::string> calls;  // "register web-1", "maintenance web-1 on", ...
  std::map<std::string, ServiceRegistration> services;
  bool reachable = true;              // false: every call fails as if nothing listened
  int reject_status = 0;              // non-zero: registrations answer this status
  std::chrono::milliseconds hang{0};  // every call first waits this long (a stuck agent)
  // Connect: what the CA answers, and the intentions' verdict for a (target, client URI).
  // Bump connect_index with every change, as Consul would, or a watch sees old news.
  CaRoots ca_roots;
  LeafCertificate leaf;
  std::uint64_t connect_index = 1;
  std::function<AuthorizeResult(const std::string& target, const std::string& client_uri)>
      authorize = [](const std::string&, const std::string&) {
        return AuthorizeResult{.authorized = true, .reason = "default allow"};
      };
  int authorize_status = 0;  // non-zero: authorize answers this status (a ConsulError)
  std::vector<std::chrono::milliseconds> authorize_timeouts;  // the bound of each authorize
  std::uint64_t credentials = 0;  // credentials_generation(): bump for a rotated token

  std::uint64_t credentials_generation() const override { return credentials; }

  Task<void> register_service(ServiceRegistration registration) override {
    auto id = registration.id.empty() ? registration.name : registration.id;
    co_await enter("register " + id);
    if (reject_status != 0) {
      throw ConsulError("PUT /v1/agent/service/register", reject_status, "Missing service name");
    }
    services[id] = std::move(registration);
  }
  Task<void> deregister_service(std::string service_id) override {
    co_await enter("deregister " + service_id);
    services.erase(service_id);
  }
  Task<void> set_maintenance(std::string service_id, bool enable, std::string reason) override {
    co_await enter("maintenance " + service_id + (enable ? " on " : " off ") + reason);
  }
  Task<void> update_ttl(std::string check_id, HealthStatus status, std::string) override {
    co_await enter("ttl " + check_id + " " + std::string(to_string(status)));
  }
  Task<std::optional<AgentService>> agent_service(std::string service_id) override {
    co_await enter("agent_service " + service_id);
    auto it = services.find(service_id);
    if (it == services.end()) {
      co_return std::nullopt;
    }
    co_return AgentService{.id = service_id, .name = it->second.name};
  }
  Task<QueryResult<std::vector<ServiceInstance>>> health_service(std::string name, bool,
                                                                 QueryOptions) override {
    co_await enter("health " + name);
    co_return QueryResult<std::vector<ServiceInstance>>{};
  }
  Task<QueryResult<std::vector<ServiceInstance>>> health_connect(std::string name, bool,
                                                                 QueryOptions) override {
    co_await enter("connect " + name);
    co_return QueryResult<std::vector<ServiceInstance>>{};
  }
  Task<QueryResult<CaRoots>> connect_ca_roots(QueryOptions) override {
    co_await enter("ca_roots");
    co_return QueryResult<CaRoots>{ca_roots, connect_index};
  }
  Task<QueryResult<LeafCertificate>> connect_ca_leaf(std::string service, QueryOptions) override {
    co_await enter("ca_leaf " + service);
    co_return QueryResult<LeafCertificate>{leaf, connect_index};
  }
  Task<AuthorizeResult> connect_authorize(std::string target, std::string client_cert_uri,
                                          std::string, std::chrono::milliseconds timeout) override {
    authorize_timeouts.push_back(timeout);
    if (hang > timeout && timeout > std::chrono::milliseconds::zero()) {
      // As the real client does: the bound ends the call as a timeout.
      calls.push_back("authorize " + target + " " + client_cert_uri);
      co_await coromesh::testing::sleep_for(timeout);
      throw http::ClientError(
          http::ClientErrc::timeout,
          "timed out after " + std::to_string(timeout.count()) + "ms waiting for a response");
    }
    co_await enter("authorize " + target + " " + client_cert_uri);
    if (authorize_status != 0) {
      throw ConsulError("POST /v1/agent/connect/authorize", authorize_status, "boom");
    }
    co_return authorize(target, client_cert_uri);
  }
  Task<QueryResult<std::optional<KvEntry>>> kv_get(std::string key, QueryOptions) override {
    co_await enter("kv_get " + key);
    co_return QueryResult<std::optional<KvEntry>>{};
  }
  Task<QueryResult<std::vector<KvEntry>>> kv_list(std::string prefix, QueryOptions) override {
    co_await enter("kv_list " + prefix);
    co_return QueryResult<std::vector<KvEntry>>{};
  }
  Task<bool> kv_put(std::string key, std::string) override {
    co_await enter("kv_put " + key);
    co_return true;
  }

  std::size_t count(std::string_view prefix) const {
    std::size_t n = 0;
    for (const auto& call : calls) {
      n += call.starts_with(prefix) ? 1u : 0u;
    }
    return n;
  }

 private:
  Task<void> enter(std::string call) {
    calls.push_back(std::move(call));
    if (hang > std::chrono::milliseconds::zero()) {
      co_await coromesh::testing::sleep_for(hang);
      // A cancelled wait surfaces as the transport would report it.
      auto state = co_await boost::asio::this_coro::cancellation_state;
      if (state.cancelled() != boost::asio::cancellation_type::none) {
        throw boost::system::system_error(boost::asio::error::operation_aborted);
      }
    }
    if (!reachable) {
      throw http::ClientError(http::ClientErrc::connect_failed,
                              "connect to 127.0.0.1:8500 failed: Connection refused");
    }
  }
};

}  // namespace coromesh::consul
