#include "coromesh/config/values.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

namespace coromesh::config {
namespace {

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::optional<std::uint64_t> to_u64(std::string_view digits) {
  std::uint64_t value = 0;
  if (digits.empty() || !is_digit(digits.front())) {
    return std::nullopt;
  }
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc{} || end != digits.data() + digits.size()) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

bool parse_bool(std::string_view text) {
  for (std::string_view yes : {"true", "1", "yes", "on"}) {
    if (equals_ignoring_case(text, yes)) {
      return true;
    }
  }
  for (std::string_view no : {"false", "0", "no", "off"}) {
    if (equals_ignoring_case(text, no)) {
      return false;
    }
  }
  throw InvalidValue(quote_value(text) + " is not a boolean (true/false, yes/no, on/off, 1/0)");
}

std::int64_t parse_integer(std::string_view text, std::int64_t min, std::int64_t max) {
  const auto range = std::to_string(min) + ".." + std::to_string(max);
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') {
    digits.remove_prefix(1);  // from_chars takes '-' but not '+'
  }
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || end != digits.data() + digits.size() ||
      (ec != std::errc{} && ec != std::errc::result_out_of_range) ||
      (digits.front() == '-' && text.front() == '+')) {
    throw InvalidValue(quote_value(text) + " is not an integer");
  }
  if (ec == std::errc::result_out_of_range || value < min || value > max) {
    throw InvalidValue(quote_value(text) + " is out of range " + range);
  }
  return value;
}

std::uint16_t parse_port(std::string_view text) {
  auto value = to_u64(text);
  if (!value || *value > 65535) {
    throw InvalidValue(quote_value(text) + " is not a port number (0-65535)");
  }
  return static_cast<std::uint16_t>(*value);
}

