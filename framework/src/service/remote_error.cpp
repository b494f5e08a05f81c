#include "coromesh/service/remote_error.hpp"

#include <utility>

namespace coromesh {

RemoteError::RemoteError(unsigned status, std::string code, std::string reason, bool not_delivered)
    : std::runtime_error(
          "the callee answered " + std::to_string(status) + " " + code +
          (reason.empty() ? std::string() : ": " + reason) +
          (not_delivered ? " (its sidecar's answer: the request never reached the service)" : "")),
      status_(status),
      not_delivered_(not_delivered),
      code_(std::move(code)),
      reason_(std::move(reason)) {}

}  // namespace coromesh
