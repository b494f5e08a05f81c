#include "wire.hpp"

#include <charconv>

#include "coromesh/http/flat_write.hpp"

namespace coromesh::http::detail {

void append_response(const Response& response, std::string& out) {
  out += response.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  char code[4];
  auto [end, ec] = std::to_chars(code, code + sizeof(code), response.result_int());
  out.append(code, end);
  out += ' ';
  auto reason = response.reason();
  out.append(reason.data(), reason.size());
  out += "\r\n";
  bool has_length = false;
  for (const auto& field : response) {
    auto name = field.name_string();
    auto value = field.value();
    has_length = has_length || field.name() == Field::content_length ||
                 field.name() == Field::transfer_encoding;
    out.append(name.data(), name.size());
    out += ": ";
    out.append(value.data(), value.size());
    out += "\r\n";
  }
  const auto& body = response.body();
  if (!has_length) {
    char length[24];
    auto [length_end, length_ec] = std::to_chars(length, length + sizeof(length), body.size());
    out += "Content-Length: ";
    out.append(length, length_end);
    out += "\r\n";
  }
  out += "\r\n";
  out += body;
}

}  // namespace coromesh::http::detail

namespace coromesh::http {
namespace {

template <class Fields>
void append_fields_and_body(const Fields& fields, const std::string& body, std::string& out) {
  for (const auto& field : fields) {
    const auto name = field.name_string();
    const auto value = field.value();
    out.append(name.data(), name.size());
    out += ": ";
    out.append(value.data(), value.size());
    out += "\r\n";
  }
  out += "\r\n";
  out += body;
}

// "HTTP/X.Y", as Beast writes it from the message's version (11 for 1.1).
void append_version(unsigned version, std::string& out) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10 % 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
}

}  // namespace

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
  append_version(response.version(), out);
  out += ' ';
  char code[4];
  const auto [end, ec] = std::to_chars(code, code + sizeof(code), response.result_int());
  out.append(code, end);
  out += ' ';
  const auto reason = response.reason();
  out.append(reason.data(), reason.size());
  out += "\r\n";
  append_fields_and_body(response, response.body(), out);
}

}  // namespace coromesh::http
