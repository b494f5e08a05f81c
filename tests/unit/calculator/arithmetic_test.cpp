#include "calculator/operators/arithmetic.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace calculator::arithmetic {
namespace {

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
constexpr Outcome kOverflow{0, Failure::overflow};

Outcome value(std::int64_t v) {
  return {v, Failure::none};
}

TEST(ArithmeticTest, Add) {
  EXPECT_EQ(add(1, 2), value(3));
  EXPECT_EQ(add(-5, 3), value(-2));
  EXPECT_EQ(add(kMax, 0), value(kMax));
  EXPECT_EQ(add(kMax, 1), kOverflow);
  EXPECT_EQ(add(kMin, -1), kOverflow);
  EXPECT_EQ(add(kMin, kMax), value(-1));
}

TEST(ArithmeticTest, Subtract) {
  EXPECT_EQ(subtract(5, 7), value(-2));
  EXPECT_EQ(subtract(kMin, 1), kOverflow);
  EXPECT_EQ(subtract(0, kMin), kOverflow);
  EXPECT_EQ(subtract(-1, kMin), value(kMax));
  EXPECT_EQ(subtract(kMax, -1), kOverflow);
}

TEST(ArithmeticTest, Multiply) {
  EXPECT_EQ(multiply(6, 7), value(42));
  EXPECT_EQ(multiply(-6, 7), value(-42));
  EXPECT_EQ(multiply(kMin, 1), value(kMin));
  EXPECT_EQ(multiply(kMin, -1), kOverflow);
  EXPECT_EQ(multiply(std::int64_t{1} << 32, std::int64_t{1} << 31), kOverflow);
  EXPECT_EQ(multiply(std::int64_t{1} << 31, std::int64_t{1} << 31), value(std::int64_t{1} << 62));
}

TEST(ArithmeticTest, DivideTruncatesTowardZero) {
  EXPECT_EQ(divide(7, 2), value(3));
  EXPECT_EQ(divide(-7, 2), value(-3));
  EXPECT_EQ(divide(7, -2), value(-3));
  EXPECT_EQ(divide(kMin, 1), value(kMin));
  EXPECT_EQ(divide(kMax, -1), value(-kMax));
}

TEST(ArithmeticTest, DivideRefusesZeroAndTheOneQuotientThatDoesNotFit) {
  EXPECT_EQ(divide(1, 0), (Outcome{0, Failure::division_by_zero}));
  EXPECT_EQ(divide(0, 0), (Outcome{0, Failure::division_by_zero}));
  EXPECT_EQ(divide(kMin, -1), kOverflow);
}

TEST(ArithmeticTest, FailureNamesAreTheErrorCodes) {
  EXPECT_EQ(to_string(Failure::overflow), "overflow");
  EXPECT_EQ(to_string(Failure::division_by_zero), "division_by_zero");
}

}  // namespace
}  // namespace calculator::arithmetic
