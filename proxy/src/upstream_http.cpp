// http mode of an upstream listener (see upstream_listener.hpp): HTTP/1.1 from the local
// client, each request balanced on its own over pooled mTLS connections.
#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <optional>
#include <string_view>

#include "arrival_deadline.hpp"
#include "coromesh/connect/peer_verifier.hpp"
#include "coromesh/http/error.hpp"
#include "coromesh/http/tls.hpp"
#include "coromesh/log/logger.hpp"
#include "coromesh/qos/deadline.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "http_exchange.hpp"
#include "upstream_listener.hpp"

namespace coromesh::sidecar {

namespace asio = boost::asio;

namespace {

// What a failed call tells about the endpoint, and whether another one may be tried.
struct Failure {
  connect::Outcome outcome;
  bool nothing_sent;  // a retry is safe for any method
};

Failure classify(const http::ClientError& error) {
  if (http::never_reached(error.code())) {
    return {connect::Outcome::connect_failure, true};
  }
  // timeout, bad or lost response: the endpoint failed the call
  return {connect::Outcome::callee_failure, false};
}

// upstream_connect_failures_total's reason for a failed call, in tcp mode's words
// (connect_upstream), or none when the connection came up: a lost answer or a request
// timeout is the request's failure (request_failures_total), not the connect's. A failed
// or refused TLS handshake is counted where it happens, with its refusal (on_handshake).
std::optional<std::string_view> connect_failure_reason(const std::error_code& code) {
  if (code == http::ClientErrc::connect_failed) {
    return "connect_refused";
  }
  if (code == http::ClientErrc::connect_timeout) {
    return "connect_timeout";
  }
  return std::nullopt;
}

}  // namespace

void UpstreamListener::start_http(runtime::IoPool& pool) {
  // --connect-timeout: an endpoint that does not answer the TCP connect (black-holed) is
  // left for another one within the request's budget, not waited on until it is spent.
  // --handshake-timeout likewise for the TLS handshake, as in tcp mode (connect_upstream):
  // an endpoint whose process is frozen behind an accepting kernel never answers it.
  const http::ClientOptions options{
      .connect_timeout =
          std::chrono::duration_cast<std::chrono::milliseconds>(context_.settings.connect_timeout),
      .tls_handshake_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
          context_.settings.handshake_timeout)};
  for (std::size_t i = 0; i < pool.size(); ++i) {
    http_clients_.push_back(std::make_unique<http::Client>(pool.executor(i), options));
  }
  http_seen_.resize(pool.size());
  auto& certificates = context_.certificates;
  http_tls_ = std::make_shared<const http::ClientTls>(http::ClientTls{
      .context = [&certificates] { return certificates.client_context(); },
      .server_name = {},
      // Every endpoint fronts spec_.service (EndpointSet): its certificate must say so.
      .verify_peer =
          [&certificates, service = spec_.service](SSL* ssl) {
            const auto verdict = connect::verify_peer(
                ssl, {.trust_domain = certificates.trust_domain(), .service = service});
            return verdict ? http::PeerVerdict::accept(verdict.peer->uri())
                           : http::PeerVerdict::refuse(std::string(to_string(verdict.refusal)));
          },
      .pool_key = "connect:" + spec_.service,
      .describe_failure =
          [](SSL* ssl, const boost::system::error_code& error) {
            return std::string(to_string(connect::classify_handshake_failure(ssl, error).refusal));
          },
      // Counted as tcp mode counts them (connect_upstream): a failed handshake and a
      // refused peer are both "refused" and a connect failure, by reason; a timeout is a
      // connect failure only ("handshake_timeout").
      .on_handshake =
          [metrics = &context_.metrics, listener = metrics_.listener](
              http::TlsHandshakeResult result, std::string_view reason) {
            if (result == http::TlsHandshakeResult::accepted) {
              metrics->handshake(listener, "accepted", "");
            } else if (result == http::TlsHandshakeResult::timed_out) {
              metrics->upstream_connect_failure(listener, "handshake_timeout");
            } else {
              metrics->handshake(listener, "refused", reason);
              metrics->upstream_connect_failure(listener, reason);
            }
          }});
}

void UpstreamListener::forget_departed(std::size_t thread, const connect::Endpoint& used,
                                       const connect::EndpointWatch::Snapshot& picked_from) {
  const auto latest = watch_.snapshot();
  if (!latest) {
    return;
  }
  auto& client = *http_clients_.at(thread);
  // The endpoint may have left while this attempt was out.
  if (latest != picked_from && !latest->contains(used.key)) {
    client.close_idle_to({used.address, used.port, http_tls_});
  }
  auto& seen = http_seen_.at(thread);
  if (latest == seen) {
    return;  // the steady state: nothing has changed since this thread last looked
  }
  // Every connection parked on this thread before now was to an endpoint of `seen` (or of
  // a snapshot that attempts still out were picked from: they check their own endpoint
  // above when they end).
  const auto before = std::exchange(seen, latest);
  if (!before) {
    return;
  }
  for (const auto& endpoint : before->endpoints) {
    if (!latest->contains(endpoint.key)) {
      client.close_idle_to({endpoint.address, endpoint.port, http_tls_});
    }
  }
}

