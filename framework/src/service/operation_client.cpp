#include "coromesh/service/operation_client.hpp"

#include <algorithm>
#include <boost/asio/this_coro.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "coromesh/http/error.hpp"
#include "coromesh/http/trace_context.hpp"
#include "coromesh/runtime/io_pool.hpp"
#include "coromesh/service/discovered_upstream.hpp"
#include "coromesh/service/fault_classifier.hpp"
#include "coromesh/service/qos_metrics.hpp"
#include "coromesh/service/remote_error.hpp"

namespace coromesh::detail {

namespace asio = boost::asio;

namespace {

// At most `limit` bytes of `text`, not cut inside a UTF-8 sequence (the clip goes into
// JSON answers).
std::string clipped(std::string_view text, std::size_t limit) {
  if (text.size() <= limit) {
    return std::string(text);
  }
  std::size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0U) == 0x80U) {
    --end;  // text[end] continues the sequence before it: cut before that sequence
  }
  return std::string(text.substr(0, end));
}

// The callee's `{"error": ..., "reason": ...}`, or a code made from the status. Both are
// the callee's words, clipped: they go into this service's logs and, for an error a
// handler lets escape, into its own answer to its caller, hop after hop.
[[noreturn]] void throw_remote_error(const http::Response& response) {
  constexpr std::size_t kMaxCode = 64;
  constexpr std::size_t kMaxReason = 200;
  const unsigned status = response.result_int();
  std::string code = "http_" + std::to_string(status);
  std::string reason;
  boost::system::error_code ec;
  const auto parsed = boost::json::parse(response.body(), ec);
  if (!ec && parsed.is_object()) {
    const auto& object = parsed.get_object();
    if (const auto* error = object.if_contains("error"); error != nullptr && error->is_string()) {
      code = clipped(error->get_string(), kMaxCode);
    }
    if (const auto* why = object.if_contains("reason"); why != nullptr && why->is_string()) {
      reason = clipped(why->get_string(), kMaxReason);
    }
  } else {
    reason = clipped(response.body(), kMaxReason);
  }
  throw RemoteError(status, std::move(code), std::move(reason), http::says_not_delivered(response));
}

// Sends `message`. A non-idempotent call made by a served operation's code keeps that
// operation's retry from running the code, and sending the request, again: its attempt is
// marked unrepeatable as the request goes out, before the connect (a preemptive timeout may
// cut this frame off mid-send, and the retry then decides before anything here runs again),
// and the mark is taken back only when the request certainly never left.
//
// `deadline` (when set) goes on the request as what is left of it now, as the request goes
// out: not before the waits for Consul's first answer or for this caller's own certificate,
// whose time the callee does not have (qos/deadline.hpp).
asio::awaitable<http::Response> send_marked(http::Client& client, const OperationRequest& request,
                                            http::Destination destination, http::Request message,
                                            std::chrono::steady_clock::time_point until,
                                            qos::Deadline deadline) {
  if (deadline.is_set()) {
    message.set(std::string(qos::kDeadlineHeader), deadline.header_value());
  }
  // Held by this frame, whatever the request is destroyed with.
  const std::shared_ptr<qos::UnrepeatableMarks> sent_within = request.sent_within;
  if (sent_within) {
    sent_within->mark();
  }
  try {
    http::Response response =
        co_await client.send(std::move(destination), std::move(message), until);
    if (sent_within && http::says_not_delivered(response)) {
      sent_within->unmark_unsent();  // the callee's sidecar: its service never saw it
    }
    co_return response;
  } catch (const http::ClientError& error) {
    if (sent_within && http::never_reached(error.code())) {
      sent_within->unmark_unsent();
    }
    throw;
  }
}

// Returns once `tls` (null: plain, nothing to wait for) has a certificate of this caller's
// own: in Connect-native mode this service's leaf, which Consul issues a moment after
// start-up, or only once a token that may fetch it is in place. Without it every handshake
// fails, and each failure would be held against whichever healthy endpoint was picked
// (its outlier ejection, the callee's breaker, a retry): so it is awaited before any pick,
// as the sidecar does (proxy/src/upstream_listener.cpp). Throws identity_unavailable when
// `until` comes first, operation_aborted when the awaiting coroutine is cancelled.
asio::awaitable<void> await_own_certificate(std::shared_ptr<const http::ClientTls> tls,
                                            std::chrono::steady_clock::time_point until,
                                            std::string_view callee) {
  if (!tls || !tls->context || tls->context()) {
    co_return;
  }
  const auto started = std::chrono::steady_clock::now();
  if (co_await http::await_tls_context(tls->context, until)) {
    co_return;
  }
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
  throw http::ClientError(http::ClientErrc::identity_unavailable,
                          "this caller has no TLS certificate of its own yet (Connect-native: "
                          "its leaf from Consul) after waiting " +
                              std::to_string(waited) + "ms: no endpoint of '" +
                              std::string(callee) + "' was picked, nothing was sent");
}

