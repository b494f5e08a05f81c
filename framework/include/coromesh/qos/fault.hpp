#pragma once

// Whose fault is it: every fault of a call is classified once, when the chain first
// catches it, and every policy acts on the class.
//
//   class           breaker  adaptive  retry        fallback   what
//   caller_error    neutral  neutral   never        never (1)  a 4xx but 429: the
//                                                              caller's own fault (a
//                                                              callee's 4xx answer, a
//                                                              handler's 4xx)
//   callee_failure  failure  drop      502/503/504  yes        a 5xx, a 2xx body that
//                                                              does not decode, a
//                                                              handler's exception (a
//                                                              bug is not transient)
//   transport       failure  drop      yes          yes        no answer: connect
//                                                              refused, reset, closed
//   timeout         failure  drop      yes (2)      yes        a deadline exceeded, or
//                                                              a call a timeout cut off
//                                                              (QosRejected::cut_off())
//   cancelled       neutral  neutral   never        never      the caller went away
//   rejected        neutral  neutral   never        yes        a QosRejected: a local
//                                                              policy said no, a spent
//                                                              deadline included (the
//                                                              call never started); in
//                                                              service/, also a call
//                                                              Consul had not yet told
//                                                              where to send, or made
//                                                              before its own leaf came,
//                                                              and a callee's 429 (3)
//
//   breaker:  failure = on_failure (counts toward opening), neutral = the permit is given
//             back unrecorded. adaptive: drop = an AIMD decrease, neutral = release().
//   retry:    within max_attempts and the budget; statuses per retry_on, transport per
//             retry_transport_errors; a non-idempotent call (a POST) only when the fault
//             says its request never reached the callee (not_delivered, below), unless
//             idempotent_only is off (qos::retry{.non_idempotent = true}).
//   (1) FallbackFilter::caller_errors opts in.  (2) RetryOptions::retry_attempt_timeouts.
//   (3) Too Many Requests: the callee's limit, shared by all its callers, said no before
//       the callee did any work (coromesh's rate limiter answers rate_limited so). The
//       callee refused: neither the caller's error nor the callee's failure. Not retried
//       (at once, it would only add to the overload; retry_on refuses to list 429),
//       and, like the discovery refusals, a refusal without a policy or reason (those
//       name this side's own policies; its callee_reason names it for a fallback's
//       filter: rate_limited or callee_rejected): status 429 is kept, and metrics count it as
//       result="rejected" but not in coromesh_qos_rejections_total (the callee counts it
//       there, side="server"; service/qos_metrics.hpp).
//
// The functions below are the table; the interceptors call them and nothing else decides.
//
// Who classifies: a FaultClassifier given to the chain (ChainOptions / BuildOptions).
// qos/ knows no HTTP, so its default, classify_fault(), knows only QosRejected,
// system errors (operation_aborted: cancelled; timed_out: timeout; any other: transport)
// and std::exception (callee_failure). service/ supplies the classifier that knows the
// HTTP errors (coromesh/service/fault_classifier.hpp).

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include "coromesh/qos/reason.hpp"

