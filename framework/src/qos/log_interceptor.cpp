#include "coromesh/qos/log_interceptor.hpp"

#include "coromesh/qos/metrics_interceptor.hpp"

namespace coromesh::qos {

LogInterceptor::LogInterceptor(std::optional<int> weight, std::string name)
    : SynchronousInterceptor(std::move(name), weight, weights::log) {}

void LogInterceptor::on_request(Invocation& invocation) {
  coromesh::log::debug("qos.call.start", {{"operation", invocation.operation()}});
}

coromesh::log::Level LogInterceptor::level_of(const Fault& fault) noexcept {
  if (fault.refused()) {
    return coromesh::log::Level::warn;
  }
  switch (fault.kind) {
    case FaultClass::caller_error:
    case FaultClass::cancelled:
      return coromesh::log::Level::info;
    case FaultClass::rejected:
    case FaultClass::callee_failure:
    case FaultClass::transport:
    case FaultClass::timeout:
      break;
  }
  return coromesh::log::Level::warn;
}

void LogInterceptor::on_outcome(Invocation& invocation, const Outcome& outcome) noexcept {
  if (outcome.ok() && invocation.fallback_fault() != nullptr) {
    // A fallback's value, not the callee's success: said as such, with the fault it
    // answered for and at that fault's level (a fallback hides a failure from the caller,
    // not from the operator).
    write_fault(invocation, outcome, *invocation.fallback_fault(), "fallback");
    return;
  }
  if (outcome.ok()) {
    coromesh::log::info("qos.call", {{"operation", invocation.operation()},
                                     {"outcome", "ok"},
                                     {"attempts", invocation.attempt()},
                                     {"duration_s", outcome.elapsed}});
    return;
  }
  const Fault& fault = *outcome.fault;
  write_fault(invocation, outcome, fault,
              CallObserver::kResultNames[static_cast<std::size_t>(result_of(fault))]);
}

void LogInterceptor::write_fault(const Invocation& invocation, const Outcome& outcome,
                                 const Fault& fault, const char* result) noexcept {
  const coromesh::log::Level level = level_of(fault);
  if (!coromesh::log::enabled(level)) {
    return;
  }
  if (fault.reason) {
    coromesh::log::write(level, "qos.call",
                         {{"operation", invocation.operation()},
                          {"outcome", result},
                          {"fault", to_string(fault.kind)},
                          {"attempts", invocation.attempt()},
                          {"duration_s", outcome.elapsed},
                          {"policy", fault.policy},
                          {"reason", to_string(*fault.reason)}});
  } else {
    coromesh::log::write(level, "qos.call",
                         {{"operation", invocation.operation()},
                          {"outcome", result},
                          {"fault", to_string(fault.kind)},
                          {"attempts", invocation.attempt()},
                          {"duration_s", outcome.elapsed},
                          {"error", fault.message}});
  }
}

}  // namespace coromesh::qos