// The request of one try of `request`: built again for each endpoint tried, since
// sending consumes it.
http::Request make_message(const OperationRequest& request) {
  http::Request message{request.method,
                        request.query.empty() ? std::string(request.path)
                                              : std::string(request.path) + "?" + request.query,
                        11};
  message.set(http::kTraceParentHeader, http::make_traceparent(request.trace_id));
  if (!request.body.empty()) {
    message.set(http::Field::content_type, "application/json");
    message.body() = request.body;
  }
  return message;
}

}  // namespace

OperationTransport::OperationTransport(std::vector<asio::any_io_executor> executors,
                                       OperationClientOptions options)
    : options_(std::move(options)) {
  if (executors.empty()) {
    throw std::invalid_argument("OperationClient: needs at least one executor");
  }
  if (!options_.discovered && (options_.upstream.port == 0 || options_.upstream.host.empty())) {
    throw std::invalid_argument("OperationClient: the upstream needs a host and a port");
  }
  for (auto& executor : executors) {
    auto client = std::make_unique<http::Client>(
        executor, http::ClientOptions{.connect_timeout = options_.connect_timeout});
    clients_.push_back(std::make_unique<PerExecutor>(
        PerExecutor{std::move(executor), std::move(client), nullptr}));
  }
}

OperationTransport::~OperationTransport() = default;

OperationTransport::PerExecutor& OperationTransport::state_for(
    const asio::any_io_executor& executor) const {
  for (const auto& own : clients_) {
    if (own->executor == executor) {
      return *own;
    }
  }
  throw std::logic_error("OperationClient: called from an executor it was not built for");
}

std::size_t OperationTransport::idle_connections_to(const asio::any_io_executor& executor,
                                                    const http::Destination& destination) const {
  return state_for(executor).client->idle_connections_to(destination);
}

asio::awaitable<void> OperationTransport::exchange(const OperationRequest& request,
                                                   qos::Deadline deadline, AttemptTrail& trail,
                                                   const BodyReader& read_body) const {
  const auto executor = co_await asio::this_coro::executor;
  PerExecutor& own = state_for(executor);
  // The attempt's deadline, which the callee is told (send_marked); default_timeout only
  // for a call without one. (A cap below the deadline would cut off, and charge with a
  // timeout, a callee still within the time it was given.)
  auto until = std::chrono::steady_clock::now() + options_.default_timeout;
  if (deadline.is_set()) {
    if (deadline.expired()) {
      throw qos::QosRejected("deadline", qos::Reason::deadline_exceeded);
    }
    until = deadline.when();
  }
  // Each step of the attempt (Consul's first answer, this caller's certificate, each
  // endpoint tried) sees a cancellation that has landed, not only one that reaches it
  // while it waits: as http::Client::send does for its own steps, and for the same reason
  // (its comment). Otherwise a cancellation recorded between two of these steps let the
  // next one wait out its patience and end as discovery_unavailable or
  // identity_unavailable, a refusal, where the caller had gone. The caller's setting is
  // put back on the way out.
  const bool callers_setting = co_await asio::this_coro::throw_if_cancelled();
  co_await asio::this_coro::throw_if_cancelled(true);
  std::exception_ptr failure;
  try {
    if (options_.discovered) {
      co_await exchange_discovered(own, request, until, deadline, trail, read_body);
    } else {
      // Half the attempt's time at most, like discovery's wait: a missing certificate is
      // reported as such, before the attempt's timeout would cut it off as the callee's.
      const auto now = std::chrono::steady_clock::now();
      co_await await_own_certificate(
          options_.upstream.tls, now + (until - now) / 2,
          options_.upstream.host + ":" + std::to_string(options_.upstream.port));
      http::Request message = make_message(request);
      message.set(http::Field::host, options_.upstream.host);
      http::Response response = co_await send_marked(*own.client, request, options_.upstream,
                                                     std::move(message), until, deadline);
      if (response.result_int() / 100 != 2) {
        throw_remote_error(response);
      }
      read_body(response.body());
    }
  } catch (...) {
    failure = std::current_exception();
  }
  co_await asio::this_coro::throw_if_cancelled(callers_setting);
  if (failure) {
    std::rethrow_exception(failure);
  }
}

