#pragma once

// Least-privilege ACL tokens and intentions on a ConsulAgent started with {.acl = true},
// made as the operator (its management token) through Consul's HTTP API:
//
//   ConsulAgent consul({.acl = true});
//   auto add = create_service_token(consul, "add");     // a service identity: "add" and
//                                                        // "add-sidecar-proxy"
//   write_token_file(dir / "add.token", add.secret_id);  // mode 0600
//   deny_all_intentions(consul);                          // "*" -> "*" deny
//   set_intentions(consul, "add", {{"frontend", "allow"}});
//
// Every call throws std::runtime_error with Consul's answer when Consul refuses it.

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "consul_agent.hpp"

namespace coromesh::testing {

struct AclToken {
  std::string accessor_id;  // public: names the token (Consul's 403 bodies quote it)
  std::string secret_id;    // the secret sent as X-Consul-Token
};

// A policy from HCL `rules`; returns its name.
std::string create_policy(const ConsulAgent& consul, const std::string& name,
                          const std::string& rules);
// A token with `service`'s service identity (service:write on it and its sidecar proxy,
// read on every service and node) plus the named policies.
AclToken create_service_token(const ConsulAgent& consul, const std::string& service,
                              const std::vector<std::string>& policies = {});
// A token with the named policies only.
AclToken create_token(const ConsulAgent& consul, const std::string& description,
                      const std::vector<std::string>& policies);
// What Prometheus's consul_sd_configs needs: read on every service, node and agent.
AclToken create_prometheus_token(const ConsulAgent& consul);
// Revokes a token (DELETE /v1/acl/token/<accessor>).
void delete_token(const ConsulAgent& consul, const AclToken& token);

// The service-intentions config entry of `destination`: each source name with "allow"
// or "deny" (replaces the entry).
void set_intentions(const ConsulAgent& consul, const std::string& destination,
                    const std::vector<std::pair<std::string, std::string>>& sources);
// "*" -> "*" deny: only explicit allows pass.
void deny_all_intentions(const ConsulAgent& consul);

// Writes `secret` to `path` with mode 0600 (replacing the file atomically by rename, as a
// secret agent would), so readers never see half a token.
void write_token_file(const std::filesystem::path& path, const std::string& secret);

}  // namespace coromesh::testing
