#pragma once

// Declaration checks for every QoS policy, in two forms:
//
//  - constexpr `validate(config)` -> std::string_view, empty when the configuration can
//    work, else a fixed message. Use it at compile time:
//      static_assert(qos::validate(qos::BulkheadConfig{.max_concurrent = 0}).empty());
//      // error: static assertion failed
//      static_assert(qos::validate(retry, 100ms).empty());  // attempts fit the timeout?
//  - `check(config, name)`, the start-up form: throws std::invalid_argument
//    "<name>: <message>" (for values that only exist at run time, e.g. from Consul KV).
//
// Every policy's constructor also runs its check.

#include <stdexcept>
#include <string>
#include <string_view>

#include "coromesh/qos/adaptive_limit.hpp"
#include "coromesh/qos/bulkhead.hpp"
#include "coromesh/qos/circuit_breaker.hpp"
#include "coromesh/qos/rate_limiter.hpp"
#include "coromesh/qos/retry.hpp"

namespace coromesh::qos {

// Throws std::invalid_argument("<name>: <message>") when `message` is not empty.
void throw_if_invalid(std::string_view name, std::string_view message);

template <class Config>
void check(const Config& config, std::string_view name) {
  throw_if_invalid(name, validate(config));
}

}  // namespace coromesh::qos
