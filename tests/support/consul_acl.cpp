#include "consul_acl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <stdexcept>

namespace coromesh::testing {
namespace {

namespace json = boost::json;

json::value operator_call(const ConsulAgent& consul, const std::string& method,
                          const std::string& path, const json::value& body) {
  const auto res = consul.api(method, path, body.is_null() ? std::string() : json::serialize(body));
  if (res.status != 200) {
    throw std::runtime_error(method + " " + path + ": " + std::to_string(res.status) + " " +
                             res.body + res.error);
  }
  return res.body.empty() ? json::value() : json::parse(res.body);
}

AclToken token_from(const json::value& answer) {
  return {std::string(answer.at("AccessorID").as_string()),
          std::string(answer.at("SecretID").as_string())};
}

json::array policy_links(const std::vector<std::string>& policies) {
  json::array links;
  for (const auto& name : policies) {
    links.push_back(json::object{{"Name", name}});
  }
  return links;
}

}  // namespace

std::string create_policy(const ConsulAgent& consul, const std::string& name,
                          const std::string& rules) {
  operator_call(consul, "PUT", "/v1/acl/policy", json::object{{"Name", name}, {"Rules", rules}});
  return name;
}

AclToken create_service_token(const ConsulAgent& consul, const std::string& service,
                              const std::vector<std::string>& policies) {
  json::object body{{"Description", "service " + service},
                    {"ServiceIdentities", json::array{json::object{{"ServiceName", service}}}}};
  if (!policies.empty()) {
    body["Policies"] = policy_links(policies);
  }
  return token_from(operator_call(consul, "PUT", "/v1/acl/token", body));
}

AclToken create_token(const ConsulAgent& consul, const std::string& description,
                      const std::vector<std::string>& policies) {
  return token_from(operator_call(
      consul, "PUT", "/v1/acl/token",
      json::object{{"Description", description}, {"Policies", policy_links(policies)}}));
}

AclToken create_prometheus_token(const ConsulAgent& consul) {
  create_policy(consul, "prometheus-read",
                "service_prefix \"\" { policy = \"read\" }\n"
                "node_prefix \"\" { policy = \"read\" }\n"
                "agent_prefix \"\" { policy = \"read\" }\n");
  return create_token(consul, "prometheus consul_sd", {"prometheus-read"});
}

void delete_token(const ConsulAgent& consul, const AclToken& token) {
  operator_call(consul, "DELETE", "/v1/acl/token/" + token.accessor_id, nullptr);
}

void set_intentions(const ConsulAgent& consul, const std::string& destination,
                    const std::vector<std::pair<std::string, std::string>>& sources) {
  json::array list;
  for (const auto& [name, action] : sources) {
    list.push_back(json::object{{"Name", name}, {"Action", action}});
  }
  operator_call(
      consul, "PUT", "/v1/config",
      json::object{
          {"Kind", "service-intentions"}, {"Name", destination}, {"Sources", std::move(list)}});
}

void deny_all_intentions(const ConsulAgent& consul) {
  set_intentions(consul, "*", {{"*", "deny"}});
}

void write_token_file(const std::filesystem::path& path, const std::string& secret) {
  const auto partial = path.string() + ".partial";
  const int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw std::runtime_error("cannot create " + partial);
  }
  const std::string line = secret + "\n";
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!written) {
    throw std::runtime_error("cannot write " + partial);
  }
  std::filesystem::rename(partial, path);
}

}  // namespace coromesh::testing
