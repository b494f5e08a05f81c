#pragma once

// Binds query strings and JSON bodies to plain structs described once with
// BOOST_DESCRIBE_STRUCT, and serializes results back. No hand-written parsing:
//
//   struct Operands { std::int64_t l; std::int64_t r; };
//   BOOST_DESCRIBE_STRUCT(Operands, (), (l, r))
//
//   auto ops = http::bind_query<Operands>("l=1&r=2");     // {1, 2}
//   auto ops = http::bind_json<Operands>(R"({"l":1,"r":2})");
//
// Member types: integers, floating point, bool, std::string, std::optional<T> (may be
// absent), std::vector<T> and nested described structs (JSON only). A binding failure
// throws HttpError 400 whose code is `missing_field` or `invalid_field` and whose
// reason names the field and what was wrong with it (a query parameter given twice is
// `invalid_field`: which copy counts would be a guess).

#include <boost/describe.hpp>
#include <boost/json/value.hpp>
#include <boost/mp11/algorithm.hpp>
#include <boost/mp11/list.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "coromesh/http/error.hpp"

namespace coromesh::http {

namespace binding_detail {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

template <class T>
constexpr bool is_described_struct_v = boost::describe::has_describe_members<T>::value;

template <class T>
constexpr bool is_scalar_v = std::is_arithmetic_v<T> || std::is_same_v<T, std::string>;

// The type of the member a Boost.Describe descriptor D names.
template <class T, class D>
using member_type_t = std::remove_cvref_t<decltype(std::declval<T&>().*D::pointer)>;

template <class T>
using public_members_t =
    boost::mp11::mp_rename<boost::describe::describe_members<T, boost::describe::mod_public>,
                           boost::mp11::mp_list>;

// What bind_json / from_body / to_json handle: a scalar, a vector of such values, or a
// described struct whose members are such values or std::optional of them.
template <class T>
consteval bool json_value_supported();

template <class T>
consteval bool json_member_supported() {
  if constexpr (is_optional<T>::value) {
    return json_value_supported<typename T::value_type>();
  } else {
    return json_value_supported<T>();
  }
}

template <class T, class... Ds>
consteval bool json_members_supported(boost::mp11::mp_list<Ds...>*) {
  return (json_member_supported<member_type_t<T, Ds>>() && ...);
}

template <class T>
consteval bool json_value_supported() {
  if constexpr (is_scalar_v<T>) {
    return true;
  } else if constexpr (is_vector<T>::value) {
    return json_value_supported<typename T::value_type>();
  } else if constexpr (is_described_struct_v<T>) {
    return json_members_supported<T>(static_cast<public_members_t<T>*>(nullptr));
  } else {
    return false;
  }
}

// What bind_query / to_query handle: a described struct of scalars and std::optional
// scalars.
template <class T>
consteval bool query_member_supported() {
  if constexpr (is_optional<T>::value) {
    return is_scalar_v<typename T::value_type>;
  } else {
    return is_scalar_v<T>;
  }
}

template <class T, class... Ds>
consteval bool query_members_supported(boost::mp11::mp_list<Ds...>*) {
  return (query_member_supported<member_type_t<T, Ds>>() && ...);
}

// The scalar parsers are out of line (binding.cpp): one copy for every service.
bool parse_scalar(std::string_view text, std::int64_t& out, std::string& why);
bool parse_scalar(std::string_view text, std::uint64_t& out, std::string& why);
bool parse_scalar(std::string_view text, double& out, std::string& why);
bool parse_scalar(std::string_view text, bool& out, std::string& why);

// Finds `name` in a query string and percent-decodes it; nullopt when absent.
// Throws HttpError(invalid_field) on a malformed escape.
std::optional<std::string> query_value(std::string_view query, std::string_view name);

[[noreturn]] void throw_missing(std::string_view where, std::string_view field);
[[noreturn]] void throw_invalid(std::string_view where, std::string_view field,
                                std::string_view why);
// "JSON body field '<path>': <why>", or "JSON body: <why>" for the body itself (empty path).
[[noreturn]] void throw_invalid_json(std::string_view path, std::string_view why);

// Whether `text` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
// nothing past U+10FFFF).
bool is_valid_utf8(std::string_view text) noexcept;
// `text` with every byte that does not begin a well-formed sequence replaced by U+FFFD,
// for quoting a client's bytes in a JSON answer.
std::string to_valid_utf8(std::string_view text);

// Whether a finite double converts to T without overflow. Beyond T's range the C++
// standard leaves the conversion undefined and IEEE 754 makes it infinity: a value
// refused for a double (parse_scalar, json_to) would reach a float member as inf.
template <class T>
constexpr bool fits_floating(double value) noexcept {
  if constexpr (sizeof(T) >= sizeof(double)) {
    return true;
  } else {
    return value >= -static_cast<double>(std::numeric_limits<T>::max()) &&
           value <= static_cast<double>(std::numeric_limits<T>::max());
  }
}

template <class T>
void from_text(std::string_view text, std::string_view field, T& out) {
  std::string why;
  if constexpr (std::is_same_v<T, std::string>) {
    // A JSON body is checked by the JSON parser; a query string is not, and a string
    // bound from it may be echoed into a JSON answer, which must be UTF-8 (RFC 8259).
    if (!is_valid_utf8(text)) {
      throw_invalid("query parameter", field, "not valid UTF-8");
    }
    out = std::string(text);
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!parse_scalar(text, out, why)) {
      throw_invalid("query parameter", field, why);
    }
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    std::int64_t wide = 0;
    if (!parse_scalar(text, wide, why)) {
      throw_invalid("query parameter", field, why);
    }
    if (wide < std::numeric_limits<T>::min() || wide > std::numeric_limits<T>::max()) {
      throw_invalid("query parameter", field, "'" + std::string(text) + "' is out of range");
    }
    out = static_cast<T>(wide);
  } else if constexpr (std::is_integral_v<T>) {
    std::uint64_t wide = 0;
    if (!parse_scalar(text, wide, why)) {
      throw_invalid("query parameter", field, why);
    }
    if (wide > std::numeric_limits<T>::max()) {
      throw_invalid("query parameter", field, "'" + std::string(text) + "' is out of range");
    }
    out = static_cast<T>(wide);
  } else if constexpr (std::is_floating_point_v<T>) {
    double wide = 0;
    if (!parse_scalar(text, wide, why)) {
      throw_invalid("query parameter", field, why);
    }
    if (!fits_floating<T>(wide)) {
      throw_invalid("query parameter", field, "'" + std::string(text) + "' is out of range");
    }
    out = static_cast<T>(wide);
  } else {
    static_assert(sizeof(T) == 0, "query binding supports scalars, strings and std::optional");
  }
}

// JSON -> value with field-naming errors. `path` is the dotted field path.
void json_to(const boost::json::value& v, const std::string& path, std::string& out);
void json_to(const boost::json::value& v, const std::string& path, bool& out);
void json_to(const boost::json::value& v, const std::string& path, std::int64_t& out);
void json_to(const boost::json::value& v, const std::string& path, std::uint64_t& out);
void json_to(const boost::json::value& v, const std::string& path, double& out);

template <class T>
void json_to(const boost::json::value& v, const std::string& path, T& out);

template <class T>
void json_member_to(const boost::json::object& object, const std::string& path,
                    std::string_view name, T& out) {
  auto child_path = path.empty() ? std::string(name) : path + "." + std::string(name);
  const auto* found = object.if_contains(name);
  if constexpr (is_optional<T>::value) {
    if (found == nullptr || found->is_null()) {
      out.reset();
      return;
    }
    typename T::value_type inner{};
    json_to(*found, child_path, inner);
    out = std::move(inner);
  } else {
    if (found == nullptr) {
      throw_missing("JSON body field", child_path);
    }
    json_to(*found, child_path, out);
  }
}

template <class T>
void json_to(const boost::json::value& v, const std::string& path, T& out) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    using Wide = std::conditional_t<std::is_signed_v<T>, std::int64_t, std::uint64_t>;
    Wide wide{};
    json_to(v, path, wide);
    if (wide < std::numeric_limits<T>::min() || wide > std::numeric_limits<T>::max()) {
      throw_invalid_json(path, "value is out of range");
    }
    out = static_cast<T>(wide);
  } else if constexpr (std::is_floating_point_v<T>) {
    double wide = 0;
    json_to(v, path, wide);
    if (!fits_floating<T>(wide)) {
      throw_invalid_json(path, "value is out of range");
    }
    out = static_cast<T>(wide);
  } else if constexpr (is_vector<T>::value) {
    if (!v.is_array()) {
      throw_invalid_json(path, "expected an array");
    }
    out.clear();
    std::size_t i = 0;
    for (const auto& item : v.get_array()) {
      typename T::value_type element{};
      json_to(item, path + "[" + std::to_string(i++) + "]", element);
      out.push_back(std::move(element));
    }
  } else if constexpr (is_described_struct_v<T>) {
    if (!v.is_object()) {
      throw_invalid_json(path, "expected an object");
    }
    const auto& object = v.get_object();
    boost::mp11::mp_for_each<boost::describe::describe_members<T, boost::describe::mod_public>>(
        [&](auto member) { json_member_to(object, path, member.name, out.*member.pointer); });
  } else {
    static_assert(sizeof(T) == 0, "unsupported type for JSON binding");
  }
}

