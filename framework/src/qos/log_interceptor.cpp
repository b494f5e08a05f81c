#include "coromesh/qos/log_interceptor.hpp"

#include "coromesh/log/logger.hpp"

namespace coromesh::qos {

LogInterceptor::LogInterceptor(std::optional<int> weight, std::string name)
    : SynchronousInterceptor(std::move(name), weight, weights::log) {}

void LogInterceptor::on_request(Invocation& invocation) {
  log::debug("qos.call.start", {{"operation", invocation.operation()}});
}

void LogInterceptor::on_outcome(Invocation& invocation, const Outcome& outcome) noexcept {
  if (outcome.ok()) {
    log::info("qos.call", {{"operation", invocation.operation()},
                           {"outcome", "ok"},
                           {"attempts", invocation.attempt()},
                           {"duration_s", outcome.elapsed}});
    return;
  }
  const Fault& fault = *outcome.fault;
  if (fault.reason) {
    log::warn("qos.call", {{"operation", invocation.operation()},
                           {"outcome", "rejected"},
                           {"attempts", invocation.attempt()},
                           {"duration_s", outcome.elapsed},
                           {"policy", fault.policy},
                           {"reason", to_string(*fault.reason)}});
  } else {
    log::warn("qos.call", {{"operation", invocation.operation()},
                           {"outcome", fault.refused()                       ? "rejected"
                                       : fault.kind == FaultClass::cancelled ? "cancelled"
                                                                             : "error"},
                           {"fault", to_string(fault.kind)},
                           {"attempts", invocation.attempt()},
                           {"duration_s", outcome.elapsed},
                           {"error", fault.message}});
  }
}

}  // namespace coromesh::qos
