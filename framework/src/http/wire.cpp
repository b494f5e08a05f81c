#include "wire.hpp"

#include <charconv>

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