boost::json::value parse_json_body(std::string_view body);

}  // namespace binding_detail

// A type a JSON body binds to and a result serializes from: a number, bool,
// std::string, std::vector of those, or a struct described with BOOST_DESCRIBE_STRUCT
// whose members are those, nested described structs or std::optional of them.
template <class T>
concept JsonBindable = binding_detail::json_value_supported<T>();

// A type a query string binds to: a struct described with BOOST_DESCRIBE_STRUCT whose
// members are numbers, bool, std::string or std::optional of those.
template <class T>
concept QueryBindable = binding_detail::is_described_struct_v<T> &&
    binding_detail::query_members_supported<T>(
        static_cast<binding_detail::public_members_t<T>*>(nullptr));

template <class T>
T bind_query(std::string_view query) {
  static_assert(binding_detail::is_described_struct_v<T>,
                "bind_query<T>: describe T with BOOST_DESCRIBE_STRUCT");
  T result{};
  boost::mp11::mp_for_each<boost::describe::describe_members<T, boost::describe::mod_public>>(
      [&](auto member) {
        auto& field = result.*member.pointer;
        using Member = std::remove_reference_t<decltype(field)>;
        auto raw = binding_detail::query_value(query, member.name);
        if constexpr (binding_detail::is_optional<Member>::value) {
          if (raw) {
            typename Member::value_type inner{};
            binding_detail::from_text(*raw, member.name, inner);
            field = std::move(inner);
          }
        } else {
          if (!raw) {
            binding_detail::throw_missing("query parameter", member.name);
          }
          binding_detail::from_text(*raw, member.name, field);
        }
      });
  return result;
}

