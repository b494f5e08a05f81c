#pragma once

// The parsed form of a calculator expression: a flat list of nodes in post-order (every
// node after its operands). Walking it needs no recursion and destroying it no recursive
// destructor, so a hostile expression cannot exhaust the stack. parse() (parser.hpp)
// builds it; evaluate() (evaluator.hpp) runs it. A Plan is a plain value: copy it, share
// it read-only between threads.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace calculator::expression {

// The binary operators; each one is a call to its operator service (mod: mod-svc, the
// Python one).
enum class Op : std::uint8_t { add, sub, mul, div, mod };
inline constexpr std::size_t kOpCount = 5;  // keep in step with Op

// "+", "-", "*", "/", "%".
std::string_view symbol(Op op) noexcept;
// "add", "sub", "mul", "div", "mod": the name of the operation that computes it.
std::string_view name(Op op) noexcept;

struct Node {
  enum class Kind : std::uint8_t {
    literal,  // `value`
    negate,   // unary minus of node `lhs` (of a parenthesized group: a literal's sign is
              // folded into the literal)
    binary,   // `op` of nodes `lhs` and `rhs`
  };
  Kind kind = Kind::literal;
  Op op = Op::add;
  std::int64_t value = 0;
  std::uint32_t lhs = 0;
  std::uint32_t rhs = 0;
  // Binary nodes in this subtree: the operator calls it takes. Zero: computed locally.
  std::uint32_t calls = 0;

  friend bool operator==(const Node&, const Node&) = default;
};

struct Plan {
  std::vector<Node> nodes;  // post-order; never empty in a parsed plan
  std::uint32_t operations = 0;

  std::uint32_t root() const noexcept { return static_cast<std::uint32_t>(nodes.size() - 1); }
  friend bool operator==(const Plan&, const Plan&) = default;
};

// Fully parenthesized, for tests, logs and the fuzzer's round trip: "(1 + (2 * -3))",
// a negated group as "-(...)". parse() reads it back to an equal plan (given limits that
// admit its depth).
std::string to_string(const Plan& plan);

}  // namespace calculator::expression
