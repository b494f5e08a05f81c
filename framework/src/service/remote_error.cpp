#include "coromesh/service/remote_error.hpp"

#include <utility>

namespace coromesh {

RemoteError::RemoteError(unsigned status, std::string code, std::string reason)
    : std::runtime_error("the callee answered " + std::to_string(status) + " " + code +
                         (reason.empty() ? std::string() : ": " + reason)),
      status_(status),
      code_(std::move(code)),
      reason_(std::move(reason)) {}

}  // namespace coromesh
