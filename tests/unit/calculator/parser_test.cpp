#include "calculator/expression/parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace calculator::expression {
namespace {

struct Shape {
  std::string text;
  std::string parenthesized;  // to_string of the plan
};

class ParserShapeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(ParserShapeTest, ParsesWithPrecedenceAndLeftAssociativity) {
  const auto parsed = parse(GetParam().text);
  ASSERT_TRUE(parsed.ok()) << parsed.error->message;
  EXPECT_EQ(to_string(parsed.plan), GetParam().parenthesized);
}

INSTANTIATE_TEST_SUITE_P(
    Grammar, ParserShapeTest,
    ::testing::Values(Shape{"1+2*3", "(1 + (2 * 3))"}, Shape{"(1+2)*3", "((1 + 2) * 3)"},
                      Shape{"8-4-2", "((8 - 4) - 2)"}, Shape{"8/4/2", "((8 / 4) / 2)"},
                      Shape{"2*3+4*5", "((2 * 3) + (4 * 5))"}, Shape{"1-2+3", "((1 - 2) + 3)"},
                      Shape{"6/2*3", "((6 / 2) * 3)"}, Shape{"-(-3)", "-(-3)"}, Shape{"--3", "3"},
                      // % binds as * and /, left to right.
                      Shape{"17%5", "(17 % 5)"}, Shape{"1+7%3", "(1 + (7 % 3))"},
                      Shape{"7%3*4", "((7 % 3) * 4)"}, Shape{"8*7%3", "((8 * 7) % 3)"},
                      Shape{"100%7%3", "((100 % 7) % 3)"}, Shape{"9/4%2", "((9 / 4) % 2)"},
                      Shape{"-7%-2", "(-7 % -2)"}, Shape{"(7 % 3) * 4", "((7 % 3) * 4)"},
                      Shape{"- - -3", "-3"}, Shape{"2--3", "(2 - -3)"}, Shape{"-3*-2", "(-3 * -2)"},
                      Shape{"-(2+3)", "-((2 + 3))"}, Shape{"((((5))))", "5"},
                      Shape{" \t7\r\n/ 2 ", "(7 / 2)"}, Shape{"007", "7"},
                      Shape{"9223372036854775807", "9223372036854775807"},
                      Shape{"-9223372036854775808", "-9223372036854775808"},
                      Shape{"1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5",
                            "((((((((((((((((1 + 1) + 2) + 3) + 4) + 5) + 6) - 1) - 2) - 3) - 4)"
                            " - 5) - 6) + 9) + 8) - 4) - 5)"}));

struct Failure {
  std::string text;
  ErrorKind kind;
  std::size_t position;
  std::string message;
};

class ParserErrorTest : public ::testing::TestWithParam<Failure> {};

TEST_P(ParserErrorTest, SaysWhereAndWhatWasExpected) {
  const auto parsed = parse(GetParam().text);
  ASSERT_FALSE(parsed.ok()) << to_string(parsed.plan);
  EXPECT_EQ(parsed.error->kind, GetParam().kind);
  EXPECT_EQ(parsed.error->position, GetParam().position);
  EXPECT_EQ(parsed.error->message, GetParam().message);
}

const std::string kRange = "-9223372036854775808..9223372036854775807";

INSTANTIATE_TEST_SUITE_P(
    Errors, ParserErrorTest,
    ::testing::Values(
        Failure{"", ErrorKind::empty, 0, "the expression is empty"},
        Failure{" \t\n", ErrorKind::empty, 0, "the expression is empty"},
        Failure{"1+", ErrorKind::syntax, 3,
                "expected a number or '(' at position 3, found the end of the input"},
        Failure{"1 + * 2", ErrorKind::syntax, 5,
                "expected a number or '(' at position 5, found '*'"},
        Failure{"1+-", ErrorKind::syntax, 4,
                "expected a number or '(' at position 4, found the end of the input"},
        Failure{"()", ErrorKind::syntax, 2, "expected a number or '(' at position 2, found ')'"},
        Failure{"abc", ErrorKind::syntax, 1, "expected a number or '(' at position 1, found 'a'"},
        Failure{"1+\x01", ErrorKind::syntax, 3,
                "expected a number or '(' at position 3, found byte 0x01"},
        Failure{"1 2", ErrorKind::syntax, 3,
                "expected an operator or the end at position 3, found '2'"},
        Failure{"(1 2)", ErrorKind::syntax, 4,
                "expected an operator or ')' at position 4, found '2'"},
        Failure{"2^3", ErrorKind::syntax, 2,
                "expected an operator or the end at position 2, found '^'"},
        Failure{"7 %", ErrorKind::syntax, 4,
                "expected a number or '(' at position 4, found the end of the input"},
        Failure{"% 7", ErrorKind::syntax, 1, "expected a number or '(' at position 1, found '%'"},
        Failure{"7 %% 2", ErrorKind::syntax, 4,
                "expected a number or '(' at position 4, found '%'"},
        Failure{"1+2)", ErrorKind::syntax, 4, "unbalanced ')' at position 4"},
        Failure{"(1+(2", ErrorKind::syntax, 6,
                "expected ')' at position 6, found the end of the input (to close '(' at "
                "position 4)"},
        Failure{"9223372036854775808", ErrorKind::literal_out_of_range, 1,
                "the integer at position 1 is outside the 64-bit range " + kRange},
        Failure{"-9223372036854775809", ErrorKind::literal_out_of_range, 2,
                "the integer at position 2 is outside the 64-bit range " + kRange},
        Failure{"--9223372036854775808", ErrorKind::literal_out_of_range, 3,
                "the integer at position 3 is outside the 64-bit range " + kRange},
        Failure{"1+99999999999999999999999", ErrorKind::literal_out_of_range, 3,
                "the integer at position 3 is outside the 64-bit range " + kRange}));

TEST(ParserLimitsTest, LengthIsCheckedBeforeAnythingElse) {
  const std::string at_limit = std::string(4095, ' ') + "1";
  EXPECT_TRUE(parse(at_limit).ok());
  const auto parsed = parse(at_limit + " ");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error->kind, ErrorKind::too_long);
  EXPECT_EQ(parsed.error->message, "the expression is 4097 bytes long; at most 4096 are accepted");
}