template <class T>
T bind_json(std::string_view body) {
  T result{};
  binding_detail::json_to(binding_detail::parse_json_body(body), std::string{}, result);
  return result;
}

namespace binding_detail {
// Calls f(name, value) for each public member of a described struct, skipping empty
// optionals and unwrapping the others.
template <class T, class F>
void for_each_present_member(const T& value, F f) {
  boost::mp11::mp_for_each<boost::describe::describe_members<T, boost::describe::mod_public>>(
      [&](auto member) {
        const auto& field = value.*member.pointer;
        using Member = std::remove_cvref_t<decltype(field)>;
        if constexpr (is_optional<Member>::value) {
          if (field) {
            f(member.name, *field);
          }
        } else {
          f(member.name, field);
        }
      });
}

// The double whose shortest spelling is the float's own (0.1f as 0.1, not
// 0.100000001490116): JSON holds doubles, and a float widened as it is would be written
// with digits nobody set. Read back into a float, it is the same float.
double float_as_written(float value) noexcept;
}  // namespace binding_detail

// Serializes a described struct (recursively), a scalar, a string or a vector to JSON.
template <class T>
boost::json::value to_json_value(const T& value) {
  if constexpr (binding_detail::is_described_struct_v<T>) {
    boost::json::object object;
    binding_detail::for_each_present_member(
        value, [&](const char* name, const auto& field) { object[name] = to_json_value(field); });
    return object;
  } else if constexpr (binding_detail::is_vector<T>::value) {
    boost::json::array array;
    for (const auto& item : value) {
      array.push_back(to_json_value(item));
    }
    return array;
  } else {
    static_assert(binding_detail::is_scalar_v<T>,
                  "to_json: the type is not a number, bool, std::string, std::vector or a "
                  "struct described with BOOST_DESCRIBE_STRUCT (is BOOST_DESCRIBE_STRUCT "
                  "missing?)");
    if constexpr (std::is_same_v<T, float>) {
      return boost::json::value(binding_detail::float_as_written(value));
    } else {
      return boost::json::value(value);
    }
  }
}

