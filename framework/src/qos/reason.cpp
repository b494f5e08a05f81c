#include "coromesh/qos/reason.hpp"

namespace coromesh::qos {

QosRejected::QosRejected(std::string policy, Reason reason)
    : std::runtime_error("qos policy '" + policy +
                         "' rejected the call: " + std::string(to_string(reason))),
      policy_(std::move(policy)),
      reason_(reason) {}

QosRejected QosRejected::cut_off_by(std::string policy) {
  QosRejected rejected(policy, Reason::deadline_exceeded);
  rejected.cut_off_ = true;
  // The call was made and ran too long: its message must not say it was rejected, which
  // would blame the wrong side (the what() a caller's answer and the logs carry). The
  // base's message is replaced, as the constructor can only say "rejected".
  static_cast<std::runtime_error&>(rejected) =
      std::runtime_error("qos policy '" + policy + "' cut the call off at its deadline: " +
                         std::string(to_string(Reason::deadline_exceeded)));
  return rejected;
}

}  // namespace coromesh::qos
