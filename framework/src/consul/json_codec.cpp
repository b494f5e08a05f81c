#include "json_codec.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <limits>
#include <map>
#include <variant>

#include "encoding.hpp"
#include "json_fields.hpp"

namespace coromesh::consul::detail {
namespace {

using namespace json_fields;

std::uint16_t port_field(const json::object& object) {
  return static_cast<std::uint16_t>(unsigned_field(object, "Port", 65535));
}

std::vector<std::string> tags_field(const json::object& object) {
  std::vector<std::string> tags;
  const auto* value = object.if_contains("Tags");
  if (value == nullptr || value->is_null()) {
    return tags;
  }
  for (const auto& tag : as_array(*value, "Tags")) {
    if (!tag.is_string()) {
      throw DecodeError("Tags holds a non-string");
    }
    tags.emplace_back(tag.get_string());
  }
  return tags;
}

std::map<std::string, std::string> meta_field(const json::object& object) {
  std::map<std::string, std::string> meta;
  const auto* value = object.if_contains("Meta");
  if (value == nullptr || value->is_null()) {
    return meta;
  }
  for (const auto& [key, item] : as_object(*value, "Meta")) {
    if (!item.is_string()) {
      throw DecodeError("Meta." + std::string(key) + " is not a string");
    }
    meta.emplace(std::string(key), std::string(item.get_string()));
  }
  return meta;
}

HealthStatus parse_status(std::string_view text) {
  if (text == "passing") {
    return HealthStatus::passing;
  }
  if (text == "warning") {
    return HealthStatus::warning;
  }
  if (text == "critical") {
    return HealthStatus::critical;
  }
  throw DecodeError("unknown check status '" + std::string(text) + "'");
}

ServiceInstance decode_instance(const json::value& entry_value) {
  const auto& entry = as_object(entry_value, "health entry");
  const auto* node_value = entry.if_contains("Node");
  const auto* service_value = entry.if_contains("Service");
  if (node_value == nullptr || service_value == nullptr) {
    throw DecodeError("health entry lacks Node or Service");
  }
  const auto& node = as_object(*node_value, "Node");
  const auto& service = as_object(*service_value, "Service");

  ServiceInstance instance;
  instance.node = string_field(node, "Node");
  instance.id = string_field(service, "ID");
  instance.name = string_field(service, "Service");
  instance.address = string_field(service, "Address");
  if (instance.address.empty()) {
    instance.address = string_field(node, "Address");  // Consul's documented fallback
  }
  instance.port = port_field(service);
  instance.tags = tags_field(service);
  instance.meta = meta_field(service);
  instance.kind = string_field(service, "Kind");

  // The worst check wins; no checks at all counts as passing, as Consul's ?passing does.
  instance.status = HealthStatus::passing;
  if (const auto* checks = entry.if_contains("Checks"); checks != nullptr && !checks->is_null()) {
    for (const auto& check : as_array(*checks, "Checks")) {
      auto status = parse_status(string_field(as_object(check, "check"), "Status"));
      instance.status = std::min(instance.status, status);
    }
  }
  return instance;
}

json::object check_json(const ServiceCheck& check) {
  json::object out;
  std::optional<std::chrono::milliseconds> deregister_after;
  if (const auto* http = std::get_if<HttpCheck>(&check)) {
    out["HTTP"] = http->url;
    out["Interval"] = go_duration(http->interval);
    out["Timeout"] = go_duration(http->timeout);
    if (!http->method.empty()) {
      out["Method"] = http->method;
    }
    deregister_after = http->deregister_critical_service_after;
  } else if (const auto* ttl = std::get_if<TtlCheck>(&check)) {
    out["TTL"] = go_duration(ttl->ttl);
    deregister_after = ttl->deregister_critical_service_after;
  } else if (const auto* tcp = std::get_if<TcpCheck>(&check)) {
    out["TCP"] = tcp->address;
    out["Interval"] = go_duration(tcp->interval);
    out["Timeout"] = go_duration(tcp->timeout);
  } else {
    out["AliasService"] = std::get<AliasCheck>(check).service_id;
  }
  if (deregister_after) {
    out["DeregisterCriticalServiceAfter"] = go_duration(*deregister_after);
  }
  return out;
}

ProxyConfig decode_proxy(const json::object& object) {
  ProxyConfig proxy;
  proxy.destination_service_name = string_field(object, "DestinationServiceName");
  proxy.destination_service_id = string_field(object, "DestinationServiceID");
  proxy.local_service_address = string_field(object, "LocalServiceAddress");
  proxy.local_service_port =
      static_cast<std::uint16_t>(unsigned_field(object, "LocalServicePort", 65535));
  if (const auto* config = object.if_contains("Config"); config != nullptr && !config->is_null()) {
    for (const auto& [key, item] : as_object(*config, "Proxy.Config")) {
      if (item.is_string()) {
        proxy.config.emplace(std::string(key), std::string(item.get_string()));
      } else if (item.is_number() || item.is_bool()) {
        proxy.config.emplace(std::string(key), json::serialize(item));
      }
    }
  }
  const auto* upstreams = object.if_contains("Upstreams");
  if (upstreams == nullptr || upstreams->is_null()) {
    return proxy;
  }
  for (const auto& item : as_array(*upstreams, "Upstreams")) {
    const auto& u = as_object(item, "upstream");
    const auto type = string_field(u, "DestinationType");
    if (!type.empty() && type != "service") {
      continue;  // prepared queries are not supported: skipped rather than misrouted
    }
    ProxyUpstream upstream;
    upstream.destination_name = string_field(u, "DestinationName");
    upstream.local_bind_address = string_field(u, "LocalBindAddress");
    upstream.local_bind_port =
        static_cast<std::uint16_t>(unsigned_field(u, "LocalBindPort", 65535));
    if (const auto* config = u.if_contains("Config"); config != nullptr && config->is_object()) {
      upstream.protocol = string_field(config->get_object(), "protocol");
    }
    proxy.upstreams.push_back(std::move(upstream));
  }
  return proxy;
}

}  // namespace

std::string encode_registration(const ServiceRegistration& registration) {
  json::object out;
  if (!registration.id.empty()) {
    out["ID"] = registration.id;
  }
  out["Name"] = registration.name;
  if (!registration.tags.empty()) {
    json::array tags;
    for (const auto& tag : registration.tags) {
      tags.emplace_back(tag);
    }
    out["Tags"] = std::move(tags);
  }
  if (!registration.address.empty()) {
    out["Address"] = registration.address;
  }
  out["Port"] = registration.port;
  if (!registration.meta.empty()) {
    json::object meta;
    for (const auto& [key, value] : registration.meta) {
      meta[key] = value;
    }
    out["Meta"] = std::move(meta);
  }
  if (registration.check) {
    out["Check"] = check_json(*registration.check);
  }
  if (!registration.extra_checks.empty()) {
    json::array checks;
    for (const auto& check : registration.extra_checks) {
      checks.emplace_back(check_json(check));
    }
    out["Checks"] = std::move(checks);
  }
  if (!registration.kind.empty()) {
    out["Kind"] = registration.kind;
  }
  if (registration.connect_native) {
    out["Connect"] = json::object{{"Native", true}};
  }
  if (registration.proxy) {
    const auto& proxy = *registration.proxy;
    json::object p;
    p["DestinationServiceName"] = proxy.destination_service_name;
    if (!proxy.destination_service_id.empty()) {
      p["DestinationServiceID"] = proxy.destination_service_id;
    }
    if (!proxy.local_service_address.empty()) {
      p["LocalServiceAddress"] = proxy.local_service_address;
    }
    if (proxy.local_service_port != 0) {
      p["LocalServicePort"] = proxy.local_service_port;
    }
    if (!proxy.upstreams.empty()) {
      json::array upstreams;
      for (const auto& upstream : proxy.upstreams) {
        json::object u;
        u["DestinationType"] = "service";
        u["DestinationName"] = upstream.destination_name;
        if (!upstream.local_bind_address.empty()) {
          u["LocalBindAddress"] = upstream.local_bind_address;
        }
        u["LocalBindPort"] = upstream.local_bind_port;
        if (!upstream.protocol.empty()) {
          u["Config"] = json::object{{"protocol", upstream.protocol}};
        }
        upstreams.emplace_back(std::move(u));
      }
      p["Upstreams"] = std::move(upstreams);
    }
    if (!proxy.config.empty()) {
      json::object config;
      for (const auto& [key, value] : proxy.config) {
        config[key] = value;
      }
      p["Config"] = std::move(config);
    }
    out["Proxy"] = std::move(p);
  }
  return json::serialize(out);
}

std::string encode_check_update(HealthStatus status, std::string_view output) {
  json::object out;
  out["Status"] = to_string(status);
  out["Output"] = output;
  return json::serialize(out);
}

std::vector<ServiceInstance> decode_health(std::string_view body) {
  std::vector<ServiceInstance> instances;
  auto value = parse(body);
  for (const auto& entry : as_array(value, "health answer")) {
    instances.push_back(decode_instance(entry));
  }
  return instances;
}

AgentService decode_agent_service(std::string_view body) {
  auto value = parse(body);
  const auto& object = as_object(value, "agent service");
  AgentService service;
  service.id = string_field(object, "ID");
  service.name = string_field(object, "Service");
  if (service.id.empty() || service.name.empty()) {
    throw DecodeError("agent service lacks ID or Service");
  }
  service.address = string_field(object, "Address");
  service.port = port_field(object);
  service.tags = tags_field(object);
  service.meta = meta_field(object);
  service.kind = string_field(object, "Kind");
  if (const auto* proxy = object.if_contains("Proxy"); proxy != nullptr && !proxy->is_null()) {
    service.proxy = decode_proxy(as_object(*proxy, "Proxy"));
  }
  return service;
}

namespace {

KvEntry decode_one_kv_entry(const boost::json::value& value) {
  const auto& object = as_object(value, "KV entry");
  KvEntry entry;
  entry.key = string_field(object, "Key");
  auto decoded = base64_decode(string_field(object, "Value"));  // null (empty value) reads ""
  if (!decoded) {
    throw DecodeError("KV Value of '" + entry.key + "' is not base64");
  }
  entry.value = std::move(*decoded);
  entry.modify_index = unsigned_field(object, "ModifyIndex");
  entry.flags = unsigned_field(object, "Flags");
  return entry;
}

}  // namespace

KvEntry decode_kv_entry(std::string_view body) {
  auto value = parse(body);
  const auto& array = as_array(value, "KV answer");
  if (array.size() != 1) {
    throw DecodeError("KV answer has " + std::to_string(array.size()) + " entries, not 1");
  }
  return decode_one_kv_entry(array[0]);
}

std::vector<KvEntry> decode_kv_entries(std::string_view body) {
  auto value = parse(body);
  const auto& array = as_array(value, "KV answer");
  std::vector<KvEntry> entries;
  entries.reserve(array.size());
  for (const auto& element : array) {
    entries.push_back(decode_one_kv_entry(element));
  }
  return entries;
}

bool decode_bool(std::string_view body) {
  auto value = parse(body);
  if (!value.is_bool()) {
    throw DecodeError("expected true or false");
  }
  return value.get_bool();
}

}  // namespace coromesh::consul::detail
