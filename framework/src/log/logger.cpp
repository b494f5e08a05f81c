#include "coromesh/log/logger.hpp"

#include <unistd.h>

#include <array>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <utility>

#include "coromesh/log/async_line_writer.hpp"
#include "coromesh/log/key_rate_limiter.hpp"

namespace coromesh::log {
namespace {

std::atomic<Level> g_level{Level::info};

bool needs_quotes(std::string_view value) {
  if (value.empty()) {
    return true;
  }
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || u < 0x20 || u == 0x7f) {
      return true;
    }
  }
  return false;
}

// Values come from untrusted input (paths, headers): quote and escape them so a
// hostile value cannot forge extra fields or lines.
void append_value(std::string& out, std::string_view value) {
  if (!needs_quotes(value)) {
    out += value;
    return;
  }
  out += '"';
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\x";
          out += kHex[u >> 4];
          out += kHex[u & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void append_timestamp(std::string& out) {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::array<char, 40> buf{};
  auto n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%S", &tm);
  out.append(buf.data(), n);
  std::array<char, 8> ms{};
  std::snprintf(ms.data(), ms.size(), ".%03dZ", static_cast<int>(millis));
  out += ms.data();
}

// Created on first use and deliberately never destroyed: a static destructor that logs
// after it would otherwise use a dead writer. exit() flushes it (a line logged just
// before exiting, say the shutdown's last, is not lost); the thread ends with the process.
AsyncLineWriter& stderr_writer() {
  static AsyncLineWriter* const writer = [] {
    auto* created = new AsyncLineWriter(STDERR_FILENO);
    std::atexit([] { flush(); });
    return created;
  }();
  return *writer;
}

KeyRateLimiter& flood_limiter() {
  static KeyRateLimiter* const limiter =
      new KeyRateLimiter(kLimitedLinesPerSecond, std::chrono::seconds(1));
  return *limiter;
}

}  // namespace

Field::Field(std::string_view k, double v) : key(k) {
  std::array<char, 32> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  value.assign(buf.data(), ec == std::errc{} ? end : buf.data());
}

bool parse_level(std::string_view text, Level& out) noexcept {
  static constexpr std::array<std::pair<std::string_view, Level>, 5> kLevels{{
      {"debug", Level::debug},
      {"info", Level::info},
      {"warn", Level::warn},
      {"error", Level::error},
      {"off", Level::off},
  }};
  for (const auto& [name, value] : kLevels) {
    if (name == text) {
      out = value;
      return true;
    }
  }
  return false;
}

std::string_view to_string(Level level) noexcept {
  switch (level) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warn:
      return "warn";
    case Level::error:
      return "error";
    case Level::off:
      return "off";
  }
  return "unknown";
}

void set_level(Level level) noexcept {
  g_level.store(level, std::memory_order_relaxed);
}
Level level() noexcept {
  return g_level.load(std::memory_order_relaxed);
}

std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields) {
  std::string line;
  line.reserve(128);
  line += "ts=";
  append_timestamp(line);
  line += " level=";
  line += to_string(level);
  line += " event=";
  append_value(line, event);
  for (const auto& field : fields) {
    line += ' ';
    line += field.key;
    line += '=';
    append_value(line, field.value);
  }
  return line;
}

void write(Level level, std::string_view event, std::initializer_list<Field> fields) {
  stderr_writer().submit(format_line(level, event, fields));
}

void write_limited(Level level, std::string_view event, std::string_view key,
                   std::initializer_list<Field> fields) {
  // The budget is checked before formatting: a suppressed line costs a hash lookup.
  std::string budget_key;
  budget_key.reserve(event.size() + 1 + key.size());
  budget_key.append(event).append(1, '\x1f').append(key);
  auto decision = flood_limiter().admit(budget_key, KeyRateLimiter::Clock::now());
  if (!decision.admit) {
    return;
  }
  std::string line = format_line(level, event, fields);
  if (decision.suppressed_before > 0) {
    line += " suppressed=";
    line += std::to_string(decision.suppressed_before);
  }
  stderr_writer().submit(line);
}

bool flush(std::chrono::milliseconds timeout) noexcept {
  return stderr_writer().flush(timeout);
}

DroppedLines dropped_lines() noexcept {
  return {stderr_writer().dropped(), flood_limiter().suppressed_total()};
}

}  // namespace coromesh::log
