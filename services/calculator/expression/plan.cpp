#include "calculator/expression/plan.hpp"

#include <utility>

namespace calculator::expression {

std::string_view symbol(Op op) noexcept {
  switch (op) {
    case Op::add:
      return "+";
    case Op::sub:
      return "-";
    case Op::mul:
      return "*";
    case Op::div:
      return "/";
    case Op::mod:
      return "%";
  }
  return "?";
}

std::string_view name(Op op) noexcept {
  switch (op) {
    case Op::add:
      return "add";
    case Op::sub:
      return "sub";
    case Op::mul:
      return "mul";
    case Op::div:
      return "div";
    case Op::mod:
      return "mod";
  }
  return "?";
}

std::string to_string(const Plan& plan) {
  // Post-order: each node's operands are already rendered; moving them into the parent
  // keeps the memory linear in the output.
  std::vector<std::string> rendered(plan.nodes.size());
  for (std::size_t i = 0; i < plan.nodes.size(); ++i) {
    const Node& node = plan.nodes[i];
    switch (node.kind) {
      case Node::Kind::literal:
        rendered[i] = std::to_string(node.value);
        break;
      case Node::Kind::negate:
        rendered[i] = "-(" + std::move(rendered[node.lhs]) + ")";
        break;
      case Node::Kind::binary:
        rendered[i] = "(" + std::move(rendered[node.lhs]) + " " + std::string(symbol(node.op)) +
                      " " + std::move(rendered[node.rhs]) + ")";
        break;
    }
  }
  return plan.nodes.empty() ? std::string() : std::move(rendered.back());
}

}  // namespace calculator::expression
