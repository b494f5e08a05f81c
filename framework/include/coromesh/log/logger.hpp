#pragma once

// Structured logging: one line per event, `key=value` pairs, written to stderr.
//
//   log::info("http.listen", {{"address", "127.0.0.1"}, {"port", 8080}});
//   -> ts=2026-11-25T16:41:49.123Z level=info event=http.listen address=127.0.0.1 port=8080
//
// Thread-safe: any thread may log; each event is written with one write(2) so lines
// from different threads never interleave.

#include <chrono>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace coromesh::log {

enum class Level : std::uint8_t { debug, info, warn, error, off };

// Parses "debug", "info", "warn", "error", "off"; returns false for anything else.
bool parse_level(std::string_view text, Level& out) noexcept;
std::string_view to_string(Level level) noexcept;

void set_level(Level level) noexcept;
Level level() noexcept;
inline bool enabled(Level at) noexcept {
  return at >= level() && at != Level::off;
}

// One key=value pair. The value is rendered eagerly so a Field can be built from any
// printable type without the caller formatting it.
struct Field {
  std::string_view key;
  std::string value;

  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  template <std::integral T>
  Field(std::string_view k, T v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, double v);
  template <class Rep, class Period>
  Field(std::string_view k, std::chrono::duration<Rep, Period> d)
      : Field(k, std::chrono::duration<double>(d).count()) {}
};

// Renders one event line (without the trailing newline); exposed for tests.
std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields);

void write(Level level, std::string_view event, std::initializer_list<Field> fields);

inline void debug(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (enabled(Level::debug)) {
    write(Level::debug, event, fields);
  }
}
inline void info(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (enabled(Level::info)) {
    write(Level::info, event, fields);
  }
}
inline void warn(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (enabled(Level::warn)) {
    write(Level::warn, event, fields);
  }
}
inline void error(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (enabled(Level::error)) {
    write(Level::error, event, fields);
  }
}

}  // namespace coromesh::log
