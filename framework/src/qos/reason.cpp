#include "coromesh/qos/reason.hpp"

namespace coromesh::qos {

QosRejected::QosRejected(std::string policy, Reason reason)
    : std::runtime_error("qos policy '" + policy +
                         "' rejected the call: " + std::string(to_string(reason))),
      policy_(std::move(policy)),
      reason_(reason) {}

QosRejected QosRejected::cut_off_by(std::string policy) {
  QosRejected rejected(std::move(policy), Reason::deadline_exceeded);
  rejected.cut_off_ = true;
  return rejected;
}

}  // namespace coromesh::qos
