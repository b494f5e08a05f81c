#include "coromesh/config/error.hpp"

#include <cstddef>
#include <cstdio>

namespace coromesh::config {

std::string_view to_string(Source source) noexcept {
  switch (source) {
    case Source::default_value:
      return "default";
    case Source::file:
      return "file";
    case Source::nomad:
      return "Nomad environment";
    case Source::environment:
      return "environment";
    case Source::flag:
      return "flag";
  }
  return "unknown";
}

ConfigError::ConfigError(const std::string& detail)
    : std::runtime_error("config error: " + detail) {}

std::string quote_value(std::string_view value) {
  constexpr std::size_t kShown = 80;
  std::size_t shown = value.size();
  if (shown > kShown) {
    shown = kShown;
    // Do not cut a UTF-8 sequence in half: back off over continuation bytes.
    while (shown > 0 && (static_cast<unsigned char>(value[shown]) & 0xC0U) == 0x80U) {
      --shown;
    }
  }
  std::string out = "'";
  for (char c : value.substr(0, shown)) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (byte < 0x20 || byte == 0x7F) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<unsigned>(byte));
      out += escaped;
    } else {
      out += c;
    }
  }
  out += '\'';
  if (shown < value.size()) {
    out += "... (" + std::to_string(value.size()) + " bytes)";
  }
  return out;
}

}  // namespace coromesh::config
