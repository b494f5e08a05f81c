#pragma once

// An answer from Consul that the client cannot use: a non-2xx status, or a 2xx whose
// body is not what the API documents (malformed JSON, missing fields). Transport
// failures (agent unreachable, timeouts) are http::ClientError instead; both derive
// from std::exception, and the watch and registrar loops retry either.

#include <stdexcept>
#include <string>
#include <string_view>

namespace coromesh::consul {

class ConsulError : public std::runtime_error {
 public:
  // `request` names the call ("PUT /v1/agent/service/register"), `status` is the HTTP
  // status received, `body` is kept as an excerpt. `problem` says what was wrong with a
  // 2xx answer; empty when the status itself is the complaint.
  ConsulError(std::string request, int status, std::string_view body,
              std::string_view problem = {});

  const std::string& request() const noexcept { return request_; }
  int status() const noexcept { return status_; }
  const std::string& body_excerpt() const noexcept { return body_; }
  // Whether the caller's request or credentials are what is wrong: any 4xx but 429.
  // Sending the same again cannot help (a configuration error, an ACL token without the
  // right). A 429 is the agent asking to slow down (a client past
  // limits.http_max_conns_per_client, the Connect CA's signing rate limit) and a 5xx its
  // own failure: both are worth retrying later, with backoff. A 2xx that does not decode
  // is not the caller's either.
  bool caller_fault() const noexcept;

 private:
  std::string request_;
  int status_;
  std::string body_;
};

}  // namespace coromesh::consul
