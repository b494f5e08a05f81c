#pragma once

// Why a QoS policy refused a call. One machine-readable name per reason travels to the
// HTTP status, the JSON error code, the log line and the `reason` metric label.
//
//   reason               name                  HTTP
//   deadline_exceeded    "deadline_exceeded"   504 Gateway Timeout
//   circuit_open         "circuit_open"        503 Service Unavailable
//   rate_limited         "rate_limited"        429 Too Many Requests
//   bulkhead_full        "bulkhead_full"       503 Service Unavailable
//   concurrency_limited  "concurrency_limited" 503 Service Unavailable
//   budget_exhausted     "budget_exhausted"    (counted only: a retry the budget refuses
//                                              leaves the call its last attempt's fault)
//   callee_rejected      "callee_rejected"     (no policy of this side gives it: it names
//                                              a callee's refusal, its 429, for a
//                                              fallback's filter; Fault::callee_reason)
//
// ReasonSet is a literal set of reasons, for declarations (qos::fallback's only_for).

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coromesh::qos {

enum class Reason : std::uint8_t {
  deadline_exceeded,
  circuit_open,
  rate_limited,
  bulkhead_full,
  concurrency_limited,
  budget_exhausted,
  callee_rejected,
};

inline constexpr Reason kAllReasons[] = {
    Reason::deadline_exceeded, Reason::circuit_open,        Reason::rate_limited,
    Reason::bulkhead_full,     Reason::concurrency_limited, Reason::budget_exhausted,
    Reason::callee_rejected,
};

constexpr std::string_view to_string(Reason reason) noexcept {
  switch (reason) {
    case Reason::deadline_exceeded:
      return "deadline_exceeded";
    case Reason::circuit_open:
      return "circuit_open";
    case Reason::rate_limited:
      return "rate_limited";
    case Reason::bulkhead_full:
      return "bulkhead_full";
    case Reason::concurrency_limited:
      return "concurrency_limited";
    case Reason::budget_exhausted:
      return "budget_exhausted";
    case Reason::callee_rejected:
      return "callee_rejected";
  }
  return "unknown";
}

// Inverse of to_string; nullopt for anything else.
constexpr std::optional<Reason> parse_reason(std::string_view name) noexcept {
  for (Reason r : kAllReasons) {
    if (to_string(r) == name) {
      return r;
    }
  }
  return std::nullopt;
}

// The HTTP status a rejection is answered with: 429, 503 or 504.
constexpr unsigned http_status(Reason reason) noexcept {
  switch (reason) {
    case Reason::rate_limited:
      return 429;
    case Reason::deadline_exceeded:
      return 504;
    case Reason::circuit_open:
    case Reason::bulkhead_full:
    case Reason::concurrency_limited:
    case Reason::budget_exhausted:
    case Reason::callee_rejected:  // as a callee's 429 escaping a handler: it could not serve
      return 503;
  }
  return 503;
}

class ReasonSet {
 public:
  constexpr ReasonSet() noexcept = default;
  constexpr ReasonSet(std::initializer_list<Reason> reasons) noexcept {
    for (Reason r : reasons) {
      bits_ |= bit(r);
    }
  }
  constexpr bool empty() const noexcept { return bits_ == 0; }
  constexpr bool contains(Reason r) const noexcept { return (bits_ & bit(r)) != 0; }
  friend constexpr bool operator==(ReasonSet, ReasonSet) noexcept = default;

 private:
  static constexpr std::uint32_t bit(Reason r) noexcept {
    return std::uint32_t{1} << static_cast<unsigned>(r);
  }
  std::uint32_t bits_ = 0;
};

// The answer of a non-blocking `acquire()`: granted, or rejected with a reason.
//
//   if (auto a = breaker.acquire(); !a) { throw QosRejected("breaker", a.reason()); }
class [[nodiscard]] Admission {
 public:
  static constexpr Admission granted() noexcept { return Admission(); }
  static constexpr Admission rejected(Reason reason) noexcept { return Admission(reason); }

  constexpr bool is_granted() const noexcept { return !rejected_; }
  constexpr explicit operator bool() const noexcept { return !rejected_; }
  // Precondition: !is_granted().
  constexpr Reason reason() const noexcept { return reason_; }

  friend constexpr bool operator==(Admission, Admission) noexcept = default;

 private:
  constexpr Admission() noexcept = default;
  constexpr explicit Admission(Reason reason) noexcept : rejected_(true), reason_(reason) {}

  bool rejected_ = false;
  Reason reason_ = Reason::deadline_exceeded;
};

// Thrown by the QoS chain when a policy refuses a call. what() reads
// "qos policy '<policy>' rejected the call: <reason>".
//
// A refusal happens before the call starts, with one exception: a preemptive timeout
// cuts a running call off at its deadline (cut_off()). Whose fault differs (fault.hpp):
// a call cut off was too slow (a timeout, the callee's), while a deadline_exceeded
// refusal of a call that never started (its caller's deadline already spent) involved
// no callee at all.
class QosRejected : public std::runtime_error {
 public:
  QosRejected(std::string policy, Reason reason);

  // deadline_exceeded for a call `policy` cut off while it ran.
  static QosRejected cut_off_by(std::string policy);

  const std::string& policy() const noexcept { return policy_; }
  Reason reason() const noexcept { return reason_; }
  unsigned http_status() const noexcept { return qos::http_status(reason_); }
  // True for a call cut off while it ran; false for one refused before it started.
  bool cut_off() const noexcept { return cut_off_; }

  // The chain (its ChainCore) whose rejection hook was told of this refusal, which then
  // counted it; null for one thrown outside a chain's Invocation::reject / cut_off.
  const void* notified_by() const noexcept { return notified_by_; }
  void set_notified_by(const void* chain) noexcept { notified_by_ = chain; }

 private:
  std::string policy_;
  Reason reason_;
  bool cut_off_ = false;
  const void* notified_by_ = nullptr;
};

}  // namespace coromesh::qos
