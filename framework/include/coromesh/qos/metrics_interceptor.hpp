#pragma once

// Call results and durations reported to a CallObserver, as a chain interceptor.

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "coromesh/qos/chain.hpp"

namespace coromesh::qos {

// Where MetricsInterceptor reports each call (the metrics module implements it with
// Prometheus families; qos/ itself knows no metrics library). Called on io threads,
// concurrently.
class CallObserver {
 public:
  // Whose fault, as a dashboard reads it (the classes of qos/fault.hpp):
  //   ok            a value
  //   error         a failure that counts against the callee (counts_against_callee():
  //                 callee_failure, transport, timeout), what an error rate is about
  //   rejected      a refusal (Fault::refused): a local policy said no, the call never
  //                 left (no endpoint known yet), or the callee refused it (its 429)
  //   cancelled     the caller went away (a client hanging up while the handler ran, a
  //                 server drain cutting a request off, a caller cancelling its call),
  //                 even when the call came to a value after that: nobody's failure
  //   caller_error  a 4xx: the caller's own fault (bad input, overflow), which no callee
  //                 nor transport could have done better; not counted as `error`, so bad
  //                 input does not raise an error rate
  // Timeouts stay in `error`: they are failures against the callee like the rest of it,
  // and alerts on result="error" must keep seeing them (a cut-off is also counted as a
  // deadline_exceeded rejection).
  enum class Result : std::uint8_t { ok, error, rejected, cancelled, caller_error };
  static constexpr std::size_t kResults = 5;
  // The `result` label of each Result, by its value.
  static constexpr const char* kResultNames[kResults] = {"ok", "error", "rejected", "cancelled",
                                                         "caller_error"};
  virtual ~CallObserver() = default;
  virtual void observe(Result result, Duration elapsed) noexcept = 0;
};

// The Result of a call that ended in `fault` (the log line's `outcome` says the same).
inline CallObserver::Result result_of(const Fault& fault) noexcept {
  using Result = CallObserver::Result;
  if (fault.refused()) {
    return Result::rejected;
  }
  switch (fault.kind) {
    case FaultClass::caller_error:
      return Result::caller_error;
    case FaultClass::cancelled:
      return Result::cancelled;
    case FaultClass::rejected:
      return Result::rejected;
    case FaultClass::callee_failure:
    case FaultClass::transport:
    case FaultClass::timeout:
      break;
  }
  return Result::error;
}

// Reports every call's result and duration to a CallObserver, except a refusal the
// chain's rejection hook was told of (Invocation::notified): with the default weights none
// reaches it, and one that does (a policy given a weight inside this one) was counted
// there.
class MetricsInterceptor final : public SynchronousInterceptor {
 public:
  explicit MetricsInterceptor(std::shared_ptr<CallObserver> observer,
                              std::optional<int> weight = std::nullopt,
                              std::string name = "metrics");
  void on_request(Invocation&) override {}
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;

 private:
  std::shared_ptr<CallObserver> observer_;
};

}  // namespace coromesh::qos
