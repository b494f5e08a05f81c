#pragma once

// Network addresses in settings: hosts, IP literals and host:port pairs. Parsers throw
// InvalidValue like those in values.hpp; all functions are pure and thread-safe.

#include <cstdint>
#include <string>
#include <string_view>

#include "coromesh/config/error.hpp"

namespace coromesh::config {

// A "host:port" pair. IPv6 hosts are held without brackets and printed with them.
struct Address {
  std::string host{};
  std::uint16_t port = 0;

  std::string to_string() const;
  bool operator==(const Address&) const = default;
};

// A host name (RFC 1123 labels), an IPv4 address, or an IPv6 address with or without
// brackets; returned without brackets.
std::string parse_host(std::string_view text);

// An IPv4 or IPv6 literal (what a socket can bind to without a DNS lookup).
std::string parse_ip_address(std::string_view text);

// "host:port" or "[v6]:port" with a port of 1..65535.
Address parse_address(std::string_view text);

}  // namespace coromesh::config
