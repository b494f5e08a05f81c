#include "calculator/operators/answer.hpp"

#include <coromesh/http/error.hpp>
#include <string>

namespace calculator::operators {

std::int64_t value_or_422(arithmetic::Outcome outcome, std::string_view symbol,
                          const api::Operands& operands) {
  if (outcome.ok()) {
    return outcome.value;
  }
  const std::string what =
      std::to_string(operands.l) + " " + std::string(symbol) + " " + std::to_string(operands.r);
  const std::string_view code = arithmetic::to_string(outcome.failure);
  const std::string reason = outcome.failure == arithmetic::Failure::division_by_zero
                                 ? what + ": division by zero"
                                 : what + ": the result is outside the 64-bit range";
  throw coromesh::http::HttpError(coromesh::http::Status::unprocessable_entity, std::string(code),
                                  reason);
}

}  // namespace calculator::operators
