#pragma once

// The calculator's grammar, parsed into a Plan (plan.hpp) without recursion:
//
//   expression := operand (binary-operator operand)*
//   operand    := '-'* (integer | '(' expression ')')
//   binary-operator: '+' '-' (lower precedence), '*' '/' '%' (higher), all left-associative
//
// Integers are decimal and 64-bit signed; a literal's leading minus signs belong to it, so
// -9223372036854775808 is a literal and 9223372036854775808 is out of range. Spaces,
// tabs, CR and LF are skipped anywhere between tokens.
//
// Untrusted input is expected: every error is a value with a kind, the 1-based byte
// position it was found at and a message saying what was expected there
// ("expected a number or '(' at position 4, found '*'"). The limits bound the work and
// memory a request can cause; past them parsing stops at once.
//
// Pure: no I/O, no global state; any thread.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "calculator/expression/plan.hpp"

namespace calculator::expression {

struct Limits {
  std::size_t max_length = 4096;       // bytes of the expression text
  std::uint32_t max_operations = 256;  // binary operators (operator calls, and so fan-out)
  std::uint32_t max_depth = 64;        // nested parentheses
};

enum class ErrorKind : std::uint8_t {
  empty,                 // nothing but whitespace
  syntax,                // not in the grammar
  literal_out_of_range,  // a literal outside the 64-bit signed range
  too_long,              // past Limits::max_length
  too_many_operations,   // past Limits::max_operations
  too_deep,              // past Limits::max_depth
};

// "empty_expression", "invalid_expression", "literal_out_of_range", "expression_too_long",
// "too_many_operations", "nesting_too_deep": the machine-readable error code.
std::string_view to_string(ErrorKind kind) noexcept;

struct ParseError {
  ErrorKind kind = ErrorKind::syntax;
  std::size_t position = 0;  // 1-based byte offset; 0 when no single position applies
  std::string message;
};

struct Parsed {
  Plan plan;                        // meaningful only when ok()
  std::optional<ParseError> error;  // set: the first problem found

  bool ok() const noexcept { return !error; }
};

Parsed parse(std::string_view text, const Limits& limits = {});

}  // namespace calculator::expression
