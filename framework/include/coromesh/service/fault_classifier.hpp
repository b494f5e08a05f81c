#pragma once

// The fault classifier of declared operations: qos::classify_fault (which knows
// QosRejected, system errors and std::exception) taught the HTTP errors. The service
// passes it to every chain it builds, server and client side (the decision table of
// what each class does is in qos/fault.hpp).
//
//   exception                                  class
//   http::HttpError, status 4xx                caller_error    (a handler's own 4xx)
//   http::HttpError, other status              callee_failure
//   RemoteError, status 4xx                    caller_error    (the callee says we erred)
//   RemoteError, other status                  callee_failure  (status kept: retry reads it)
//   http::ClientError timeout                  timeout
//   http::ClientError bad_response             callee_failure  (it answered, with garbage)
//   http::ClientError connect / closed         transport
//   anything else                              qos::classify_fault
//
// A RemoteError inside a handler (its own upstream erred) is judged by the same status:
// a server chain sees its upstream's 5xx as its own failure.

#include <exception>

#include "coromesh/qos/fault.hpp"

namespace coromesh {

qos::FaultClassification classify_service_fault(const std::exception_ptr& error) noexcept;

}  // namespace coromesh
