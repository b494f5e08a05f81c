#pragma once

// One log line per call, as a chain interceptor.

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>

#include "coromesh/log/logger.hpp"
#include "coromesh/qos/chain.hpp"

namespace coromesh::qos {

// One line at entry (debug) and one at exit: `qos.call` with operation, outcome (the
// `result` label MetricsInterceptor counts it under: ok, error, rejected, cancelled,
// caller_error; or fallback for a value a fallback inside this one gave in place of a
// fault), fault=<class> (qos/fault.hpp) for a fault, attempt count, duration, and
// policy+reason for a policy's refusal or the error message otherwise. A fallback's line
// has the fault it answered for, at that fault's level.
//
// The exit line's level says whose fault it is (level_of):
//   ok                                   info
//   caller_error                         info   the caller's own 4xx: when serving, not
//                                               this process's failure; when calling, the
//                                               caller's answer says it already
//   cancelled                            info   the caller went away: nobody's failure
//   rejected                             warn   a local policy said no (load shedding, an
//                                               open circuit, a spent deadline), or the
//                                               callee's (its 429): an error message, no
//                                               policy+reason
//   callee_failure, transport, timeout   warn   the call failed; often another process's
//                                               failure (a callee's 5xx, an unreachable
//                                               instance). Not error: this process's own
//                                               bugs are logged at error where they end,
//                                               as http.handler.exception
class LogInterceptor final : public SynchronousInterceptor {
 public:
  explicit LogInterceptor(std::optional<int> weight = std::nullopt, std::string name = "log");
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;

  // The exit line's level for a call that ended in `fault` (the table above).
  static coromesh::log::Level level_of(const Fault& fault) noexcept;

 private:
  // The exit line of a call that ended in `fault`, or that a fallback answered for it
  // (`result` "fallback").
  static void write_fault(const Invocation& invocation, const Outcome& outcome, const Fault& fault,
                          const char* result) noexcept;
};

}  // namespace coromesh::qos