std::string chain(std::uint32_t operations) {
  std::string text = "1";
  for (std::uint32_t i = 0; i < operations; ++i) {
    text += "+1";
  }
  return text;
}

TEST(ParserLimitsTest, OperationsAreCountedUpToTheLimit) {
  const auto at_limit = parse(chain(256));
  ASSERT_TRUE(at_limit.ok());
  EXPECT_EQ(at_limit.plan.operations, 256U);
  const auto over = parse(chain(257));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error->kind, ErrorKind::too_many_operations);
  EXPECT_EQ(over.error->position, 2U * 257U);  // the 257th '+'
  EXPECT_EQ(over.error->message, "more than 256 operations (at position 514)");
}

std::string nested(std::uint32_t depth) {
  return std::string(depth, '(') + "1" + std::string(depth, ')');
}

TEST(ParserLimitsTest, NestingIsBoundedAndNeverRecursive) {
  EXPECT_TRUE(parse(nested(64)).ok());
  const auto over = parse(nested(65));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error->kind, ErrorKind::too_deep);
  EXPECT_EQ(over.error->position, 65U);
  EXPECT_EQ(over.error->message, "parentheses nested deeper than 64 levels at position 65");
  // With the limits lifted the parser still needs no stack per level: 200,000 levels.
  const Limits unlimited{.max_length = 1'000'000, .max_depth = 1'000'000};
  EXPECT_TRUE(parse(nested(200'000), unlimited).ok());
}

TEST(ParserLimitsTest, MinusSignsAreFoldedWithoutLimit) {
  const auto parsed = parse(std::string(4000, '-') + "5");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(to_string(parsed.plan), "5");
}

TEST(PlanTest, IsPostOrderWithCallCounts) {
  const auto parsed = parse("(1+2)*-(3-4)");
  ASSERT_TRUE(parsed.ok());
  const Plan& plan = parsed.plan;
  EXPECT_EQ(plan.operations, 3U);
  for (std::uint32_t i = 0; i < plan.nodes.size(); ++i) {
    const Node& node = plan.nodes[i];
    if (node.kind != Node::Kind::literal) {
      EXPECT_LT(node.lhs, i);
    }
    if (node.kind == Node::Kind::binary) {
      EXPECT_LT(node.rhs, i);
    }
  }
  EXPECT_EQ(plan.nodes[plan.root()].calls, 3U);
  EXPECT_EQ(plan.nodes[plan.root()].op, Op::mul);
}

TEST(PlanTest, ToStringReadsBackToTheSamePlan) {
  for (const std::string text :
       {"1+2*3-4/5", "-(1-(2*-(3)))", "((7))", "-9223372036854775808*1", "1-7%3*-(2%5)"}) {
    const auto parsed = parse(text);
    ASSERT_TRUE(parsed.ok()) << text;
    const auto again = parse(to_string(parsed.plan));
    ASSERT_TRUE(again.ok()) << to_string(parsed.plan);
    EXPECT_EQ(again.plan, parsed.plan) << text;
  }
}

TEST(PlanTest, EachOperatorHasASymbolAndTheNameOfItsOperation) {
  const std::pair<Op, std::pair<std::string_view, std::string_view>> table[] = {
      {Op::add, {"+", "add"}},
      {Op::sub, {"-", "sub"}},
      {Op::mul, {"*", "mul"}},
      {Op::div, {"/", "div"}},
      {Op::mod, {"%", "mod"}}};
  static_assert(std::size(table) == kOpCount);
  for (const auto& [op, expected] : table) {
    EXPECT_EQ(symbol(op), expected.first);
    EXPECT_EQ(name(op), expected.second);
  }
}

TEST(ErrorKindTest, NamesAreTheErrorCodes) {
  EXPECT_EQ(to_string(ErrorKind::empty), "empty_expression");
  EXPECT_EQ(to_string(ErrorKind::syntax), "invalid_expression");
  EXPECT_EQ(to_string(ErrorKind::literal_out_of_range), "literal_out_of_range");
  EXPECT_EQ(to_string(ErrorKind::too_long), "expression_too_long");
  EXPECT_EQ(to_string(ErrorKind::too_many_operations), "too_many_operations");
  EXPECT_EQ(to_string(ErrorKind::too_deep), "nesting_too_deep");
}

}  // namespace
}  // namespace calculator::expression
