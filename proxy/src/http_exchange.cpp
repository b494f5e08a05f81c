#include "http_exchange.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <iterator>
#include <string>

#include "coromesh/http/error.hpp"

namespace coromesh::sidecar {

namespace {

bool is_hop_by_hop(boost::beast::http::field name) noexcept {
  namespace beast_http = boost::beast::http;
  return name == beast_http::field::connection || name == beast_http::field::keep_alive ||
         name == beast_http::field::proxy_connection || name == beast_http::field::upgrade;
}

}  // namespace

void remove_hop_by_hop(boost::beast::http::fields& fields) {
  namespace beast_http = boost::beast::http;
  // Walks, not look-ups by name: Beast's find() and erase() by name search its index with a
  // case-insensitive compare of whole names, and a message holds a handful of fields. Most
  // requests carry none of these, most answers only a Connection naming an option.
  bool any = false;
  std::string named;  // every Connection field's list; copied, as erasing invalidates views
  for (const auto& field : fields) {
    if (is_hop_by_hop(field.name())) {
      any = true;
      if (field.name() == beast_http::field::connection) {
        named.append(field.value());
        named.push_back(',');
      }
    }
  }
  if (!any) {
    return;
  }
  // Each token a field name, or an option such as close, which names no field. The ones
  // that are hop-by-hop anyway (keep-alive above all) are erased by the walk below.
  std::string_view rest = named;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view token = http::framing::trim_ows(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (!token.empty() && !is_hop_by_hop(beast_http::string_to_field(token))) {
      fields.erase(token);
    }
  }
  for (auto it = fields.begin(); it != fields.end();) {
    it = is_hop_by_hop(it->name()) ? fields.erase(it) : std::next(it);
  }
}

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
  if (http::framing::has_coding_besides_chunked(parser)) {
    // The body is still in that coding, and the request goes on with a Content-Length
    // (http::Client's prepare_payload), which would leave "Transfer-Encoding: gzip" next
    // to it: a message framed two ways (RFC 9112 §6.1 forbids sending both). A coding we
    // do not implement: 501, as RFC 9112 §6.1 advises (Envoy answers the same).
    return refuse(http::Status::not_implemented, "unsupported_transfer_coding",
                  "only the chunked transfer coding is supported");
  }
  if (parser.get().method() == http::Verb::trace && !parser.get().body().empty()) {
    return refuse(http::Status::bad_request, "malformed_request",
                  "a TRACE request must not have content");
  }
  return std::nullopt;
}

ForwardedDeadline forwarded_deadline(const http::Request& request, qos::Duration route_timeout) {
  ForwardedDeadline forwarded{.deadline = qos::Deadline::after(route_timeout)};
  if (const auto header = request.find(qos::kDeadlineHeader); header != request.end()) {
    forwarded.carried = true;
    if (const auto parsed = qos::parse_deadline_header(header->value())) {
      forwarded.deadline = forwarded.deadline.min(parsed.deadline);
      forwarded.spent_on_arrival = parsed.deadline.expired();
    }
  }
  return forwarded;
}

qos::QosRejected spent_deadline_refusal() {
  return qos::QosRejected("deadline", qos::Reason::deadline_exceeded);
}

http::Response refusal_response(const qos::QosRejected& refusal, unsigned version) {
  boost::json::object body{{"error", qos::to_string(refusal.reason())},
                           {"reason", refusal.what()},
                           {"policy", refusal.policy()}};
  return http::make_json_response(static_cast<http::Status>(refusal.http_status()),
                                  boost::json::serialize(body), version);
}

void rewrite_inbound_request(http::Request& request, const ForwardedDeadline& forwarded,
                             std::string_view peer) {
  if (forwarded.carried) {
    request.set(qos::kDeadlineHeader, forwarded.deadline.header_value());
  }
  request.erase(kPeerHeader);
  request.insert(kPeerHeader, peer);
  keep_alive_without_hop_by_hop(request);
}

std::string_view target_path(std::string_view target) noexcept {
  return target.substr(0, target.find('?'));
}

}  // namespace coromesh::sidecar
