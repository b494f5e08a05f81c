#include "calculator/expression/parser.hpp"

#include <array>
#include <cstdio>
#include <limits>
#include <vector>

namespace calculator::expression {
namespace {

// The binary operators: one row each. Adding an operator is one row here plus its Op.
struct BinaryOperator {
  char symbol;
  Op op;
  int precedence;  // higher binds tighter; all are left-associative
};
// clang-format off
constexpr std::array kBinaryOperators{
    BinaryOperator{'+', Op::add, 1},
    BinaryOperator{'-', Op::sub, 1},
    BinaryOperator{'*', Op::mul, 2},
    BinaryOperator{'/', Op::div, 2},
    BinaryOperator{'%', Op::mod, 2},  // C++'s remainder, computed by mod-svc
};
// clang-format on

const BinaryOperator* find_binary(char c) noexcept {
  for (const auto& row : kBinaryOperators) {
    if (row.symbol == c) {
      return &row;
    }
  }
  return nullptr;
}

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}
bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

// What the parser found at a position, for messages: 'x', byte 0x07, or the end.
std::string describe(std::string_view text, std::size_t index) {
  if (index >= text.size()) {
    return "the end of the input";
  }
  const auto byte = static_cast<unsigned char>(text[index]);
  if (byte > 0x20 && byte < 0x7f) {
    return std::string("'") + text[index] + "'";
  }
  std::array<char, 16> hex{};
  std::snprintf(hex.data(), hex.size(), "byte 0x%02x", static_cast<unsigned>(byte));
  return hex.data();
}

// An entry of the operator stack: a pending binary operator or an open parenthesis.
struct Pending {
  bool is_group = false;
  const BinaryOperator* binary = nullptr;  // !is_group
  bool negate = false;                     // is_group: a unary minus applies to the group
  std::size_t position = 0;                // is_group: the '(' (1-based)
};

class Parser {
 public:
  Parser(std::string_view text, const Limits& limits) : text_(text), limits_(limits) {}

  Parsed run() {
    Parsed out;
    out.error = parse_all();
    if (!out.error) {
      out.plan.nodes = std::move(nodes_);
      out.plan.operations = operations_;
    }
    return out;
  }

 private:
  std::optional<ParseError> parse_all() {
    if (text_.size() > limits_.max_length) {
      return ParseError{ErrorKind::too_long, 0,
                        "the expression is " + std::to_string(text_.size()) +
                            " bytes long; at most " + std::to_string(limits_.max_length) +
                            " are accepted"};
    }
    skip_space();
    if (at_ == text_.size()) {
      return ParseError{ErrorKind::empty, 0, "the expression is empty"};
    }
    bool expect_operand = true;
    while (true) {
      skip_space();
      if (!expect_operand && at_ == text_.size()) {
        return finish();
      }
      auto error = expect_operand ? operand(expect_operand) : operator_or_end(expect_operand);
      if (error) {
        return error;
      }
    }
  }

  // A literal (with its signs), or an opening parenthesis: then an operand follows.
  std::optional<ParseError> operand(bool& expect_operand) {
    bool negative = false;
    while (at_ < text_.size() && text_[at_] == '-') {
      negative = !negative;
      ++at_;
      skip_space();
    }
    if (at_ < text_.size() && is_digit(text_[at_])) {
      expect_operand = false;
      return literal(negative);
    }
    if (at_ < text_.size() && text_[at_] == '(') {
      if (depth_ == limits_.max_depth) {
        return ParseError{ErrorKind::too_deep, at_ + 1,
                          "parentheses nested deeper than " + std::to_string(limits_.max_depth) +
                              " levels at position " + std::to_string(at_ + 1)};
      }
      ++depth_;
      stack_.push_back(Pending{.is_group = true, .negate = negative, .position = at_ + 1});
      ++at_;
      return std::nullopt;
    }
    return expected("a number or '('");
  }

  std::optional<ParseError> literal(bool negative) {
    const std::size_t start = at_;
    // The magnitude may reach 2^63 only when the literal is negative.
    const std::uint64_t limit =
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + (negative ? 1 : 0);
    std::uint64_t magnitude = 0;
    for (; at_ < text_.size() && is_digit(text_[at_]); ++at_) {
      const auto digit = static_cast<std::uint64_t>(text_[at_] - '0');
      if (magnitude > (limit - digit) / 10) {
        return ParseError{ErrorKind::literal_out_of_range, start + 1,
                          "the integer at position " + std::to_string(start + 1) +
                              " is outside the 64-bit range -9223372036854775808.."
                              "9223372036854775807"};
      }
      magnitude = magnitude * 10 + digit;
    }
    // Two's complement: negating the magnitude in uint64 and converting gives -2^63 too.
    const std::int64_t value =
        negative ? static_cast<std::int64_t>(0 - magnitude) : static_cast<std::int64_t>(magnitude);
    emit(Node{.kind = Node::Kind::literal, .value = value});
    return std::nullopt;
  }

