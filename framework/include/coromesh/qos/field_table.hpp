#pragma once

// The machinery that lets each QoS policy be described once (policy_fields.hpp): a table of
// its fields, from which the framework derives the override reader, the bounds check,
// the one-line summary and the kind's place in a PolicySet.
//
//   template <>
//   struct Description<bulkhead> {
//     static constexpr std::string_view kind = "bulkhead";
//     static constexpr int default_weight = weights::bulkhead;
//     static constexpr bool summarized = true;
//     static constexpr auto fields = std::tuple{
//         bounded("max_concurrent", &bulkhead::max_concurrent, 0U, 1'000'000U,
//                 "bulkhead: max_concurrent must be in [0, 1000000]")
//             .in_summary("="),
//         ...};
//   };
//
// A field is bounded (numbers and durations: [min, max], with the message a value
// outside gets, at compile time and from a Consul override alike) or a flag (bool or
// an enum named by EnumNames). Fields marked in_summary appear in the summary as
// `<prefix><value>`, in table order, when `shown` says so (a bool prints only its prefix,
// and only when true).

#include <array>
#include <string_view>
#include <tuple>
#include <type_traits>

namespace coromesh::qos {

template <class E>
struct EnumName {
  std::string_view name;
  E value;
};

// Specialise with `static constexpr std::array<EnumName<E>, N> values` for every enum a
// policy field has.
template <class E>
struct EnumNames;

template <class P, class T>
struct Field {
  using Policy = P;
  using Type = T;

  std::string_view name;
  T P::*member;
  T min{};
  T max{};
  std::string_view out_of_range{};    // empty for a flag
  const char* summary = nullptr;      // nullptr: not in the summary, else the text before it
  bool (*shown)(const P&) = nullptr;  // nullptr: always (a bool: when true)
  bool percent = false;               // a ratio, summarized as a percentage

  static constexpr bool is_flag = std::is_same_v<T, bool> || std::is_enum_v<T>;

  constexpr bool in_range(const P& policy) const noexcept {
    if constexpr (is_flag) {
      return true;
    } else {
      const T& value = policy.*member;
      return value >= min && value <= max;  // false for NaN
    }
  }

  constexpr Field in_summary(const char* prefix, bool (*when)(const P&) = nullptr,
                             bool as_percent = false) const noexcept {
    Field copy = *this;
    copy.summary = prefix;
    copy.shown = when;
    copy.percent = as_percent;
    return copy;
  }
};

template <class P, class T>
constexpr Field<P, T> bounded(std::string_view name, T P::*member, T min, T max,
                              std::string_view out_of_range) noexcept {
  return {.name = name, .member = member, .min = min, .max = max, .out_of_range = out_of_range};
}

template <class P, class T>
constexpr Field<P, T> flag(std::string_view name, T P::*member) noexcept {
  static_assert(Field<P, T>::is_flag, "flag(): a bool or an enum with EnumNames");
  return {.name = name, .member = member};
}

// Specialised for every policy kind in policy_fields.hpp.
template <class P>
struct Description;

template <class P, class F>
constexpr void for_each_field(F&& visit) {
  std::apply([&visit](const auto&... field) { (visit(field), ...); }, Description<P>::fields);
}

// The out_of_range message of the first field outside its bounds; empty when none is.
template <class P>
constexpr std::string_view check_bounds(const P& policy) noexcept {
  std::string_view error;
  for_each_field<P>([&](const auto& field) {
    if (error.empty() && !field.in_range(policy)) {
      error = field.out_of_range;
    }
  });
  return error;
}

}  // namespace coromesh::qos
