#include "coromesh/qos/reason.hpp"

namespace coromesh::qos {

QosRejected::QosRejected(std::string policy, Reason reason)
    : std::runtime_error("qos policy '" + policy +
                         "' rejected the call: " + std::string(to_string(reason))),
      policy_(std::move(policy)),
      reason_(reason) {}

}  // namespace coromesh::qos
