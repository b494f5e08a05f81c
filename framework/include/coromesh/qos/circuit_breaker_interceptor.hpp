#pragma once

// The circuit breaker (circuit_breaker.hpp) as a chain interceptor.

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>

#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/circuit_breaker.hpp"

namespace coromesh::qos {

// acquire() before, on_success / on_failure with the duration measured on the chain's
// clock after. Failures are what counts_against_callee() says (fault.hpp: the callee's
// failures, transport errors, timeouts); a caller's error, a cancellation or a local
// rejection gives the permit back without recording (they say nothing about the
// callee's health).
class CircuitBreakerInterceptor final : public SynchronousInterceptor {
 public:
  explicit CircuitBreakerInterceptor(std::shared_ptr<CircuitBreaker> breaker,
                                     std::optional<int> weight = std::nullopt,
                                     std::string name = "circuit_breaker");
  CircuitBreaker& breaker() const noexcept { return *breaker_; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;

 private:
  std::shared_ptr<CircuitBreaker> breaker_;
};

}  // namespace coromesh::qos
