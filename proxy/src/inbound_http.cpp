// http mode of the public listener (see inbound_listener.hpp): the requests of one
// verified, authorized caller, each sent to the local service over a pooled connection.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/write.hpp>

#include "arrival_deadline.hpp"
#include "coromesh/connect/authorizer.hpp"
#include "coromesh/http/error.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/qos/deadline.hpp"
#include "coromesh/runtime/run_on.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "http_exchange.hpp"
#include "inbound_listener.hpp"

namespace coromesh::sidecar {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {
// How long an authorization holds on an open http-mode connection: the Authorizer's own
// cache lifetime, so asking again costs the agent nothing more than new connections do.
constexpr std::chrono::seconds kReauthorizeInterval{1};
}  // namespace

asio::awaitable<void> InboundListener::serve_http(TlsStream& tls, connect::SpiffeId peer,
                                                  std::string peer_serial, std::size_t thread,
                                                  ExchangeControl& control) {
  metrics_.active->Increment();
  metrics_.total->Increment();
  struct Leave {
    prometheus::Gauge* active;
    ~Leave() { active->Decrement(); }  // also when the cut-off cancels us mid-request
  } leave{metrics_.active};
  const std::string peer_uri = peer.uri();
  auto authorized_at = std::chrono::steady_clock::now();
  co_await serve_http_exchanges(
      tls, context_.settings.idle_timeout, context_.settings.hang_up_period(),
      [&](http::Request request) -> asio::awaitable<http::Response> {
        if (std::chrono::steady_clock::now() - authorized_at >= kReauthorizeInterval) {
          // run_on, not co_spawn + use_awaitable: a cut-off racing the answer must not
          // reach freed memory (coromesh/runtime/run_on.hpp).
          const auto decision = co_await runtime::run_on(
              context_.consul_executor,
              context_.authorizer.authorize(target_.service, peer, peer_serial));
          if (!decision.authorized) {
            control.close_after = true;  // refused: this answer is the last one
            context_.metrics.authorization_denied(connect::to_string(decision.source));
            const auto reason = connect::refusal_reason(decision);
            log::write_limited(
                log::Level::warn, "sidecar.inbound.refused", reason,
                {{"reason", reason},
                 {"peer", peer_uri},
                 {"detail", decision.reason.empty() ? decision.detail : decision.reason},
                 {"on", "open connection"}});
            const auto answer = connect::refusal_answer(decision, target_.service, peer);
            co_return http::make_error_response(static_cast<http::Status>(answer.status),
                                                answer.code, answer.reason, request.version(),
                                                false);
          }
          authorized_at = std::chrono::steady_clock::now();
        }
        co_return co_await forward_local(std::move(request), peer_uri, thread);
      },
      &control);
}

asio::awaitable<void> InboundListener::answer_refused(TlsStream& tls,
                                                      http::PeerVerdict::Answer answer) {
  // The request is read whole before the answer (a close with unread data would reset
  // the connection and could lose the answer), but a refused peer's body is not worth
  // more than this: past it the connection is only closed.
  constexpr std::uint64_t kRefusedBodyLimit = 64 * 1024;
  http::framing::RequestParser parser;
  parser.header_limit(kHeaderLimit);
  parser.body_limit(kRefusedBodyLimit);
  boost::beast::flat_buffer buffer;
  asio::steady_timer deadline(co_await asio::this_coro::executor);
  deadline.expires_after(context_.settings.handshake_timeout);
  auto read = co_await (http::framing::read_message(tls, buffer, parser, kHeaderLimit) ||
                        deadline.async_wait(use_tuple));
  if (read.index() == 1 || std::get<0>(read)) {
    co_return;  // silent, slow or not HTTP: closed as in tcp mode
  }
  auto response = http::make_error_response(static_cast<http::Status>(answer.status), answer.code,
                                            answer.reason, parser.get().version(), false);
  deadline.expires_after(context_.settings.handshake_timeout);
  co_await (boost::beast::http::async_write(tls, response, use_tuple) ||
            deadline.async_wait(use_tuple));
  tls.shutdown_send();  // close_notify: the answer is complete, not truncated
}

asio::awaitable<http::Response> InboundListener::forward_local(http::Request request,
                                                               const std::string& peer,
                                                               std::size_t thread) {
  const auto received = std::chrono::steady_clock::now();
  const unsigned version = request.version();
  ArrivalDeadline arrival = arrival_deadline(request, context_.settings, metrics_);
  if (arrival.refusal) {
    co_return std::move(*arrival.refusal);
  }
  const auto& deadline = arrival.forwarded.deadline;
  rewrite_inbound_request(request, arrival.forwarded, peer);

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
  const http::Destination local{local_host_, target_.local.port(), {}};
  try {
    http::Response response =
        co_await local_clients_.at(thread)->send(local, std::move(request), deadline.when());
    // The local service received the request: whatever it answers, it cannot say that
    // nothing reached it (only this sidecar's own answer below may, http/error.hpp).
    response.erase(http::kNotDeliveredHeader);
    const auto status_class = std::min<std::size_t>(response.result_int() / 100, 5);
    observe(status_class);
    metrics_.faults.count_answer(response.result_int());
    co_return response;
  } catch (const boost::system::system_error& cut) {
    // Cancelled by the connection's cut-off at the end of a drain: no answer to count.
    if (cut.code() == asio::error::operation_aborted) {
      metrics_.faults.cancelled->Increment();
    }
    throw;
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
      case http::ClientErrc::connect_timeout: {
        // Nothing reached the local service: the caller may send the request to another
        // instance whatever its method (a POST included), and is told so in a header its
        // client (the framework's, an upstream sidecar's) reads.
        auto answer = failed(metrics_.faults.transport, http::Status::service_unavailable,
                             "local_unavailable", "the local service refuses connections");
        http::mark_not_delivered(answer);
        co_return answer;
      }
      default:
        // Counted as the framework classifies the error (service/fault_classifier.hpp): an
        // answer that is not HTTP is the local service's failure, a lost one (the
        // connection closed before or while answering) transport, as a coromesh caller
        // would call it.
        co_return failed(
            metrics_.faults.of(classify_service_fault(std::make_exception_ptr(error)).kind),
            http::Status::bad_gateway, "local_failed",
            "the local service's answer was lost or malformed");
    }
  }
}

}  // namespace coromesh::sidecar
