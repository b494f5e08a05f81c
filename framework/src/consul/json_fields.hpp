#pragma once

// Strict readers of Consul's JSON fields, shared by the module's codecs: absent and null
// read as empty, a field of the wrong type is a DecodeError. Private to the consul module.

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "json_codec.hpp"

namespace coromesh::consul::detail::json_fields {

namespace json = boost::json;

inline json::value parse(std::string_view body) {
  boost::system::error_code ec;
  auto value = json::parse(body, ec);
  if (ec) {
    throw DecodeError("invalid JSON: " + ec.message());
  }
  return value;
}

inline const json::object& as_object(const json::value& value, std::string_view what) {
  if (const auto* object = value.if_object()) {
    return *object;
  }
  throw DecodeError(std::string(what) + " is not an object");
}

inline const json::array& as_array(const json::value& value, std::string_view what) {
  if (const auto* array = value.if_array()) {
    return *array;
  }
  throw DecodeError(std::string(what) + " is not an array");
}

// Absent and null read as "", anything but a string is an error.
inline std::string string_field(const json::object& object, std::string_view key) {
  const auto* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) {
    return {};
  }
  if (const auto* text = value->if_string()) {
    return std::string(*text);
  }
  throw DecodeError("field " + std::string(key) + " is not a string");
}

inline std::uint64_t unsigned_field(const json::object& object, std::string_view key,
                                    std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
  const auto* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) {
    return 0;
  }
  if (value->is_uint64() && value->get_uint64() <= max) {
    return value->get_uint64();
  }
  if (value->is_int64() && value->get_int64() >= 0 &&
      static_cast<std::uint64_t>(value->get_int64()) <= max) {
    return static_cast<std::uint64_t>(value->get_int64());
  }
  throw DecodeError("field " + std::string(key) + " is not an integer in [0, " +
                    std::to_string(max) + "]");
}

// Absent and null read as false, anything but a boolean is an error.
inline bool bool_field(const json::object& object, std::string_view key) {
  const auto* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) {
    return false;
  }
  if (const auto* flag = value->if_bool()) {
    return *flag;
  }
  throw DecodeError("field " + std::string(key) + " is not a boolean");
}

// A string that must be there and not be empty.
inline std::string required_string(const json::object& object, std::string_view key) {
  auto text = string_field(object, key);
  if (text.empty()) {
    throw DecodeError("field " + std::string(key) + " is missing or empty");
  }
  return text;
}

}  // namespace coromesh::consul::detail::json_fields
