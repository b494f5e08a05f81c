#pragma once

// The callee answered, with an error. Thrown by client stubs for a non-2xx answer so the
// caller's QoS chain can judge it (through the service fault classifier,
// fault_classifier.hpp): a 4xx is the caller's own fault, a 5xx the callee's; retry
// looks at the status (502/503/504 by default), fallback may turn a 5xx into a value.
// `code` is the callee's machine-readable error (its JSON `error`, e.g. "circuit_open"
// or "invalid_field"), `reason` its text.

#include <stdexcept>
#include <string>

namespace coromesh {

class RemoteError : public std::runtime_error {
 public:
  RemoteError(unsigned status, std::string code, std::string reason);

  unsigned status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }
  const std::string& reason() const noexcept { return reason_; }

 private:
  unsigned status_;
  std::string code_;
  std::string reason_;
};

}  // namespace coromesh