std::chrono::nanoseconds parse_duration(std::string_view text) {
  using namespace std::chrono;
  const auto bad = [&](std::string_view why) {
    return InvalidValue(quote_value(text) + " is not a duration (" + std::string(why) + ")");
  };
  if (text == "0") {
    return nanoseconds(0);
  }
  if (!text.empty() && text.find_first_not_of("0123456789.") == std::string_view::npos) {
    throw InvalidValue(quote_value(text) + " has no unit (use e.g. 250ms, 5s, 1m)");
  }
  struct Unit {
    std::string_view name;
    std::int64_t ns;
  };
  // Longest names first so "ms" is not read as "m" followed by garbage.
  constexpr std::array<Unit, 6> kUnits{{{"ns", 1},
                                        {"us", 1'000},
                                        {"ms", 1'000'000},
                                        {"s", 1'000'000'000},
                                        {"m", 60'000'000'000},
                                        {"h", 3'600'000'000'000}}};
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t total = 0;
  std::string_view rest = text;
  if (rest.empty()) {
    throw bad("empty; use e.g. 250ms, 5s, 1m");
  }
  while (!rest.empty()) {
    const auto number_end = rest.find_first_not_of("0123456789.");
    const auto number = rest.substr(0, number_end);
    rest.remove_prefix(number.size());
    const auto dot = number.find('.');
    const auto whole_digits = number.substr(0, dot);
    const auto frac_digits =
        dot == std::string_view::npos ? std::string_view{} : number.substr(dot + 1);
    if (number.empty() || (whole_digits.empty() && frac_digits.empty()) ||
        frac_digits.find('.') != std::string_view::npos) {
      throw bad("use e.g. 250ms, 5s, 1m30s");
    }
    const Unit* unit = nullptr;
    for (const auto& candidate : kUnits) {
      if (rest.starts_with(candidate.name) &&
          (rest.size() == candidate.name.size() ||
           !std::isalpha(static_cast<unsigned char>(rest[candidate.name.size()])))) {
        unit = &candidate;
        break;
      }
    }
    if (unit == nullptr) {
      throw bad("units are ns, us, ms, s, m, h");
    }
    rest.remove_prefix(unit->name.size());
    auto whole = whole_digits.empty() ? std::optional<std::uint64_t>(0) : to_u64(whole_digits);
    if (!whole || *whole > static_cast<std::uint64_t>(kMax / unit->ns)) {
      throw bad("too long");
    }
    std::int64_t term = static_cast<std::int64_t>(*whole) * unit->ns;
    // The fraction only adds less than one unit, so double precision is plenty.
    double fraction = 0;
    double scale = 1;
    for (char c : frac_digits.substr(0, 18)) {
      fraction = fraction * 10 + (c - '0');
      scale *= 10;
    }
    // At most one unit: rounding can reach unit->ns, never more.
    const auto part =
        static_cast<std::int64_t>(std::llround(fraction / scale * static_cast<double>(unit->ns)));
    if (term > kMax - part || total > kMax - (term + part)) {
      throw bad("too long");
    }
    total += term + part;
  }
  return nanoseconds(total);
}

std::uint64_t parse_size(std::string_view text) {
  const auto digits_end = text.find_first_not_of("0123456789");
  const auto number = to_u64(text.substr(0, digits_end));
  const auto unit =
      digits_end == std::string_view::npos ? std::string_view{} : text.substr(digits_end);
  struct Unit {
    std::string_view name;
    std::uint64_t bytes;
  };
  constexpr std::array<Unit, 10> kUnits{{{"", 1},
                                         {"B", 1},
                                         {"KiB", 1ULL << 10},
                                         {"MiB", 1ULL << 20},
                                         {"GiB", 1ULL << 30},
                                         {"TiB", 1ULL << 40},
                                         {"kB", 1'000},
                                         {"MB", 1'000'000},
                                         {"GB", 1'000'000'000},
                                         {"TB", 1'000'000'000'000}}};
  if (number) {
    for (const auto& candidate : kUnits) {
      if (equals_ignoring_case(unit, candidate.name)) {
        if (*number > std::numeric_limits<std::uint64_t>::max() / candidate.bytes) {
          throw InvalidValue(quote_value(text) + " is too large a size");
        }
        return *number * candidate.bytes;
      }
    }
  }
  throw InvalidValue(quote_value(text) + " is not a size (use e.g. 8192, 64KiB, 1MiB, 10MB)");
}

std::vector<std::string> parse_list(std::string_view text) {
  std::vector<std::string> items;
  while (!text.empty()) {
    const auto comma = text.find(',');
    auto item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const auto first = item.find_first_not_of(' ');
    if (first == std::string_view::npos) {
      continue;
    }
    item = item.substr(first, item.find_last_not_of(' ') - first + 1);
    items.emplace_back(item);
  }
  return items;
}

std::string format_duration(std::chrono::nanoseconds value) {
  using namespace std::chrono;
  auto ns = value.count();
  if (ns == 0) {
    return "0s";
  }
  std::string out = ns < 0 ? "-" : "";
  if (ns < 0) {
    ns = -ns;
  }
  // Whole hours/minutes/seconds first (1m30s), then one sub-second unit if exact.
  struct Unit {
    std::int64_t ns;
    const char* name;
  };
  for (Unit unit :
       {Unit{3'600'000'000'000, "h"}, Unit{60'000'000'000, "m"}, Unit{1'000'000'000, "s"}}) {
    if (ns >= unit.ns) {
      out += std::to_string(ns / unit.ns) + unit.name;
      ns %= unit.ns;
    }
  }
  if (ns == 0) {
    return out;
  }
  for (Unit unit : {Unit{1'000'000, "ms"}, Unit{1'000, "us"}, Unit{1, "ns"}}) {
    if (ns % unit.ns == 0) {
      return out + std::to_string(ns / unit.ns) + unit.name;
    }
  }
  return out;
}

std::string format_size(std::uint64_t bytes) {
  for (auto [shift, name] :
       {std::pair<int, const char*>{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}}) {
    const std::uint64_t unit = 1ULL << shift;
    if (bytes >= unit && bytes % unit == 0) {
      return std::to_string(bytes / unit) + name;
    }
  }
  return std::to_string(bytes) + "B";
}

}  // namespace coromesh::config
