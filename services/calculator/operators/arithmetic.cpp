#include "calculator/operators/arithmetic.hpp"

#include <limits>

namespace calculator::arithmetic {
namespace {

Outcome checked(bool overflowed, std::int64_t value) noexcept {
  return overflowed ? Outcome{0, Failure::overflow} : Outcome{value, Failure::none};
}

}  // namespace

std::string_view to_string(Failure failure) noexcept {
  switch (failure) {
    case Failure::none:
      return "none";
    case Failure::overflow:
      return "overflow";
    case Failure::division_by_zero:
      return "division_by_zero";
  }
  return "none";
}

Outcome add(std::int64_t l, std::int64_t r) noexcept {
  std::int64_t sum = 0;
  const bool overflowed = __builtin_add_overflow(l, r, &sum);
  return checked(overflowed, sum);
}

Outcome subtract(std::int64_t l, std::int64_t r) noexcept {
  std::int64_t difference = 0;
  const bool overflowed = __builtin_sub_overflow(l, r, &difference);
  return checked(overflowed, difference);
}

Outcome multiply(std::int64_t l, std::int64_t r) noexcept {
  std::int64_t product = 0;
  const bool overflowed = __builtin_mul_overflow(l, r, &product);
  return checked(overflowed, product);
}

Outcome divide(std::int64_t l, std::int64_t r) noexcept {
  if (r == 0) {
    return {0, Failure::division_by_zero};
  }
  // The one quotient that does not fit: 2^63. In C++ it is undefined behaviour.
  if (l == std::numeric_limits<std::int64_t>::min() && r == -1) {
    return {0, Failure::overflow};
  }
  return {l / r, Failure::none};
}

}  // namespace calculator::arithmetic
