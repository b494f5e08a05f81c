#pragma once

// Structured logging: one line per event, `key=value` pairs, written to stderr.
//
//   log::info("http.listen", {{"address", "127.0.0.1"}, {"port", 8080}});
//   -> ts=2026-11-25T16:41:49.123Z level=info event=http.listen address=127.0.0.1 port=8080
//
// Thread-safe and never blocking: any thread may log, io threads included. A line is
// formatted on the caller's thread and queued in memory; one background thread writes
// the queue to stderr in batches (see async_line_writer.hpp), so lines never interleave.
// When the queue is full (stderr blocked or far too slow) lines are dropped and counted
// (dropped_lines(), and a `log.lines_dropped` line once the sink moves again). Lines
// reach stderr within tens of milliseconds; flush() waits for them, and runs by itself
// at exit() — call it before std::_Exit or abort.

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

// For events that can come in floods (one per rejected call while shedding load): at
// most kLimitedLinesPerSecond lines per second for each (event, key) pair; the rest are
// counted, and the next line of that pair carries `suppressed=<count>`. `key` tells
// apart what must not share a budget, e.g. an operation, policy and reason.
inline constexpr std::uint32_t kLimitedLinesPerSecond = 10;
void write_limited(Level level, std::string_view event, std::string_view key,
                   std::initializer_list<Field> fields);

// Waits until every line logged before the call has reached stderr, or `timeout`
// passed (stderr may be a pipe nobody reads). Returns whether everything was written.
// Any thread; not from an io thread while it serves requests (it blocks).
bool flush(std::chrono::milliseconds timeout = std::chrono::seconds(2)) noexcept;

// Lines not written, since the process started, by why: for the metrics module's
// coromesh_log_lines_dropped_total{reason="queue_full|rate_limited"}.
struct DroppedLines {
  std::uint64_t queue_full = 0;
  std::uint64_t rate_limited = 0;
};
DroppedLines dropped_lines() noexcept;

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

inline void info_limited(std::string_view event, std::string_view key,
                         std::initializer_list<Field> fields = {}) {
  if (enabled(Level::info)) {
    write_limited(Level::info, event, key, fields);
  }
}
inline void warn_limited(std::string_view event, std::string_view key,
                         std::initializer_list<Field> fields = {}) {
  if (enabled(Level::warn)) {
    write_limited(Level::warn, event, key, fields);
  }
}

}  // namespace coromesh::log