// `value` as JSON text. Doubles are written in their shortest round-trip form (2.5, 100.0,
// 1e+300), not Boost.JSON's scientific notation (2.5E0, 1E2). JSON has no infinity or NaN:
// one throws std::invalid_argument naming where it is ("... inf at 'lines[0].price'"), so
// a handler's result holding one answers 500, and a typed call's argument is not sent.
std::string serialize_json(const boost::json::value& value);

template <class T>
std::string to_json(const T& value) {
  return serialize_json(to_json_value(value));
}

namespace binding_detail {
// Whether every floating-point number in `value` is finite (JSON can carry it), read
// from the value itself without building its JSON.
template <class T>
bool all_finite(const T& value) noexcept {
  if constexpr (std::is_floating_point_v<T>) {
    return std::isfinite(value);
  } else if constexpr (is_vector<T>::value) {
    for (const auto& item : value) {
      if (!all_finite(item)) {
        return false;
      }
    }
    return true;
  } else if constexpr (is_described_struct_v<T>) {
    bool finite = true;
    for_each_present_member(
        value, [&finite](const char*, const auto& field) { finite = finite && all_finite(field); });
    return finite;
  } else {
    return true;
  }
}
}  // namespace binding_detail

// Throws the std::invalid_argument to_json(value) throws ("... inf at 'total'") when the
// value holds a number JSON cannot carry; otherwise writes nothing. A served operation
// checks its result with it inside its QoS chain (Service::serve), so that a result it
// cannot answer is the handler's failure there, not a success answered 500 afterwards.
template <class T>
void check_serializable(const T& value) {
  if constexpr (binding_detail::json_value_supported<T>()) {
    if (!binding_detail::all_finite(value)) {
      (void)to_json(value);
    }
  }
}

namespace binding_detail {
// Appends `name=value` (percent-encoded; `&` first unless `out` is empty). Strings go
// as they are, numbers and booleans in their JSON spelling.
void append_query_param(std::string& out, std::string_view name, const boost::json::value& value);
}  // namespace binding_detail

// The query string (without '?') that bind_query<T> reads back into an equal T: one
// parameter per public member, absent optionals left out.
template <class T>
std::string to_query(const T& value) {
  static_assert(binding_detail::is_described_struct_v<T>,
                "to_query<T>: describe T with BOOST_DESCRIBE_STRUCT");
  std::string out;
  binding_detail::for_each_present_member(value, [&](const char* name, const auto& field) {
    binding_detail::append_query_param(out, name, to_json_value(field));
  });
  return out;
}

// The inverse of to_response for a 2xx body: a number from its bare text, a std::string
// as is, a described struct from JSON. Throws HttpError(bad_request, ...) when the body
// does not hold a T.
template <class T>
T from_body(std::string_view body) {
  if constexpr (std::is_same_v<T, std::string>) {
    return std::string(body);
  } else {
    T result{};
    binding_detail::json_to(binding_detail::parse_json_body(body), std::string{}, result);
    return result;
  }
}

}  // namespace coromesh::http
