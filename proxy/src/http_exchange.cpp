#include "http_exchange.hpp"

#include "coromesh/http/error.hpp"

namespace coromesh::sidecar {

bool is_idempotent(http::Verb method) noexcept {
  switch (method) {
    case http::Verb::get:
    case http::Verb::head:
    case http::Verb::put:
    case http::Verb::delete_:
    case http::Verb::options:
    case http::Verb::trace:
      return true;
    default:
      return false;
  }
}

std::optional<http::Response> refusal_of(const boost::beast::error_code& read_error,
                                         const http::framing::RequestParser& parser) {
  namespace beast_http = boost::beast::http;
  auto refuse = [](http::Status status, std::string_view code, std::string_view reason) {
    return http::make_error_response(status, code, reason, 11, false);
  };
  if (read_error == beast_http::error::header_limit) {
    return refuse(http::Status::request_header_fields_too_large, "header_too_large",
                  "request header exceeds " + std::to_string(kHeaderLimit) + " bytes");
  }
  if (read_error == beast_http::error::body_limit) {
    return refuse(http::Status::payload_too_large, "body_too_large",
                  "request body exceeds " + std::to_string(kBodyLimit) + " bytes");
  }
  if (read_error) {
    return std::nullopt;
  }
  if (http::framing::has_unframed_transfer_encoding(parser)) {
    return refuse(http::Status::bad_request, "malformed_request",
                  "Transfer-Encoding must end in chunked");
  }
  if (parser.get().method() == http::Verb::trace && !parser.get().body().empty()) {
    return refuse(http::Status::bad_request, "malformed_request",
                  "a TRACE request must not have content");
  }
  return std::nullopt;
}

std::string_view target_path(std::string_view target) noexcept {
  return target.substr(0, target.find('?'));
}

}  // namespace coromesh::sidecar
