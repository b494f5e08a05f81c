#pragma once

// The operator services' domain: 64-bit signed arithmetic that reports overflow and
// division by zero instead of wrapping or trapping. Pure, noexcept, any thread.

#include <cstdint>
#include <string_view>

namespace calculator::arithmetic {

enum class Failure : std::uint8_t { none, overflow, division_by_zero };

// "overflow", "division_by_zero": the error code the services answer 422 with.
std::string_view to_string(Failure failure) noexcept;

struct Outcome {
  std::int64_t value = 0;  // meaningful when failure == none
  Failure failure = Failure::none;

  bool ok() const noexcept { return failure == Failure::none; }
  friend bool operator==(const Outcome&, const Outcome&) = default;
};

Outcome add(std::int64_t l, std::int64_t r) noexcept;
Outcome subtract(std::int64_t l, std::int64_t r) noexcept;
Outcome multiply(std::int64_t l, std::int64_t r) noexcept;
// Truncates toward zero, as C++ does: -7 / 2 == -3. INT64_MIN / -1 overflows.
Outcome divide(std::int64_t l, std::int64_t r) noexcept;

}  // namespace calculator::arithmetic
