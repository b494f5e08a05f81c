#pragma once

// The callee answered, with an error. Thrown by client stubs for a non-2xx answer so the
// caller's QoS chain can judge it: retry looks at the status (502/503/504 by default),
// the circuit breaker counts 5xx as failures and ignores 4xx (the caller's own fault),
// fallback may turn it into a value. `code` is the callee's machine-readable error (its
// JSON `error`, e.g. "circuit_open" or "invalid_field"), `reason` its text.

#include <stdexcept>
#include <string>

namespace coromesh::qos {

// An exception that carries an HTTP status for the QoS policies to judge: 4xx is the
// caller's own fault (neutral for breakers and adaptive limits, never retried by
// default), 5xx a failure. RemoteError (a callee's answer) and http::HttpError (a
// handler's own) both carry one.
class HasHttpStatus {
 public:
  virtual unsigned http_status() const noexcept = 0;

 protected:
  ~HasHttpStatus() = default;
};

class RemoteError : public std::runtime_error, public HasHttpStatus {
 public:
  RemoteError(unsigned status, std::string code, std::string reason);

  unsigned status() const noexcept { return status_; }
  unsigned http_status() const noexcept override { return status_; }
  const std::string& code() const noexcept { return code_; }
  const std::string& reason() const noexcept { return reason_; }

 private:
  unsigned status_;
  std::string code_;
  std::string reason_;
};

}  // namespace coromesh::qos
