#pragma once

// Handler errors are typed exceptions with a machine-readable code, mapped to an HTTP
// status and a JSON body in one place (make_error_response). A handler throws
// HttpError(Status::bad_request, "invalid_argument", "field 'l' is not an integer") and
// the client sees 400 {"error":"invalid_argument","reason":"field 'l' is not an integer"}.

#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>

#include "coromesh/http/message.hpp"

namespace coromesh::http {

// The service's fault classifier (service/fault_classifier.hpp) reads its status: a
// handler's 4xx is the caller's fault, not a failure of the service.
//
// `cause`: the failure this answer is for, when the handler turned a failure of its own
// call into its own answer (say, to name the call in the reason). A served operation's
// log line for a 5xx (service.request_failed, service/service.hpp) takes the fault's
// class from it, and writes nothing when the call's client has logged it already (a
// refusal by its policies, its `qos.rejected` line).
class HttpError : public std::runtime_error {
 public:
  HttpError(Status status, std::string code, std::string reason, std::exception_ptr cause = nullptr)
      : std::runtime_error(reason),
        status_(status),
        code_(std::move(code)),
        reason_(std::move(reason)),
        cause_(std::move(cause)) {}

  Status status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }
  // Whole: what() ends at the first NUL, which a reason quoting a decoded request value
  // may hold.
  std::string_view reason() const noexcept { return reason_; }
  // Null for an answer of the handler's own making.
  const std::exception_ptr& cause() const noexcept { return cause_; }

 private:
  Status status_;
  std::string code_;
  std::string reason_;
  std::exception_ptr cause_;
};

// Builds `{"error": code, "reason": reason}` with the given status, JSON content type,
// the request's HTTP version and keep-alive choice.
Response make_error_response(Status status, std::string_view code, std::string_view reason,
                             unsigned version = 11, bool keep_alive = true);

// "Nothing reached the service": set by a coromesh sidecar on an answer of its own when the
// request never reached the service behind it (the inbound sidecar's 503
// local_unavailable: the local service refused the connection; the upstream sidecar's
// answers when no endpoint was reached), so that its caller may send the request again
// elsewhere whatever its method, as after a refused connect of its own
// (service/fault_classifier.hpp, proxy/README.md). Only a sidecar's own answers carry it:
// the inbound sidecar removes it from what its local service answers, and a coromesh
// server from what its handlers answer, so a service's own code cannot claim it.
inline constexpr std::string_view kNotDeliveredHeader = "x-coromesh-not-delivered";

// Whether `response` says that nothing reached the service (kNotDeliveredHeader: "1").
bool says_not_delivered(const Response& response);
// Marks `response` so (a sidecar's own answer only).
void mark_not_delivered(Response& response);

// Builds a JSON response from an already-serialized body.
Response make_json_response(Status status, std::string body, unsigned version = 11,
                            bool keep_alive = true);

}  // namespace coromesh::http
