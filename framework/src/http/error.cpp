#include "coromesh/http/error.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "coromesh/http/typed_handler.hpp"

namespace coromesh::http {

Response make_json_response(Status status, std::string body, unsigned version, bool keep_alive) {
  Response res{status, version};
  res.set(Field::content_type, "application/json");
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

Response make_error_response(Status status, std::string_view code, std::string_view reason,
                             unsigned version, bool keep_alive) {
  boost::json::object body;
  body["error"] = code;
  // Reasons quote the request (a parameter, the path), whose bytes may not be UTF-8 or
  // may have been clipped mid-character; Boost.JSON writes strings' bytes unchecked, and
  // the answer must stay JSON a client can parse (RFC 8259 §8.1).
  if (binding_detail::is_valid_utf8(reason)) {
    body["reason"] = reason;
  } else {
    body["reason"] = binding_detail::to_valid_utf8(reason);
  }
  return make_json_response(status, boost::json::serialize(body), version, keep_alive);
}

bool says_not_delivered(const Response& response) {
  const auto field = response.find(kNotDeliveredHeader);
  return field != response.end() && field->value() == "1";
}

void mark_not_delivered(Response& response) {
  response.set(kNotDeliveredHeader, "1");
}

Response make_text_response(Status status, std::string body) {
  Response res{status, 11};
  res.set(Field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

}  // namespace coromesh::http
