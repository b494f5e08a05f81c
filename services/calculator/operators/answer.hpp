#pragma once

// What an operator service answers for a checked result: the value (written bare by the
// framework, the seed's format), or an http::HttpError 422 whose code is the failure,
// e.g. {"error":"division_by_zero","reason":"7 / 0: division by zero"}. 422 and not 400:
// the request is well-formed, the arithmetic has no 64-bit answer. As a 4xx it is the
// caller's outcome, so callers' circuit breakers do not count it against the service.

#include <cstdint>
#include <string_view>

#include "calculator/api/calculator_api.hpp"
#include "calculator/operators/arithmetic.hpp"

namespace calculator::operators {

// `symbol` ("+", "/") only names the operation in the error's reason.
std::int64_t value_or_422(arithmetic::Outcome outcome, std::string_view symbol,
                          const api::Operands& operands);

}  // namespace calculator::operators
