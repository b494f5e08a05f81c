#include "coromesh/consul/http_agent_client.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <utility>

#include "encoding.hpp"
#include "json_codec.hpp"

namespace coromesh::consul {
namespace {

// Consul's own default when a blocking query names no wait, and its maximum.
constexpr std::chrono::milliseconds kDefaultWait = std::chrono::minutes(5);
constexpr std::chrono::milliseconds kMaxWait = std::chrono::minutes(10);

http::Destination parse_address(std::string_view address) {
  auto invalid = [&](std::string_view why) {
    return std::invalid_argument("consul address '" + std::string(address) + "' " +
                                 std::string(why) + " (expected host:port)");
  };
  std::string_view rest = address;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.find("://") != std::string_view::npos) {
    throw invalid("uses an unsupported scheme");
  }
  while (rest.ends_with('/')) {
    rest.remove_suffix(1);
  }
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    throw invalid("has no host or no port");
  }
  auto host = rest.substr(0, colon);
  if (host.starts_with('[') && host.ends_with(']')) {  // [::1]:8500
    host = host.substr(1, host.size() - 2);
  }
  auto port_text = rest.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    throw invalid("has an invalid port");
  }
  return {std::string(host), static_cast<std::uint16_t>(port)};
}

// Adds `name[=value]` to a target's query string.
void add_param(std::string& target, std::string_view name, std::string_view value = {}) {
  target += target.find('?') == std::string::npos ? '?' : '&';
  target += name;
  if (!value.empty()) {
    target += '=';
    target += detail::url_encode(value);
  }
}

// Adds the blocking-query parameters and returns how long Consul may hold the answer.
std::chrono::milliseconds add_blocking_params(std::string& target, const QueryOptions& query) {
  if (query.index == 0) {
    return {};
  }
  // Always name the wait explicitly: our deadline has to know how long Consul may hold.
  auto wait = query.wait > std::chrono::milliseconds::zero() ? std::min(query.wait, kMaxWait)
                                                             : kDefaultWait;
  add_param(target, "index", std::to_string(query.index));
  add_param(target, "wait", detail::go_duration(wait));
  return wait;
}

// Consul's error bodies do not echo the token, but a proxy in front of it might: the
// secret never reaches a message.
std::string without_secret(std::string text, const std::string& secret) {
  if (secret.size() < 4) {
    return text;  // too short to be a real token, and replacing it would garble the text
  }
  for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
    text.replace(at, secret.size(), "<token>");
  }
  return text;
}

http::ClientOptions without_retry(http::ClientOptions options) {
  options.retry_closed_pooled_connection = false;
  return options;
}

}  // namespace

std::string_view to_string(RequestOutcome outcome) noexcept {
  switch (outcome) {
    case RequestOutcome::ok:
      return "ok";
    case RequestOutcome::not_found:
      return "not_found";
    case RequestOutcome::forbidden:
      return "forbidden";
    case RequestOutcome::rejected:
      return "rejected";
    case RequestOutcome::failed:
      return "failed";
    case RequestOutcome::unreachable:
      return "unreachable";
    case RequestOutcome::throttled:
      return "throttled";
    case RequestOutcome::timeout:
      return "timeout";
  }
  return "unknown";
}

struct HttpAgentClient::Answer {
  std::string request;  // "GET /v1/kv/x", for error messages
  http::Response response;

  int status() const { return static_cast<int>(response.result_int()); }
  bool ok() const { return status() / 100 == 2; }
  [[noreturn]] void reject() const { throw ConsulError(request, status(), response.body()); }
  [[noreturn]] void malformed(std::string_view problem) const {
    throw ConsulError(request, status(), response.body(), problem);
  }
  // Decodes the body with `decode`, reporting a bad body as a ConsulError.
  template <class Decode>
  auto decode(Decode&& decode_body) const {
    try {
      return decode_body(std::string_view(response.body()));
    } catch (const detail::DecodeError& e) {
      malformed(e.what());
    }
  }
  std::uint64_t index() const {
    auto it = response.find("X-Consul-Index");
    std::uint64_t index = 0;
    if (it == response.end()) {
      malformed("no X-Consul-Index header");
    }
    auto text = it->value();
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), index);
    if (ec != std::errc{} || end != text.data() + text.size()) {
      malformed("X-Consul-Index is not a number");
    }
    return index;
  }
};

HttpAgentClient::HttpAgentClient(boost::asio::any_io_executor executor, HttpAgentOptions options)
    : options_(std::move(options)),
      token_(options_.token, options_.token_file),
      destination_(parse_address(options_.address)),
      http_(executor, options_.http),
      long_poll_(executor, without_retry(options_.http)) {}

HttpAgentClient::~HttpAgentClient() = default;

RequestCounts HttpAgentClient::request_counts() const noexcept {
  RequestCounts counts{};
  for (std::size_t i = 0; i < kRequestOutcomes; ++i) {
    counts[i] = counts_[i].load(std::memory_order_relaxed);
  }
  return counts;
}