asio::awaitable<void> UpstreamListener::serve_http(TcpSocket& client, std::size_t thread,
                                                   ExchangeControl& control) {
  co_await serve_http_exchanges(
      client, context_.settings.idle_timeout, context_.settings.hang_up_period(),
      [this, thread](http::Request request) { return forward(std::move(request), thread); },
      &control);
}

asio::awaitable<http::Response> UpstreamListener::forward(http::Request request,
                                                          std::size_t thread) {
  const unsigned version = request.version();
  ArrivalDeadline arrival = arrival_deadline(request, context_.settings, metrics_);
  if (arrival.refusal) {
    co_return std::move(*arrival.refusal);
  }
  const auto& deadline = arrival.forwarded.deadline;
  const bool idempotent = is_idempotent(request.method());
  // Upstream connections are pooled, whatever the client does (serve_http_exchanges has
  // removed its Connection).
  keep_alive_without_hop_by_hop(request);
  // Consul's answer is in hand after the first moments: no coroutine to wait for it.
  auto snapshot = watch_.snapshot();
  if (!snapshot) {
    snapshot = co_await endpoints(deadline.when());
  }
  // Our own leaf first: without it every attempt would fail, and each failure be held
  // against a healthy endpoint (outlier ejection) for what is this sidecar's state. Not
  // without an answer from Consul (its patience spent, or the watch ended by a drain):
  // there is no endpoint to hold anything against, and the answer is no_endpoint now.
  const bool have_leaf = !snapshot || context_.certificates.client_context() != nullptr ||
                         co_await current_tls_context(
                             context_.certificates, false,
                             std::min<std::chrono::nanoseconds>(
                                 context_.settings.startup_patience(),
                                 deadline.when() - std::chrono::steady_clock::now())) != nullptr;
  const bool carries_deadline = arrival.forwarded.carried;
  const std::size_t endpoint_total = snapshot ? snapshot->size() : 0;
  std::vector<std::string> tried;
  std::optional<http::Response> last;  // a retryable 502/503, answered if nothing better comes
  // Whether any attempt's request may have reached a service (answered by it, or lost
  // after it was sent): until one has, this sidecar's own answer says that nothing
  // reached the upstream (http::kNotDeliveredHeader), so that its client may send the
  // request again, whatever the method, as after a refused connect of its own.
  bool delivered = false;
  // The class of the last attempt that got no answer, as the framework classifies that
  // error (service/fault_classifier.hpp): what the 502 is counted as when every attempt
  // failed, so that this sidecar's fault label and a coromesh caller's say the same of the
  // same cause: a lost answer (connection closed, outcome unknown) or nothing reached is
  // transport, an answer that is not HTTP is the callee's failure.
  qos::FaultClass unanswered = qos::FaultClass::transport;
  const auto received = std::chrono::steady_clock::now();
  auto answered = [&](http::Response response) {
    const auto status_class = std::min<unsigned>(response.result_int() / 100, 5);
    metrics_.requests_by_class[status_class]->Increment();
    metrics_.faults.count_answer(response.result_int());
    metrics_.request_duration->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - received).count());
    return response;
  };
  // An answer of our own: counted as "local", by its fault.
  auto failed = [&](prometheus::Counter* fault, http::Status status, std::string_view error,
                    std::string_view reason) {
    metrics_.requests_by_class[0]->Increment();
    fault->Increment();
    metrics_.request_duration->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - received).count());
    return http::make_error_response(status, error, reason, version);
  };
  // The same, for an answer given when no request reached any service.
  auto not_delivered = [&](prometheus::Counter* fault, http::Status status, std::string_view error,
                           std::string_view reason) {
    auto answer = failed(fault, status, error, reason);
    http::mark_not_delivered(answer);
    return answer;
  };
  if (!have_leaf) {
    // This sidecar's own identity is not ready: nothing was sent, no callee involved. A
    // refusal, as the framework classifies its identity_unavailable (fault_classifier.hpp).
    co_return not_delivered(metrics_.faults.rejected, http::Status::service_unavailable,
                            "no_certificate_yet",
                            "this sidecar has no leaf certificate from Consul yet; retry shortly");
  }
  for (std::uint32_t attempt = 0; attempt < context_.settings.upstream_attempts; ++attempt) {
    if (deadline.expired()) {
      break;
    }
    auto pick = balancer_.pick(snapshot, tried);
    if (!pick) {
      break;
    }
    if (attempt > 0) {
      metrics_.retries->Increment();
    }
    const auto& endpoint = pick.endpoint();
    tried.push_back(endpoint.key);
    // Kept whole for a retry, unless none can follow (no attempt or no untried endpoint
    // left): then it is moved, not copied (a copy allocates every field again).
    const bool last_attempt =
        attempt + 1 >= context_.settings.upstream_attempts || tried.size() >= endpoint_total;
    http::Request attempt_request =
        last_attempt ? http::Request(std::move(request)) : http::Request(request);
    if (carries_deadline) {
      attempt_request.set(qos::kDeadlineHeader, deadline.header_value());
    }
    const auto started = std::chrono::steady_clock::now();
    try {
      http::Response response =
          co_await http_clients_.at(thread)->send({endpoint.address, endpoint.port, http_tls_},
                                                  std::move(attempt_request), deadline.when());
      forget_departed(thread, endpoint, snapshot);
      const auto status = response.result_int();
      pick.done(std::chrono::steady_clock::now() - started,
                status >= 500 ? connect::Outcome::callee_failure : connect::Outcome::success);
      // The endpoint's sidecar answered that its service refused the connection (its 503
      // local_unavailable): nothing ran, so another endpoint is tried for any method, as
      // after a refused connect (Envoy's connect-failure retry).
      const bool reached = !http::says_not_delivered(response);
      delivered = delivered || reached;
      if ((status == 502 || status == 503) && (idempotent || !reached)) {
        last = std::move(response);
        continue;
      }
      co_return answered(std::move(response));
    } catch (const boost::system::system_error& cut) {
      // Cancelled (serve's cut-off at the end of a drain): no answer, nobody's fault; the
      // pick is abandoned, not held against the endpoint.
      if (cut.code() == asio::error::operation_aborted) {
        metrics_.faults.cancelled->Increment();
      }
      throw;
    } catch (const http::ClientError& error) {
      const auto failure = classify(error);
      delivered = delivered || !failure.nothing_sent;
      pick.done(std::chrono::steady_clock::now() - started, failure.outcome);
      forget_departed(thread, endpoint, snapshot);
      unanswered = classify_service_fault(std::make_exception_ptr(error)).kind;
      if (const auto reason = connect_failure_reason(error.code())) {
        context_.metrics.upstream_connect_failure(spec_.service, *reason);
      }
      log::write_limited(log::Level::warn, "sidecar.upstream.request_failed", spec_.service,
                         {{"upstream", spec_.service},
                          {"endpoint", endpoint.address + ":" + std::to_string(endpoint.port)},
                          {"error", error.what()}});
      if (error.code() == http::ClientErrc::timeout) {
        break;  // the whole deadline is spent: no attempt is left to make
      }
      if (failure.nothing_sent || idempotent) {
        continue;
      }
      co_return failed(metrics_.faults.of(unanswered), http::Status::bad_gateway,
                       "upstream_unavailable",
                       "the upstream failed a request that cannot be repeated");
    }
  }
  if (last) {
    if (delivered) {
      // An earlier or later attempt may have reached a service: the not-delivered answer
      // kept from another endpoint no longer speaks for the request.
      last->erase(http::kNotDeliveredHeader);
    }
    co_return answered(std::move(*last));
  }
  if (tried.empty() && endpoint_total == 0) {
    // Checked before the deadline: a budget spent waiting for Consul's first answer is no
    // callee's timeout (it used to be answered 504 and counted `timeout`). With no answer
    // from Consul the request never left for want of this sidecar's own discovery: a
    // refusal, as the framework classifies its discovery_unavailable; with an answer that
    // lists no passing instance the callee is down: transport, as in the framework.
    context_.metrics.upstream_connect_failure(spec_.service, "no_endpoint");
    co_return not_delivered(snapshot ? metrics_.faults.transport : metrics_.faults.rejected,
                            http::Status::service_unavailable, "no_endpoint",
                            snapshot ? "no healthy instance of " + spec_.service + " in Consul"
                                     : "no answer from Consul about " + spec_.service + " yet");
  }
  if (deadline.expired(qos::Clock::steady())) {
    co_return failed(metrics_.faults.timeout, http::Status::gateway_timeout, "deadline_exceeded",
                     "no answer from " + spec_.service + " in time");
  }
  if (tried.empty()) {
    // Instances listed, none picked: 503, as Envoy answers "no healthy upstream", and no
    // endpoint is to blame.
    context_.metrics.upstream_connect_failure(spec_.service, "no_endpoint");
    co_return not_delivered(metrics_.faults.transport, http::Status::service_unavailable,
                            "no_endpoint",
                            snapshot ? "no healthy instance of " + spec_.service + " in Consul"
                                     : "no answer from Consul about " + spec_.service + " yet");
  }
  if (!delivered) {
    // Every endpoint tried refused the connection (or failed its handshake): nothing was
    // sent anywhere.
    co_return not_delivered(metrics_.faults.of(unanswered), http::Status::bad_gateway,
                            "upstream_unavailable",
                            "no endpoint of " + spec_.service + " answered");
  }
  co_return failed(metrics_.faults.of(unanswered), http::Status::bad_gateway,
                   "upstream_unavailable", "no endpoint of " + spec_.service + " answered");
}

}  // namespace coromesh::sidecar
