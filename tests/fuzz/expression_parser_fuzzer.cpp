// libFuzzer target for the calculator's expression parser (services/calculator/expression).
// Every input must parse or fail cleanly, within the limits, and a parsed plan must be
// well-formed and read back from its own printout. ASan and UBSan catch the rest.
//
// Short run (ctest registers it as fuzz.expression_parser):
//   ./build/bin/fuzz_expression_parser -runs=200000 build/fuzz-corpus tests/fuzz/corpus/expression
// Long run, with the dictionary, until stopped (new inputs go to the first directory;
// copy the interesting ones into tests/fuzz/corpus/expression):
//   mkdir -p /tmp/expr-corpus && ./build/bin/fuzz_expression_parser -max_len=5000 \
//     -dict=tests/fuzz/expression.dict -jobs=2 /tmp/expr-corpus tests/fuzz/corpus/expression
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string_view>

#include "calculator/expression/parser.hpp"
#include "calculator/expression/plan.hpp"

namespace {

using calculator::expression::Limits;
using calculator::expression::Node;
using calculator::expression::Plan;

void check(bool condition) {
  if (!condition) {
    std::abort();  // libFuzzer reports the input that got here
  }
}

void check_plan(const Plan& plan, const Limits& limits) {
  check(!plan.nodes.empty());
  check(plan.operations <= limits.max_operations);
  std::uint32_t binary = 0;
  for (std::uint32_t i = 0; i < plan.nodes.size(); ++i) {
    const Node& node = plan.nodes[i];
    if (node.kind == Node::Kind::binary) {
      ++binary;
      check(node.lhs < i && node.rhs < i);
      check(node.calls == 1 + plan.nodes[node.lhs].calls + plan.nodes[node.rhs].calls);
    } else if (node.kind == Node::Kind::negate) {
      check(node.lhs < i);
      check(node.calls == plan.nodes[node.lhs].calls);
    } else {
      check(node.calls == 0);
    }
  }
  check(binary == plan.operations);
  check(plan.nodes[plan.root()].calls == plan.operations);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const Limits limits;
  const auto parsed = calculator::expression::parse(text, limits);
  if (!parsed.ok()) {
    check(!parsed.error->message.empty());
    check(parsed.error->position <= text.size() + 1);
    return 0;
  }
  check(text.size() <= limits.max_length);
  check_plan(parsed.plan, limits);
  // The printout is fully parenthesized, so deeper and longer: read it back unbounded.
  const Limits unbounded{.max_length = std::numeric_limits<std::size_t>::max(),
                         .max_operations = limits.max_operations,
                         .max_depth = std::numeric_limits<std::uint32_t>::max()};
  const auto again = calculator::expression::parse(to_string(parsed.plan), unbounded);
  check(again.ok());
  check(again.plan == parsed.plan);
  return 0;
}
