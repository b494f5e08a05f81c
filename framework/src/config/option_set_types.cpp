// OptionSet's typed declarations: each binds a variable, a parser from values.hpp and
// the way --help shows the default.

#include <chrono>

#include "coromesh/config/option_set.hpp"

namespace coromesh::config {

void OptionSet::add_string(std::string& target, Spec spec) {
  add(std::move(spec), "<string>", target, [&target](std::string_view v) { target = v; });
}

void OptionSet::add_bool(bool& target, Spec spec) {
  add(std::move(spec), "<bool>", target ? "true" : "false",
      [&target](std::string_view v) { target = parse_bool(v); });
  settings_.back().is_bool = true;
}

void OptionSet::add_port(std::uint16_t& target, Spec spec) {
  add(std::move(spec), "<port>", std::to_string(target),
      [&target](std::string_view v) { target = parse_port(v); });
}

void OptionSet::add_duration(std::chrono::nanoseconds& target, Spec spec,
                             std::chrono::nanoseconds min, std::chrono::nanoseconds max) {
  add(std::move(spec), "<duration>", format_duration(target),
      [&target, min, max](std::string_view v) {
        const auto value = parse_duration(v);
        if (value < min || value > max) {
          throw InvalidValue(quote_value(v) + " is out of range " + format_duration(min) + ".." +
                             format_duration(max));
        }
        target = value;
      });
}

void OptionSet::add_size(std::uint64_t& target, Spec spec, std::uint64_t min, std::uint64_t max) {
  add(std::move(spec), "<size>", format_size(target), [&target, min, max](std::string_view v) {
    const auto value = parse_size(v);
    if (value < min || value > max) {
      throw InvalidValue(quote_value(v) + " is out of range " + format_size(min) + ".." +
                         format_size(max));
    }
    target = value;
  });
}

void OptionSet::add_address(Address& target, Spec spec) {
  add(std::move(spec), "<host:port>", target.host.empty() ? "" : target.to_string(),
      [&target](std::string_view v) { target = parse_address(v); });
}

void OptionSet::add_host(std::string& target, Spec spec) {
  add(std::move(spec), "<host>", target, [&target](std::string_view v) { target = parse_host(v); });
}

void OptionSet::add_ip_address(std::string& target, Spec spec) {
  add(std::move(spec), "<ip>", target,
      [&target](std::string_view v) { target = parse_ip_address(v); });
}

void OptionSet::add_list(std::vector<std::string>& target, Spec spec) {
  std::string shown;
  for (const auto& item : target) {
    shown += (shown.empty() ? "" : ",") + item;
  }
  add(std::move(spec), "<a,b,...>", shown,
      [&target](std::string_view v) { target = parse_list(v); });
}

}  // namespace coromesh::config
