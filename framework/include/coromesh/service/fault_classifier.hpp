#pragma once

// The fault classifier of declared operations: qos::classify_fault (which knows
// QosRejected, system errors and std::exception) taught the HTTP errors. The service
// passes it to every chain it builds, server and client side (the decision table of
// what each class does is in qos/fault.hpp).
//
//   exception                                  class
//   RemoteError, status 429                    rejected        (the callee refused: its
//   http::HttpError, status 429                                 rate limit, shared by all
//                                                               its callers, answered before
//                                                               any work; status 429 kept;
//                                                               a RemoteError's callee_reason
//                                                               is callee_refusal_reason)
//   http::HttpError, status 4xx                caller_error    (a handler's own 4xx)
//   http::HttpError, other status              callee_failure
//   RemoteError, status 4xx                    caller_error    (the callee says we erred)
//   RemoteError, other status                  callee_failure  (status kept: retry reads it)
//   http::ClientError timeout                  timeout
//   http::ClientError bad_response             callee_failure  (it answered, with garbage)
//   http::ClientError closed / outcome_unknown transport
//   http::ClientError connect / tls_handshake  transport, not delivered
//                     / peer_rejected
//                     no_endpoint              transport, not  (Consul lists no passing
//                                              delivered        instance: the callee is down)
//   http::ClientError discovery_unavailable    rejected        (Consul has not answered yet:
//                     identity_unavailable                      or our own leaf is missing:
//                                                               the callee was never
//                                                               reached; no breaker failure,
//                                                               no retry)
//   anything else                              qos::classify_fault
//
// "Not delivered" (qos::FaultClassification::not_delivered) is the one rule for whether
// the failed attempt's request could have reached the callee's code: certainly not when
// nothing was sent (http::never_reached: the connect refused or timed out, the TLS
// handshake failed, no endpoint; and the refusals above, discovery_unavailable and
// identity_unavailable), nor when the callee's sidecar answered that its service refused
// the connection (a RemoteError whose answer carried http::kNotDeliveredHeader: the
// inbound sidecar's 503 local_unavailable; its class is its status's, a 503 is the
// callee's failure). Such a request may be sent again for any method, a POST included
// (retry, qos/fault.hpp). Anything sent, even partly, whose answer was lost, malformed or
// an error of the callee's own (a 503 of its code, its 429) may have been processed:
// only an idempotent request, or one declared qos::retry{.non_idempotent = true}, is
// sent again.
//
// A server chain judges what escapes its handler by what the handler's caller is
// answered, and never as "not delivered": the handler ran, whatever its own call met
// (classify_served_fault). A RemoteError of the handler's own call is answered
// 502/503/504 (service.hpp's upstream_error_response), so it is this operation's
// failure whatever the upstream's status, a 4xx included (the caller sent nothing
// wrong: this service sent its upstream something it refused). An upstream's 429 too:
// rejected at the handler's own client, it is answered 503 (upstream_error_status) and
// counted callee_failure here, "this service could not serve", as the caller's client
// counts that 503; the upstream's refusal is not this operation's own (its policies
// did not refuse, it ran the handler). Likewise a QosRejected of the handler's own call
// (its upstream's breaker open, its rate limit, a spent deadline) is not a refusal by
// this operation's policies: the server wraps it in a DependencyRefused, answered 503
// (504 for a spent deadline) and classified callee_failure (timeout): the caller's
// client counts the same answer against us. So is a handler's own call that found no
// answer from Consul (discovery_unavailable) or no leaf of its own
// (identity_unavailable): 503, callee_failure. A handler's own HttpError 429 is answered
// as it is, 429: this operation refused, as its rate limiter would have (rejected, as
// its caller counts it).

#include <exception>
#include <stdexcept>
#include <string_view>

#include "coromesh/qos/fault.hpp"
#include "coromesh/qos/reason.hpp"

namespace coromesh {

namespace http {
class ClientError;
}  // namespace http

qos::FaultClassification classify_service_fault(const std::exception_ptr& error) noexcept;

// The class of an error answer by its status alone (a RemoteError's or an HttpError's, as
// above; the sidecar's http mode counts the answers it passes on by it): 429 rejected,
// any other 4xx caller_error, anything else callee_failure. The status is kept.
qos::FaultClassification classify_error_status(unsigned status) noexcept;

// The name a callee's refusal (its 429) gets for a fallback's filter, from the code of its
// answer (`{"error": "rate_limited"}`): that reason when it is one a 429 carries
// (rate_limited), else callee_rejected (no body, another code, another reason).
qos::Reason callee_refusal_reason(std::string_view code) noexcept;

// What a service answers its caller for an upstream's error status its handler let
// escape: 504 for the upstream's 504 and 408 (time ran out), 503 for its 503 and 429
// (overload: another instance may do), 502 for anything else.
unsigned upstream_error_status(unsigned upstream_status) noexcept;

// What a service answers for a call of its own that got no answer (an http::ClientError):
// 504 deadline_exceeded for a timeout, 503 discovery_unavailable when Consul had not
// answered about the callee yet, 503 identity_unavailable when this service's own leaf
// had not arrived, 503 no_endpoint when Consul lists no passing instance of the callee
// (as the sidecar answers it), 502 upstream_unavailable otherwise.
struct UnansweredCallStatus {
  unsigned status;
  std::string_view code;
};
UnansweredCallStatus unanswered_call_status(const http::ClientError& error) noexcept;

// A QosRejected of one of a handler's own calls, on its way out of the handler: kept
// apart from the QosRejected of the operation's own policies (which are refusals, not
// failures) by its type.
class DependencyRefused : public std::runtime_error {
 public:
  explicit DependencyRefused(qos::QosRejected refusal);

  const qos::QosRejected& refusal() const noexcept { return refusal_; }
  // 504 for a spent or cut-off deadline, 503 for any other refusal.
  unsigned http_status() const noexcept;

 private:
  qos::QosRejected refusal_;
};

// The classifier of a served operation's chain (see above); the rest as
// classify_service_fault.
qos::FaultClassification classify_served_fault(const std::exception_ptr& error) noexcept;

}  // namespace coromesh