void HttpAgentClient::count(RequestOutcome outcome) noexcept {
  counts_[static_cast<std::size_t>(outcome)].fetch_add(1, std::memory_order_relaxed);
}

void HttpAgentClient::close_idle() {
  http_.close_idle();
  long_poll_.close_idle();
}

AgentClient::Task<HttpAgentClient::Answer> HttpAgentClient::call(
    http::Verb verb, std::string target, std::string body, std::chrono::milliseconds wait,
    std::string_view content_type, std::chrono::milliseconds timeout) {
  http::Request request(verb, target, 11);
  // Read for every call, blocking queries included: a rewritten token file is in force
  // from the next call on.
  const std::string token = token_.current();
  if (!token.empty()) {
    request.set("X-Consul-Token", token);
  }
  if (!body.empty()) {
    request.set(http::Field::content_type, content_type);
    request.body() = std::move(body);
  }
  // A caller's own bound, when shorter, replaces the request timeout: the deadline passes
  // here, and the call is counted as timed out, instead of the caller cancelling it.
  const auto bound = timeout > std::chrono::milliseconds::zero()
                         ? std::min(timeout, options_.request_timeout)
                         : options_.request_timeout;
  // Consul adds up to wait/16 to a blocking query's wait, to spread herds of watchers.
  auto deadline = http::Client::Clock::now() + bound + wait + wait / 16;
  Answer answer;
  // The query string is left out of messages: it carries nothing that identifies the
  // failure better than the path, and keeps log lines short.
  answer.request =
      std::string(http::beast_http::to_string(verb)) + " " + target.substr(0, target.find('?'));
  auto& pool = wait > std::chrono::milliseconds::zero() ? long_poll_ : http_;
  try {
    answer.response = co_await pool.send(destination_, std::move(request), deadline);
  } catch (const http::ClientError& e) {
    // One classification: a deadline that passed is a timeout (the agent hung), anything
    // else that left no answer is a transport failure.
    count(e.code() == http::ClientErrc::timeout ? RequestOutcome::timeout
                                                : RequestOutcome::unreachable);
    throw;
  }
  const int status = answer.status();
  count(status / 100 == 2   ? RequestOutcome::ok
        : status == 404     ? RequestOutcome::not_found
        : status == 403     ? RequestOutcome::forbidden
        : status == 429     ? RequestOutcome::throttled
        : status / 100 == 4 ? RequestOutcome::rejected
                            : RequestOutcome::failed);
  if (!answer.ok()) {
    answer.response.body() = without_secret(std::move(answer.response.body()), token);
  }
  co_return answer;
}

AgentClient::Task<void> HttpAgentClient::register_service(ServiceRegistration registration) {
  auto answer = co_await call(http::Verb::put, "/v1/agent/service/register",
                              detail::encode_registration(registration));
  if (!answer.ok()) {
    answer.reject();
  }
}

AgentClient::Task<void> HttpAgentClient::deregister_service(std::string service_id) {
  auto answer = co_await call(http::Verb::put,
                              "/v1/agent/service/deregister/" + detail::url_encode(service_id), {});
  if (!answer.ok() && answer.status() != 404) {
    answer.reject();
  }
}

AgentClient::Task<void> HttpAgentClient::set_maintenance(std::string service_id, bool enable,
                                                         std::string reason) {
  std::string target = "/v1/agent/service/maintenance/" + detail::url_encode(service_id);
  add_param(target, "enable", enable ? "true" : "false");
  if (!reason.empty()) {
    add_param(target, "reason", reason);
  }
  auto answer = co_await call(http::Verb::put, std::move(target), {});
  if (!answer.ok()) {
    answer.reject();
  }
}

AgentClient::Task<void> HttpAgentClient::update_ttl(std::string check_id, HealthStatus status,
                                                    std::string output) {
  auto answer =
      co_await call(http::Verb::put, "/v1/agent/check/update/" + detail::url_encode(check_id),
                    detail::encode_check_update(status, output));
  if (!answer.ok()) {
    answer.reject();
  }
}

AgentClient::Task<std::optional<AgentService>> HttpAgentClient::agent_service(
    std::string service_id) {
  auto answer =
      co_await call(http::Verb::get, "/v1/agent/service/" + detail::url_encode(service_id), {});
  if (answer.status() == 404) {
    co_return std::nullopt;
  }
  if (!answer.ok()) {
    answer.reject();
  }
  co_return answer.decode(detail::decode_agent_service);
}