namespace coromesh::qos {

enum class FaultClass : std::uint8_t {
  caller_error,
  callee_failure,
  transport,
  timeout,
  cancelled,
  rejected,
};

std::string_view to_string(FaultClass kind) noexcept;

// Whether the failed attempt's request could have reached the callee's code is judged
// once, with the class, by the classifier (qos/ knows no HTTP; its own classifier never
// says so). not_delivered: certainly not (the connect was refused or timed out, the TLS
// handshake failed, there was no endpoint to send to, or the callee's sidecar answered
// that its service refused the connection): nothing ran, so sending the request again
// cannot run it twice, whatever its method (Envoy's connect-failure, reset-before-request
// and refused-stream retries). Otherwise it may have been processed: sent, even partly,
// and its answer lost, malformed or an error; only an idempotent request is sent again.
struct FaultClassification {
  FaultClass kind = FaultClass::callee_failure;
  unsigned status = 0;         // the HTTP status the fault carries, 0 for none
  bool not_delivered = false;  // the request certainly never reached the callee's code
  // A callee's refusal (kind rejected, its 429): what a fallback's reasons can name it by.
  std::optional<Reason> callee_reason{};
};

// Classifies the exception `error` points at (never null). Must not throw. A plain
// function pointer: chains copy it freely and it owns nothing.
using FaultClassifier = FaultClassification (*)(const std::exception_ptr& error) noexcept;

// qos/'s own classifier (see above).
FaultClassification classify_fault(const std::exception_ptr& error) noexcept;

// What a fault was: the exception, its class, and when it was a QosRejected, its policy
// and reason.
struct Fault {
  std::exception_ptr error;
  FaultClass kind = FaultClass::callee_failure;
  std::optional<Reason> reason;  // set for a QosRejected
  std::string policy;            // the rejecting policy for a QosRejected
  std::string message;           // what() of a std::exception, else "unknown exception"
  unsigned status = 0;           // the HTTP status the classifier found, 0 for none
  bool not_delivered = false;    // the classifier's (see FaultClassification)
  // A callee's refusal (its 429): the reason its answer names when it is one a 429
  // carries (rate_limited, as a coromesh callee's rate limiter answers), else
  // callee_rejected. Not `reason`: that is this side's own policies' (logged with the
  // policy, counted in coromesh_qos_rejections_total); this is the callee's, which the
  // callee counted. A fallback filtering by reasons matches either (fallback.hpp).
  std::optional<Reason> callee_reason;
  const void* notified_by = nullptr;  // QosRejected::notified_by() of a QosRejected

  // A refusal: a policy's (a QosRejected) or one the classifier found, such as a
  // service's discovery with no answer yet (the call never left) or a callee's 429 (its
  // limit said no; `status` is 429). What metrics count and logs say as "rejected".
  bool refused() const noexcept { return reason.has_value() || kind == FaultClass::rejected; }

  static Fault from(std::exception_ptr error, FaultClassifier classify = classify_fault);
};

// --- the decision table -------------------------------------------------------------------

// A circuit breaker failure and an adaptive-limit drop; the rest is neutral.
constexpr bool counts_against_callee(FaultClass kind) noexcept {
  return kind == FaultClass::callee_failure || kind == FaultClass::transport ||
         kind == FaultClass::timeout;
}

// Whether a fallback turns the fault into a value unless configured otherwise.
constexpr bool fallback_by_default(FaultClass kind) noexcept {
  return kind != FaultClass::caller_error && kind != FaultClass::cancelled;
}

// Whether a call may be sent again after `fault` as far as its method goes: an idempotent
// call always, any call when `idempotent_only` is off (a declaration's non_idempotent
// opt-in) or when the fault's request never reached the callee (not_delivered). Attempts,
// the budget and the deadline still decide; retryable() below still judges the fault.
constexpr bool repeatable(const Fault& fault, bool idempotent, bool idempotent_only) noexcept {
  return idempotent || !idempotent_only || fault.not_delivered;
}

// Whether the fault alone allows another attempt: `transport` and `timeouts` say whether
// those classes are retried, `status_retryable` whether the fault's status is in the
// retry set. (Attempt count, idempotency and the budget are the retry interceptor's.)
constexpr bool retryable(const Fault& fault, bool transport, bool timeouts,
                         bool status_retryable) noexcept {
  switch (fault.kind) {
    case FaultClass::transport:
      return transport;
    case FaultClass::timeout:
      return timeouts;
    case FaultClass::callee_failure:
      return fault.status != 0 && status_retryable;
    case FaultClass::caller_error:
    case FaultClass::cancelled:
    case FaultClass::rejected:
      return false;
  }
  return false;
}

}  // namespace coromesh::qos
