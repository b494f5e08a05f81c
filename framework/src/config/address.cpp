#include "coromesh/config/address.hpp"

#include <arpa/inet.h>

#include <array>
#include <cctype>
#include <charconv>
#include <optional>

namespace coromesh::config {
namespace {

std::optional<std::uint64_t> to_port_number(std::string_view digits) {
  std::uint64_t value = 0;
  if (digits.empty() || digits.front() < '0' || digits.front() > '9') {
    return std::nullopt;
  }
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc{} || end != digits.data() + digits.size()) {
    return std::nullopt;
  }
  return value;
}

// inet_pton reads a C string: whatever follows a NUL would go unchecked ("::1\0junk"
// would pass as "::1"), so a NUL anywhere makes the text no literal.
bool is_ipv4(const std::string& text) {
  std::array<unsigned char, 4> out{};
  return text.find('\0') == std::string::npos &&
         ::inet_pton(AF_INET, text.c_str(), out.data()) == 1;
}
bool is_ipv6(const std::string& text) {
  std::array<unsigned char, 16> out{};
  return text.find('\0') == std::string::npos &&
         ::inet_pton(AF_INET6, text.c_str(), out.data()) == 1;
}

// RFC 1123: dot-separated labels of 1..63 letters, digits and inner hyphens.
bool is_host_name(std::string_view text) {
  if (text.empty() || text.size() > 253) {
    return false;
  }
  std::size_t label = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : '.';
    if (c == '.') {
      if (label == 0 || label > 63 || text[i - 1] == '-') {
        return false;
      }
      label = 0;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || (c == '-' && label > 0)) {
      ++label;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string Address::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string parse_host(std::string_view text) {
  std::string host(text);
  bool valid = false;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    valid = is_ipv6(host);
  } else if (host.find(':') != std::string::npos) {
    valid = is_ipv6(host);
  } else if (host.find_first_not_of("0123456789.") == std::string::npos) {
    valid = is_ipv4(host);  // all digits and dots: "999.1.1.1" is not a host name either
  } else {
    valid = is_host_name(host);
  }
  if (!valid) {
    throw InvalidValue(quote_value(text) + " is not a host name or IP address");
  }
  return host;
}

std::string parse_ip_address(std::string_view text) {
  std::string ip(text);
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') {
    ip = ip.substr(1, ip.size() - 2);
  }
  if (is_ipv4(ip) || is_ipv6(ip)) {
    return ip;
  }
  throw InvalidValue(quote_value(text) + " is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)");
}

Address parse_address(std::string_view text) {
  const auto bad = [&] {
    return InvalidValue(quote_value(text) +
                        " is not an address (host:port, e.g. 127.0.0.1:8500 or [::1]:8500)");
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    throw bad();
  }
  const auto host_text = text.substr(0, colon);
  // An unbracketed IPv6 host leaves the port ambiguous ("::1:8500").
  if (host_text.find(':') != std::string_view::npos && host_text.front() != '[') {
    throw bad();
  }
  std::string host;
  try {
    host = parse_host(host_text);
  } catch (const InvalidValue&) {
    throw bad();
  }
  const auto port = to_port_number(text.substr(colon + 1));
  if (!port || *port == 0 || *port > 65535) {
    throw InvalidValue(quote_value(text) + " has no valid port (1-65535)");
  }
  return Address{host, static_cast<std::uint16_t>(*port)};
}

}  // namespace coromesh::config
