#pragma once

// The callee answered, with an error. Thrown by client stubs for a non-2xx answer so the
// caller's QoS chain can judge it (through the service fault classifier,
// fault_classifier.hpp): a 4xx is the caller's own fault, a 5xx the callee's; retry
// looks at the status (502/503/504 by default), fallback may turn a 5xx into a value.
// `code` is the callee's machine-readable error (its JSON `error`, e.g. "circuit_open"
// or "invalid_field"), `reason` its text. `not_delivered`: the answer is a sidecar's own,
// saying the request never reached the service behind it (http::kNotDeliveredHeader):
// classified as a refused connect is, safe to send again whatever the method.

#include <stdexcept>
#include <string>

namespace coromesh {

class RemoteError : public std::runtime_error {
 public:
  RemoteError(unsigned status, std::string code, std::string reason, bool not_delivered = false);

  unsigned status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }
  const std::string& reason() const noexcept { return reason_; }
  bool not_delivered() const noexcept { return not_delivered_; }

 private:
  unsigned status_;
  bool not_delivered_;
  std::string code_;
  std::string reason_;
};

}  // namespace coromesh