  // A binary operator or a closing parenthesis (the end is handled by the caller).
  std::optional<ParseError> operator_or_end(bool& expect_operand) {
    const char c = text_[at_];
    if (c == ')') {
      if (depth_ == 0) {
        return ParseError{ErrorKind::syntax, at_ + 1,
                          "unbalanced ')' at position " + std::to_string(at_ + 1)};
      }
      reduce_while([](const Pending&) { return true; });
      const Pending group = stack_.back();
      stack_.pop_back();
      --depth_;
      if (group.negate) {
        emit(Node{.kind = Node::Kind::negate, .lhs = top(0)});
      }
      ++at_;
      return std::nullopt;
    }
    const BinaryOperator* binary = find_binary(c);
    if (binary == nullptr) {
      return expected(depth_ > 0 ? "an operator or ')'" : "an operator or the end");
    }
    if (operations_ == limits_.max_operations) {
      return ParseError{ErrorKind::too_many_operations, at_ + 1,
                        "more than " + std::to_string(limits_.max_operations) +
                            " operations (at position " + std::to_string(at_ + 1) + ")"};
    }
    ++operations_;
    // Left-associative: what binds at least as tightly is complete.
    reduce_while([binary](const Pending& p) { return p.binary->precedence >= binary->precedence; });
    stack_.push_back(Pending{.binary = binary});
    ++at_;
    expect_operand = true;
    return std::nullopt;
  }

  std::optional<ParseError> finish() {
    reduce_while([](const Pending&) { return true; });
    if (!stack_.empty()) {
      const std::size_t open = stack_.back().position;
      return ParseError{ErrorKind::syntax, text_.size() + 1,
                        "expected ')' at position " + std::to_string(text_.size() + 1) +
                            ", found the end of the input (to close '(' at position " +
                            std::to_string(open) + ")"};
    }
    return std::nullopt;
  }

  // Pops pending binary operators (down to the nearest group) while `more` says so,
  // emitting each as a node of the two operands on top.
  template <class More>
  void reduce_while(More more) {
    while (!stack_.empty() && !stack_.back().is_group && more(stack_.back())) {
      const Op op = stack_.back().binary->op;
      stack_.pop_back();
      emit(Node{.kind = Node::Kind::binary, .op = op, .lhs = top(1), .rhs = top(0)});
    }
  }

  // The index of the operand `from_top` below the top; consumed by the next emit().
  std::uint32_t top(std::size_t from_top) const {
    return operands_[operands_.size() - 1 - from_top];
  }

  void emit(Node node) {
    std::size_t consumed = 0;
    if (node.kind == Node::Kind::binary) {
      node.calls = 1 + nodes_[node.lhs].calls + nodes_[node.rhs].calls;
      consumed = 2;
    } else if (node.kind == Node::Kind::negate) {
      node.calls = nodes_[node.lhs].calls;
      consumed = 1;
    }
    operands_.resize(operands_.size() - consumed);
    operands_.push_back(static_cast<std::uint32_t>(nodes_.size()));
    nodes_.push_back(node);
  }

  ParseError expected(const std::string& what) const {
    return ParseError{ErrorKind::syntax, at_ + 1,
                      "expected " + what + " at position " + std::to_string(at_ + 1) + ", found " +
                          describe(text_, at_)};
  }

  void skip_space() {
    while (at_ < text_.size() && is_space(text_[at_])) {
      ++at_;
    }
  }

  std::string_view text_;
  const Limits& limits_;
  std::size_t at_ = 0;
  std::uint32_t depth_ = 0;
  std::uint32_t operations_ = 0;
  std::vector<Pending> stack_;
  std::vector<std::uint32_t> operands_;  // nodes not yet consumed by an operator
  std::vector<Node> nodes_;
};

}  // namespace

std::string_view to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::empty:
      return "empty_expression";
    case ErrorKind::syntax:
      return "invalid_expression";
    case ErrorKind::literal_out_of_range:
      return "literal_out_of_range";
    case ErrorKind::too_long:
      return "expression_too_long";
    case ErrorKind::too_many_operations:
      return "too_many_operations";
    case ErrorKind::too_deep:
      return "nesting_too_deep";
  }
  return "invalid_expression";
}

Parsed parse(std::string_view text, const Limits& limits) {
  return Parser(text, limits).run();
}

}  // namespace calculator::expression
