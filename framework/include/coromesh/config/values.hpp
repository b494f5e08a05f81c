#pragma once

// Parsers for the scalar value types a setting can have (addresses: address.hpp), and the
// formatters --help uses to show defaults. Each parser accepts the whole text or throws
// InvalidValue whose message quotes the text and says what was expected, e.g.
// "'250' has no unit (use e.g. 250ms, 5s, 1m)".
//
// All functions are pure; any thread may call them.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "coromesh/config/error.hpp"

namespace coromesh::config {

// true/false, 1/0, yes/no, on/off (any case).
bool parse_bool(std::string_view text);

// A decimal integer in [min, max], optionally signed.
std::int64_t parse_integer(std::string_view text, std::int64_t min, std::int64_t max);

// 0..65535; 0 asks the kernel for a free port.
std::uint16_t parse_port(std::string_view text);

// One or more <number><unit> terms, Go style: "250ms", "5s", "1m30s", "1.5h", or "0".
// Units: ns, us, ms, s, m, h. A bare number other than 0 is rejected: "10" is ambiguous.
std::chrono::nanoseconds parse_duration(std::string_view text);

// Bytes: "8192", "8192B", binary "64KiB", "1MiB", "1GiB", "1TiB" or decimal "1kB",
// "10MB", "1GB", "1TB" (units in any case).
std::uint64_t parse_size(std::string_view text);

// Comma-separated items, each trimmed of spaces; empty items are dropped.
std::vector<std::string> parse_list(std::string_view text);

// The shortest exact spelling: 10s, 250ms, 1m30s, 0s.
std::string format_duration(std::chrono::nanoseconds value);
// The largest exact binary unit: 8KiB, 1MiB, 1000B.
std::string format_size(std::uint64_t bytes);

}  // namespace coromesh::config
