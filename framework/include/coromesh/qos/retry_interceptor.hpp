#pragma once

// Retry as a chain interceptor: the RetryPolicy (retry.hpp) driving attempts through
// the rest of the chain.

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>

#include "coromesh/qos/chain.hpp"
#include "coromesh/qos/retry.hpp"

namespace coromesh::qos {

struct RetryOptions {
  // Optional. A retry it refuses is not made: the call ends with the last attempt's own
  // fault, and the refusal reaches the rejection hook (reason budget_exhausted).
  std::shared_ptr<RetryBudget> budget{};
  std::uint64_t seed = 0x5eed;  // jitter RNG seed (deterministic tests)
  // Retry an attempt that timed out (FaultClass::timeout: a per-attempt timeout further
  // in, Envoy's per_try_timeout); other rejections are never retried.
  bool retry_attempt_timeouts = true;
};

// Calls the rest of the chain up to max_attempts times while the fault is retryable (the
// decision table in fault.hpp: transport errors, the callee's 502/503/504, attempt
// timeouts; never a caller's 4xx, a cancellation or a handler's exception), waiting the jittered
// backoff on an asio timer between attempts. Each original call deposits into the budget; each
// retry asks it. A retry is not started when its backoff would end past the overall deadline: the
// last fault is rethrown instead.
//
// A RetryingInterceptor: when synchronous interceptors follow it (the default order), the
// chain runs its attempts in their segment's frame (see chain.hpp); the decisions below are
// the same either way.
class RetryInterceptor final : public RetryingInterceptor {
 public:
  explicit RetryInterceptor(RetryConfig config, RetryOptions options = {},
                            std::optional<int> weight = std::nullopt, std::string name = "retry");
  const RetryPolicy& policy() const noexcept { return policy_; }

  // Deposits the request into the budget; at the chain's clock's time, read here and
  // returned, when the budget keeps the same clock.
  std::optional<Clock::time_point> on_call(Invocation& invocation) override;
  // Retries a retryable fault of a repeatable call while attempts, the deadline and the
  // budget allow: returns the jittered backoff, or nullopt.
  std::optional<Duration> on_attempt_fault(Invocation& invocation, const std::exception_ptr& error,
                                           std::uint32_t attempt) override;

 private:
  bool retryable(const Fault& fault, std::uint32_t attempts, bool idempotent) const;
  Duration next_backoff(std::uint32_t retry);

  RetryPolicy policy_;
  RetryOptions options_;
  std::mutex rng_mutex_;
  std::mt19937_64 rng_;
};

}  // namespace coromesh::qos
