#include "coromesh/service/fault_classifier.hpp"

#include <utility>

#include "coromesh/http/client.hpp"
#include "coromesh/http/error.hpp"
#include "coromesh/service/remote_error.hpp"

namespace coromesh {

qos::FaultClassification classify_error_status(unsigned status) noexcept {
  if (status == 429) {
    // Too Many Requests: the callee's own limit (coromesh's rate limiter answers it
    // before the handler runs; qos/reason.hpp), shared by all its callers. The callee
    // refused; the caller sent nothing wrong, and no callee failed either.
    return {qos::FaultClass::rejected, status};
  }
  const bool callers = status >= 400 && status < 500;
  return {callers ? qos::FaultClass::caller_error : qos::FaultClass::callee_failure, status};
}

qos::Reason callee_refusal_reason(std::string_view code) noexcept {
  // Only a reason a 429 carries: a callee's own words are trusted no further than that
  // (a 429 saying "circuit_open" is no breaker of anyone's a fallback could mean).
  const auto named = qos::parse_reason(code);
  return named && qos::http_status(*named) == 429 ? *named : qos::Reason::callee_rejected;
}

DependencyRefused::DependencyRefused(qos::QosRejected refusal)
    : std::runtime_error("a call of this service's was " +
                         std::string(refusal.cut_off() ? "cut off" : "refused") + " by its " +
                         refusal.policy() + ": " + refusal.what()),
      refusal_(std::move(refusal)) {}

unsigned upstream_error_status(unsigned upstream_status) noexcept {
  switch (upstream_status) {
    case 504:
    case 408:
      return 504;
    case 503:
    case 429:
      return 503;
    default:
      return 502;
  }
}

UnansweredCallStatus unanswered_call_status(const http::ClientError& error) noexcept {
  if (error.code() == http::ClientErrc::timeout) {
    return {504, "deadline_exceeded"};
  }
  if (error.code() == http::ClientErrc::discovery_unavailable) {
    return {503, "discovery_unavailable"};
  }
  if (error.code() == http::ClientErrc::identity_unavailable) {
    return {503, "identity_unavailable"};
  }
  if (error.code() == http::ClientErrc::no_endpoint) {
    // As the sidecar answers a callee with no passing instance (proxy/README.md): the
    // same cause gets the same status whichever mesh the caller runs in.
    return {503, "no_endpoint"};
  }
  return {502, "upstream_unavailable"};
}

unsigned DependencyRefused::http_status() const noexcept {
  return refusal_.reason() == qos::Reason::deadline_exceeded ? 504 : 503;
}

namespace {

// What escaped a served operation's handler, by the answer its caller gets (see the header).
qos::FaultClassification classify_escaped(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const RemoteError& e) {
    // Answered 502, 503 or 504: a 5xx, whatever the upstream's status was. A 429 too: the
    // upstream refused this service's call, and this service could not serve (answered
    // 503, as when its own client's policies refuse that call: DependencyRefused).
    return {qos::FaultClass::callee_failure, upstream_error_status(e.status())};
  } catch (const DependencyRefused& e) {
    const auto status = e.http_status();
    return {status == 504 ? qos::FaultClass::timeout : qos::FaultClass::callee_failure, status};
  } catch (const http::ClientError& e) {
    if (e.code() == http::ClientErrc::discovery_unavailable ||
        e.code() == http::ClientErrc::identity_unavailable) {
      // Answered 503 like a DependencyRefused: this service could not serve.
      return {qos::FaultClass::callee_failure, 503};
    }
    return classify_service_fault(error);
  } catch (...) {
    return classify_service_fault(error);
  }
}

}  // namespace

qos::FaultClassification classify_served_fault(const std::exception_ptr& error) noexcept {
  // The operation's handler ran, whatever its own call met: a retry of the served
  // operation runs it again, so nothing it let escape says "not delivered".
  auto classified = classify_escaped(error);
  classified.not_delivered = false;
  return classified;
}

qos::FaultClassification classify_service_fault(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const http::HttpError& e) {
    return classify_error_status(static_cast<unsigned>(e.status()));
  } catch (const RemoteError& e) {
    // The callee's sidecar answered for it that its service refused the connection: its
    // class by the status as any answer's (a 503: the callee's failure, for its breaker),
    // but nothing ran. A callee's 429 names its refusal for a fallback's reasons.
    auto classified = classify_error_status(e.status());
    classified.not_delivered = e.not_delivered();
    if (classified.kind == qos::FaultClass::rejected) {
      classified.callee_reason = callee_refusal_reason(e.code());
    }
    return classified;
  } catch (const http::ClientError& e) {
    if (e.code() == http::ClientErrc::timeout) {
      return {qos::FaultClass::timeout};
    }
    if (e.code() == http::ClientErrc::bad_response) {
      return {qos::FaultClass::callee_failure};
    }
    if (e.code() == http::ClientErrc::discovery_unavailable ||
        e.code() == http::ClientErrc::identity_unavailable) {
      // Our own discovery has no answer yet, or our own leaf has not arrived: the callee
      // was never reached. A refusal.
      return {.kind = qos::FaultClass::rejected, .not_delivered = true};
    }
    // A connect refused or timed out, a failed TLS handshake, no endpoint: nothing was
    // sent (http::never_reached). A connection lost while sending or before the answer
    // (connection_closed, outcome_unknown): the request, or part of it, was.
    return {.kind = qos::FaultClass::transport, .not_delivered = http::never_reached(e.code())};
  } catch (...) {
    return qos::classify_fault(error);
  }
}

}  // namespace coromesh