AgentClient::Task<HashQueryResult<std::optional<AgentService>>>
HttpAgentClient::agent_service_blocking(std::string service_id, HashQueryOptions query) {
  std::string target = "/v1/agent/service/" + detail::url_encode(service_id);
  std::chrono::milliseconds wait{};
  if (!query.hash.empty()) {
    wait = query.wait > std::chrono::milliseconds::zero() ? std::min(query.wait, kMaxWait)
                                                          : kDefaultWait;
    add_param(target, "hash", query.hash);
    add_param(target, "wait", detail::go_duration(wait));
  }
  auto answer = co_await call(http::Verb::get, std::move(target), {}, wait);
  HashQueryResult<std::optional<AgentService>> result;
  if (answer.status() == 404) {
    co_return result;
  }
  if (!answer.ok()) {
    answer.reject();
  }
  result.value = answer.decode(detail::decode_agent_service);
  if (const auto hash = answer.response.find("X-Consul-ContentHash");
      hash != answer.response.end()) {
    result.hash = std::string(hash->value());
  }
  co_return result;
}

AgentClient::Task<QueryResult<std::vector<ServiceInstance>>> HttpAgentClient::health_service(
    std::string name, bool passing_only, QueryOptions query) {
  return health("service", std::move(name), passing_only, query);
}

AgentClient::Task<QueryResult<std::vector<ServiceInstance>>> HttpAgentClient::health_connect(
    std::string name, bool passing_only, QueryOptions query) {
  return health("connect", std::move(name), passing_only, query);
}

AgentClient::Task<QueryResult<std::vector<ServiceInstance>>> HttpAgentClient::health(
    std::string endpoint, std::string name, bool passing_only, QueryOptions query) {
  std::string target = "/v1/health/" + endpoint + "/" + detail::url_encode(name);
  if (passing_only) {
    add_param(target, "passing");
  }
  auto wait = add_blocking_params(target, query);
  auto answer = co_await call(http::Verb::get, std::move(target), {}, wait);
  if (!answer.ok()) {
    answer.reject();
  }
  co_return QueryResult<std::vector<ServiceInstance>>{answer.decode(detail::decode_health),
                                                      answer.index()};
}

AgentClient::Task<QueryResult<CaRoots>> HttpAgentClient::connect_ca_roots(QueryOptions query) {
  std::string target = "/v1/agent/connect/ca/roots";
  auto wait = add_blocking_params(target, query);
  auto answer = co_await call(http::Verb::get, std::move(target), {}, wait);
  if (!answer.ok()) {
    answer.reject();
  }
  co_return QueryResult<CaRoots>{answer.decode(detail::decode_ca_roots), answer.index()};
}

AgentClient::Task<QueryResult<LeafCertificate>> HttpAgentClient::connect_ca_leaf(
    std::string service, QueryOptions query) {
  std::string target = "/v1/agent/connect/ca/leaf/" + detail::url_encode(service);
  auto wait = add_blocking_params(target, query);
  auto answer = co_await call(http::Verb::get, std::move(target), {}, wait);
  if (!answer.ok()) {
    answer.reject();
  }
  co_return QueryResult<LeafCertificate>{answer.decode(detail::decode_leaf_certificate),
                                         answer.index()};
}

AgentClient::Task<AuthorizeResult> HttpAgentClient::connect_authorize(
    std::string target, std::string client_cert_uri, std::string client_cert_serial,
    std::chrono::milliseconds timeout) {
  auto answer =
      co_await call(http::Verb::post, "/v1/agent/connect/authorize",
                    detail::encode_authorize_request(target, client_cert_uri, client_cert_serial),
                    {}, "application/json", timeout);
  if (!answer.ok()) {
    answer.reject();
  }
  co_return answer.decode(detail::decode_authorize_result);
}

AgentClient::Task<QueryResult<std::optional<KvEntry>>> HttpAgentClient::kv_get(std::string key,
                                                                               QueryOptions query) {
  std::string target = "/v1/kv/" + detail::url_encode(key, true);
  auto wait = add_blocking_params(target, query);
  auto answer = co_await call(http::Verb::get, std::move(target), {}, wait);
  QueryResult<std::optional<KvEntry>> result;
  if (answer.status() != 404) {
    if (!answer.ok()) {
      answer.reject();
    }
    result.value = answer.decode(detail::decode_kv_entry);
  }
  result.index = answer.index();
  co_return result;
}

AgentClient::Task<QueryResult<std::vector<KvEntry>>> HttpAgentClient::kv_list(std::string prefix,
                                                                              QueryOptions query) {
  std::string target = "/v1/kv/" + detail::url_encode(prefix, true);
  add_param(target, "recurse");
  auto wait = add_blocking_params(target, query);
  auto answer = co_await call(http::Verb::get, std::move(target), {}, wait);
  QueryResult<std::vector<KvEntry>> result;
  if (answer.status() != 404) {  // 404: no key under the prefix
    if (!answer.ok()) {
      answer.reject();
    }
    result.value = answer.decode(detail::decode_kv_entries);
  }
  result.index = answer.index();
  co_return result;
}

AgentClient::Task<bool> HttpAgentClient::kv_put(std::string key, std::string value) {
  auto answer = co_await call(http::Verb::put, "/v1/kv/" + detail::url_encode(key, true),
                              std::move(value), {}, "application/octet-stream");
  if (!answer.ok()) {
    answer.reject();
  }
  co_return answer.decode(detail::decode_bool);
}

}  // namespace coromesh::consul
