#include "wire.hpp"

#include <charconv>
#include <string_view>

#include "coromesh/http/flat_write.hpp"

namespace coromesh::http {
namespace {

// "HTTP/X.Y", as Beast writes it from the message's version (11 for 1.1).
void append_version(unsigned version, std::string& out) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10 % 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
}

// "HTTP/1.1 200 OK\r\n"
void append_status_line(const Response& response, std::string& out) {
  append_version(response.version(), out);
  out += ' ';
  char code[4];
  const auto [end, ec] = std::to_chars(code, code + sizeof(code), response.result_int());
  out.append(code, end);
  out += ' ';
  const auto reason = response.reason();
  out.append(reason.data(), reason.size());
  out += "\r\n";
}

void append_field(std::string_view name, std::string_view value, std::string& out) {
  out.append(name.data(), name.size());
  out += ": ";
  out.append(value.data(), value.size());
  out += "\r\n";
}

template <class Fields>
void append_fields_and_body(const Fields& fields, const std::string& body, std::string& out) {
  for (const auto& field : fields) {
    append_field(field.name_string(), field.value(), out);
  }
  out += "\r\n";
  out += body;
}

}  // namespace

namespace detail {

bool has_unsafe_field(const Response& response) noexcept {
  constexpr std::string_view kUnsafe("\r\n\0", 3);
  for (const auto& field : response) {
    if (field.name_string().find_first_of(kUnsafe) != std::string_view::npos ||
        field.value().find_first_of(kUnsafe) != std::string_view::npos) {
      return true;
    }
  }
  return false;
}

bool has_no_content(unsigned status) noexcept {
  return status < 200 || status == 204 || status == 304;
}

void append_response(const Response& response, std::string& out, bool head) {
  append_status_line(response, out);
  const unsigned status = response.result_int();
  // The framing is the body's, whatever the handler left in the fields: a stale length
  // would have the client read into the next answer on the connection. Except in a 304,
  // whose Content-Length (if its handler gave one) is the representation's (RFC 9110
  // §8.6); no answer without content gets one made up, and a 1xx or 204 none at all.
  const bool keeps_its_length = status == 304;
  for (const auto& field : response) {
    const bool framing = field.name() == Field::transfer_encoding ||
                         (field.name() == Field::content_length && !keeps_its_length);
    if (!framing) {
      append_field(field.name_string(), field.value(), out);
    }
  }
  if (has_no_content(status)) {
    out += "\r\n";  // and no content, whatever the body holds (RFC 9110 §6.4.1)
    return;
  }
  const auto& body = response.body();
  char length[24];
  const auto [end, ec] = std::to_chars(length, length + sizeof(length), body.size());
  append_field("Content-Length", std::string_view(length, static_cast<std::size_t>(end - length)),
               out);
  out += "\r\n";
  if (!head) {
    out += body;
  }
}

}  // namespace detail

void append_request(const Request& request, std::string& out) {
  const auto method = request.method_string();
  const auto target = request.target();
  out.append(method.data(), method.size());
  out += ' ';
  out.append(target.data(), target.size());
  out += ' ';
  append_version(request.version(), out);
  out += "\r\n";
  append_fields_and_body(request, request.body(), out);
}

void append_response_as_is(const Response& response, std::string& out) {
  append_status_line(response, out);
  append_fields_and_body(response, response.body(), out);
}

}  // namespace coromesh::http
