#pragma once

// The two ways configuration fails, and where a value came from.
//
// A ConfigError stops start-up; its what() is one complete line naming the setting and
// its source, ready to print as is:
//
//   config error: --port (flag): 'abc' is not a port number (0-65535)
//   config error: COROMESH_THREADS (environment): '0' is out of range 1..256
//   config error: /etc/add.conf:3: expected 'name = value', got 'port 8080'
//
// Every value quoted in a message goes through quote_value(), so hostile input (a
// newline in an environment variable, a megabyte of text) cannot break the one line.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coromesh::config {

// Where a setting's value came from, in increasing precedence.
enum class Source : std::uint8_t { default_value, file, nomad, environment, flag };

// "default", "file", "Nomad environment", "environment", "flag".
std::string_view to_string(Source source) noexcept;

// A value parser rejected its input; what() is the reason without the setting's name,
// e.g. "'abc' is not an integer". The option set adds the name and the source.
class InvalidValue : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Start-up must stop. what() starts with "config error: " and holds no newline.
class ConfigError : public std::runtime_error {
 public:
  // `detail` is the line without the "config error: " prefix.
  explicit ConfigError(const std::string& detail);
};

// `value` in single quotes for an error message: control characters escaped (\n, \t,
// \x00, ...), and cut to 80 bytes with the full length noted when longer.
std::string quote_value(std::string_view value);

}  // namespace coromesh::config
