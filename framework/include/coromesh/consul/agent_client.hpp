#pragma once

// The one interface through which coromesh talks to its service catalog: registration,
// checks, health and Connect queries, KV. HttpAgentClient implements it on the local
// Consul agent's HTTP API; the agent endpoints are deprecated from Consul 1.16 on, so
// everything else (Registrar, watches, the sidecar) depends only on this interface and
// an xDS-based source can replace the implementation later.
//
// Threading: an implementation is bound to one executor; call it from coroutines on that
// executor. Every method may be cancelled through the awaiting coroutine's cancellation
// slot (e.g. `co_await (consul.health_service(...) || timer.async_wait(...))`).
//
// Errors: a rejected or undecodable answer throws ConsulError; failing to reach the agent
// throws http::ClientError (a std::system_error). Blocking queries follow Consul's rules:
// pass the previous QueryResult::index back in QueryOptions::index.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "coromesh/consul/error.hpp"
#include "coromesh/consul/types.hpp"

namespace coromesh::consul {

class AgentClient {
 public:
  template <class T>
  using Task = boost::asio::awaitable<T>;

  virtual ~AgentClient() = default;

  // PUT /v1/agent/service/register. Registering an existing ID replaces it.
  virtual Task<void> register_service(ServiceRegistration registration) = 0;
  // PUT /v1/agent/service/deregister/<id>. An ID the agent does not know is not an
  // error: the service is not registered either way.
  virtual Task<void> deregister_service(std::string service_id) = 0;
  // PUT /v1/agent/service/maintenance/<id>?enable=…&reason=…. Enabling adds a critical
  // check at once, so the instance leaves every `?passing` answer: phase 1 of a graceful
  // shutdown.
  virtual Task<void> set_maintenance(std::string service_id, bool enable, std::string reason) = 0;
  // PUT /v1/agent/check/update/<check_id> for a TTL check (see ttl_check_id()).
  virtual Task<void> update_ttl(std::string check_id, HealthStatus status, std::string output) = 0;
  Task<void> pass_ttl(std::string check_id, std::string output = {});
  Task<void> warn_ttl(std::string check_id, std::string output = {});
  Task<void> fail_ttl(std::string check_id, std::string output = {});

  // GET /v1/agent/service/<id>: the registration the local agent holds, nullopt if none.
  virtual Task<std::optional<AgentService>> agent_service(std::string service_id) = 0;
  // The same as a hash-based blocking query (?hash=…&wait=…): answers once the
  // registration differs from `query.hash` (at once for an empty hash, a missing
  // service, or a deregistration). The default implementation cannot block: it answers
  // agent_service() at once with an empty hash, which tells the caller to poll instead.
  virtual Task<HashQueryResult<std::optional<AgentService>>> agent_service_blocking(
      std::string service_id, HashQueryOptions query);

  // GET /v1/health/service/<name>[?passing]: the instances of `name` (empty if unknown).
  virtual Task<QueryResult<std::vector<ServiceInstance>>> health_service(std::string name,
                                                                         bool passing_only,
                                                                         QueryOptions query) = 0;
  // GET /v1/health/connect/<name>[?passing]: the Connect-capable endpoints (sidecar
  // proxies) in front of `name`.
  virtual Task<QueryResult<std::vector<ServiceInstance>>> health_connect(std::string name,
                                                                         bool passing_only,
                                                                         QueryOptions query) = 0;

  // GET /v1/agent/connect/ca/roots (blocking): the Connect CA's trust anchors.
  virtual Task<QueryResult<CaRoots>> connect_ca_roots(QueryOptions query) = 0;
  // GET /v1/agent/connect/ca/leaf/<service> (blocking): the agent signs (and caches, and
  // renews before expiry) a leaf for `service`; a blocking query returns when it changes,
  // including after a root rotation.
  virtual Task<QueryResult<LeafCertificate>> connect_ca_leaf(std::string service,
                                                             QueryOptions query) = 0;
  // POST /v1/agent/connect/authorize: whether the intentions let the client certificate
  // (its SPIFFE URI and serial) call `target`. A POST, but it changes nothing: safe to
  // repeat. Not a blocking query: cache its answers (connect::Authorizer does).
  // `timeout` bounds the call (at most the implementation's own request timeout; zero:
  // that one): past it the call fails as timed out (http::ClientError, timeout), counted
  // as such by the implementation. A caller that needs a bound passes it here rather than
  // cancelling the call with a timer of its own, which would make an agent that does not
  // answer a cancellation instead of a timeout.
  virtual Task<AuthorizeResult> connect_authorize(std::string target, std::string client_cert_uri,
                                                  std::string client_cert_serial,
                                                  std::chrono::milliseconds timeout) = 0;

  // GET /v1/kv/<key>: nullopt when the key does not exist; the index is valid either way,
  // so a missing key can be watched until it appears.
  virtual Task<QueryResult<std::optional<KvEntry>>> kv_get(std::string key, QueryOptions query) = 0;
  // GET /v1/kv/<prefix>?recurse: every key under `prefix` (empty when there is none; the
  // index is valid either way). One blocking query watches them all, where one query per
  // key would hold one connection to the agent each (the agent allows 200 per client
  // address, shared by every process on the host).
  virtual Task<QueryResult<std::vector<KvEntry>>> kv_list(std::string prefix,
                                                          QueryOptions query) = 0;
  // PUT /v1/kv/<key>. Returns Consul's verdict (false only for failed conditional writes).
  virtual Task<bool> kv_put(std::string key, std::string value) = 0;

  // Changes each time the credentials sent with the calls change (an ACL token file
  // rewritten): the agent keeps the token a service was registered with for its
  // anti-entropy sync, so the Registrar registers again with the new one.
  virtual std::uint64_t credentials_generation() const { return 0; }
};

}  // namespace coromesh::consul
