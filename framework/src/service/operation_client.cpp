#include "coromesh/service/operation_client.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "coromesh/http/trace_context.hpp"
#include "coromesh/runtime/io_pool.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "coromesh/service/qos_metrics.hpp"
#include "coromesh/service/remote_error.hpp"

namespace coromesh::detail {

namespace asio = boost::asio;

namespace {

// The callee's `{"error": ..., "reason": ...}`, or a code made from the status.
[[noreturn]] void throw_remote_error(const http::Response& response) {
  const unsigned status = response.result_int();
  std::string code = "http_" + std::to_string(status);
  std::string reason;
  boost::system::error_code ec;
  const auto parsed = boost::json::parse(response.body(), ec);
  if (!ec && parsed.is_object()) {
    const auto& object = parsed.get_object();
    if (const auto* error = object.if_contains("error"); error != nullptr && error->is_string()) {
      code = std::string(error->get_string());
    }
    if (const auto* why = object.if_contains("reason"); why != nullptr && why->is_string()) {
      reason = std::string(why->get_string());
    }
  } else {
    constexpr std::size_t kMaxReason = 200;
    reason = response.body().substr(0, kMaxReason);
  }
  throw RemoteError(status, std::move(code), std::move(reason));
}

}  // namespace

OperationTransport::OperationTransport(std::vector<asio::any_io_executor> executors,
                                       OperationClientOptions options)
    : options_(std::move(options)) {
  if (executors.empty()) {
    throw std::invalid_argument("OperationClient: needs at least one executor");
  }
  if (options_.upstream.port == 0 || options_.upstream.host.empty()) {
    throw std::invalid_argument("OperationClient: the upstream needs a host and a port");
  }
  for (auto& executor : executors) {
    auto client = std::make_unique<http::Client>(executor);
    clients_.emplace_back(std::move(executor), std::move(client));
  }
}

OperationTransport::~OperationTransport() = default;

http::Client& OperationTransport::client_for(const asio::any_io_executor& executor) const {
  for (const auto& [own, client] : clients_) {
    if (own == executor) {
      return *client;
    }
  }
  throw std::logic_error("OperationClient: called from an executor it was not built for");
}

asio::awaitable<std::string> OperationTransport::exchange(const OperationRequest& request,
                                                          qos::Deadline deadline) const {
  const auto executor = co_await asio::this_coro::executor;
  http::Client& client = client_for(executor);
  http::Request message{request.method,
                        request.query.empty() ? std::string(request.path)
                                              : std::string(request.path) + "?" + request.query,
                        11};
  message.set(http::Field::host, options_.upstream.host);
  message.set(http::kTraceParentHeader, http::make_traceparent(request.trace_id));
  auto until = std::chrono::steady_clock::now() + options_.default_timeout;
  if (deadline.is_set()) {
    if (deadline.expired()) {
      throw qos::QosRejected("deadline", qos::Reason::deadline_exceeded);
    }
    message.set(std::string(qos::kDeadlineHeader), deadline.header_value());
    until = std::min(until, deadline.when());
  }
  if (!request.body.empty()) {
    message.set(http::Field::content_type, "application/json");
    message.body() = request.body;
  }
  const http::Response response =
      co_await client.send(options_.upstream, std::move(message), until);
  if (response.result_int() / 100 != 2) {
    throw_remote_error(response);
  }
  co_return response.body();
}

std::vector<asio::any_io_executor> executors_of(runtime::IoPool& pool) {
  std::vector<asio::any_io_executor> executors;
  for (std::size_t i = 0; i < pool.size(); ++i) {
    executors.push_back(pool.executor(i));
  }
  return executors;
}

qos::BuildOptions client_build_options(QosMetrics* metrics, const std::string& operation) {
  qos::BuildOptions options;
  options.classify = classify_service_fault;
  if (metrics != nullptr) {
    options.observer = metrics->observer(operation, "client");
  }
  return options;
}

qos::RejectionHook client_rejection_hook(QosMetrics* metrics, const std::string& operation) {
  if (metrics == nullptr) {
    return {};
  }
  return metrics->rejection_hook(operation, "client");
}

void export_client_state(QosMetrics* metrics, const std::string& operation,
                         std::function<std::shared_ptr<const qos::PolicyObjects>()> objects) {
  if (metrics != nullptr) {
    metrics->export_state(operation, "client", std::move(objects));
  }
}

void throw_undecodable_response(std::string_view operation, const std::string& why) {
  throw RemoteError(502, "invalid_response",
                    "the answer of '" + std::string(operation) + "' does not decode: " + why);
}

}  // namespace coromesh::detail
