// http mode of the public listener (see inbound_listener.hpp): the requests of one
// verified, authorized caller, each sent to the local service over a pooled connection.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include "coromesh/http/error.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/qos/deadline.hpp"
#include "http_exchange.hpp"
#include "inbound_listener.hpp"

namespace coromesh::sidecar {

namespace asio = boost::asio;

asio::awaitable<void> InboundListener::serve_http(TlsStream& tls, std::string peer,
                                                  std::size_t thread) {
  metrics_.active->Increment();
  metrics_.total->Increment();
  struct Leave {
    prometheus::Gauge* active;
    ~Leave() { active->Decrement(); }  // also when the cut-off cancels us mid-request
  } leave{metrics_.active};
  co_await serve_http_exchanges(tls, context_.settings.idle_timeout,
                                [this, &peer, thread](http::Request request) {
                                  return forward_local(std::move(request), peer, thread);
                                });
}

asio::awaitable<http::Response> InboundListener::forward_local(http::Request request,
                                                               const std::string& peer,
                                                               std::size_t thread) {
  const auto received = std::chrono::steady_clock::now();
  const unsigned version = request.version();
  const auto deadline = forwarded_deadline(
      request, std::chrono::duration_cast<qos::Duration>(
                   context_.settings.timeout_for(target_path(request.target()))));
  rewrite_inbound_request(request, deadline, peer);

  auto observe = [&](std::size_t status_class) {
    metrics_.requests_by_class[status_class]->Increment();
    metrics_.request_duration->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - received).count());
  };
  auto failed = [&](prometheus::Counter* fault, http::Status status, std::string_view error,
                    std::string_view reason) {
    observe(0);
    fault->Increment();
    return http::make_error_response(status, error, reason, version);
  };
  const http::Destination local{target_.local.address().to_string(), target_.local.port(), {}};
  try {
    http::Response response =
        co_await local_clients_.at(thread)->send(local, std::move(request), deadline.when());
    const auto status_class = std::min<std::size_t>(response.result_int() / 100, 5);
    observe(status_class);
    if (status_class == 5) {
      metrics_.faults.callee_failure->Increment();
    }
    co_return response;
  } catch (const http::ClientError& error) {
    log::write_limited(log::Level::warn, "sidecar.inbound.request_failed", "local",
                       {{"local", local.host + ":" + std::to_string(local.port)},
                        {"peer", peer},
                        {"error", error.what()}});
    // The local service is the only one there is: nothing is retried (the client's own
    // one retry of a closed pooled connection aside, for idempotent requests).
    switch (static_cast<http::ClientErrc>(error.code().value())) {
      case http::ClientErrc::timeout:
        co_return failed(metrics_.faults.timeout, http::Status::gateway_timeout,
                         "deadline_exceeded", "no answer from the local service in time");
      case http::ClientErrc::connect_failed:
        co_return failed(metrics_.faults.transport, http::Status::service_unavailable,
                         "local_unavailable", "the local service refuses connections");
      default:
        co_return failed(metrics_.faults.callee_failure, http::Status::bad_gateway, "local_failed",
                         "the local service's answer was lost or malformed");
    }
  }
}

}  // namespace coromesh::sidecar