asio::awaitable<void> OperationTransport::exchange_discovered(
    PerExecutor& own, const OperationRequest& request, std::chrono::steady_clock::time_point until,
    qos::Deadline deadline, AttemptTrail& trail, const BodyReader& read_body) const {
  // Held by this frame: the upstream outlives the attempt even if the client's owner
  // dropped it meanwhile.
  const std::shared_ptr<DiscoveredUpstream> upstream = options_.discovered;
  // Consul's first answer, and our own certificate, are awaited until half the time the
  // attempt has left at most, so a Consul that does not answer (or a leaf that has not
  // come) is reported as such well before the attempt's deadline, where its timeout would
  // cut the call off as the callee's timeout.
  const auto now = std::chrono::steady_clock::now();
  const auto patience = now + (until - now) / 2;
  const auto snapshot = co_await upstream->endpoints(patience);
  forget_departed(own, snapshot);
  if (!snapshot) {
    // The callee was never reached: our own discovery is not ready. A refusal, answered
    // 503 (fault_classifier.hpp): no failure of the callee's breaker, no retry.
    throw http::ClientError(http::ClientErrc::discovery_unavailable,
                            "no answer from Consul yet about the instances of '" +
                                upstream->service() + "': nothing was sent");
  }
  co_await await_own_certificate(upstream->tls(), patience, upstream->service());
  // An endpoint the request never reached (not delivered, fault_classifier.hpp: the
  // connect was refused or timed out, the TLS handshake failed, its identity was refused,
  // or its sidecar answered that the service behind it refused the connection) ran
  // nothing, so another one is tried at once within this attempt, for any method, a POST
  // included: a crashed instance Consul still lists as passing costs its callers no
  // failed call (Envoy's reset-before-request retry; the sidecar's http mode does the
  // same). Each endpoint once, kPicksPerAttempt at most, each recorded against its
  // endpoint (its outlier ejection), and the retry's next attempt avoids them all.
  std::exception_ptr failure;
  for (std::size_t picks = 1;; ++picks) {
    connect::Pick pick = upstream->pick(snapshot, trail.tried);
    if (!pick && picks == 1) {
      // Consul answered: no instance of the callee passes its health checks, it is down.
      // Its failure, as a refused connect would be (transport): it counts toward its
      // breaker, and a retry after the backoff may find an instance back. Its own code,
      // so that it is answered 503 no_endpoint as the sidecar answers it
      // (fault_classifier.hpp), not 502 as a refused connect.
      throw http::ClientError(http::ClientErrc::no_endpoint,
                              "'" + upstream->service() + "' has no passing instance in Consul");
    }
    // (The first pick may be one an earlier attempt tried: the only one there is, say.)
    const bool tried_before =
        picks > 1 && (!pick || std::find(trail.tried.begin(), trail.tried.end(),
                                         pick.endpoint().key) != trail.tried.end());
    if (tried_before) {
      std::rethrow_exception(failure);  // every endpoint was tried: the last one's failure
    }
    failure = co_await exchange_with(own, *upstream, request, std::move(pick), until, deadline,
                                     trail, read_body);
    if (!failure) {
      co_return;
    }
    // The one rule (fault_classifier.hpp): a refused connect, or the endpoint's sidecar
    // answering that its service refused the connection.
    const bool sent_nothing = classify_service_fault(failure).not_delivered;
    if (!sent_nothing || picks == kPicksPerAttempt || std::chrono::steady_clock::now() >= until) {
      std::rethrow_exception(failure);
    }
  }
}

asio::awaitable<std::exception_ptr> OperationTransport::exchange_with(
    PerExecutor& own, DiscoveredUpstream& upstream, const OperationRequest& request,
    connect::Pick pick, std::chrono::steady_clock::time_point until, qos::Deadline deadline,
    AttemptTrail& trail, const BodyReader& read_body) const {
  const std::string endpoint_key = pick.endpoint().key;
  trail.tried.push_back(endpoint_key);
  // A copy: the Pick (and the snapshot it keeps) is released before this frame ends.
  const http::Destination destination = upstream.destination_of(pick.endpoint());
  http::Request message = make_message(request);
  message.set(http::Field::host, destination.host);
  const auto started = std::chrono::steady_clock::now();
  std::exception_ptr failure;
  try {
    http::Response response = co_await send_marked(*own.client, request, destination,
                                                   std::move(message), until, deadline);
    if (response.result_int() / 100 != 2) {
      throw_remote_error(response);
    }
    read_body(response.body());
    pick.done(std::chrono::steady_clock::now() - started, connect::Outcome::success);
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    const auto ended = std::chrono::steady_clock::now();
    if (const auto outcome = endpoint_outcome(failure, ended >= until)) {
      pick.done(ended - started, *outcome);
    }
    // else: cancelled in time, or refused by a local policy: the Pick is abandoned,
    // nobody's fault.
  }
  // The endpoint may have left while this call was out (and another call on this thread
  // may have seen the news first): the connection this call just parked must not wait
  // out the idle timeout either.
  const auto latest = upstream.snapshot();
  forget_departed(own, latest);
  if (latest && !latest->contains(endpoint_key)) {
    own.client->close_idle_to(destination);
  }
  co_return failure;
}

void OperationTransport::forget_departed(
    PerExecutor& own, const std::shared_ptr<const connect::EndpointSet>& now) const {
  if (!now || now == own.seen) {
    return;
  }
  const auto before = std::exchange(own.seen, now);
  if (!before) {
    return;
  }
  for (const auto& endpoint : before->endpoints) {
    if (!now->contains(endpoint.key)) {
      own.client->close_idle_to(options_.discovered->destination_of(endpoint));
    }
  }
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
