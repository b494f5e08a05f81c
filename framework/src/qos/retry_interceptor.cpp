#include "coromesh/qos/retry_interceptor.hpp"

#include <utility>

namespace coromesh::qos {

RetryInterceptor::RetryInterceptor(RetryConfig config, RetryOptions options,
                                   std::optional<int> weight, std::string name)
    : RetryingInterceptor(std::move(name), weight, weights::retry),
      policy_(config),
      options_(std::move(options)),
      rng_(options_.seed) {}

bool RetryInterceptor::retryable(const Fault& fault, std::uint32_t attempts,
                                 bool idempotent) const {
  const auto& config = policy_.config();
  if (attempts >= config.max_attempts ||
      !qos::repeatable(fault, idempotent, config.idempotent_only)) {
    return false;
  }
  // An explicit hook decides for a statusless failure of the callee or the transport.
  const bool hook_decides =
      config.retryable_exception != nullptr && fault.status == 0 &&
      (fault.kind == FaultClass::callee_failure || fault.kind == FaultClass::transport);
  if (hook_decides) {
    try {
      std::rethrow_exception(fault.error);
    } catch (const std::exception& error) {
      return config.retryable_exception(error);
    } catch (...) {
      return false;
    }
  }
  return qos::retryable(fault, config.retry_transport_errors, options_.retry_attempt_timeouts,
                        config.retryable_statuses.contains(fault.status));
}

Duration RetryInterceptor::next_backoff(std::uint32_t retry) {
  const std::lock_guard lock(rng_mutex_);
  return policy_.backoff(retry, rng_);
}

// The budget counts the request at the time the first attempt starts: one clock read,
// handed to the rest of the chain too (no suspension between the read and the start).
std::optional<Clock::time_point> RetryInterceptor::on_call(Invocation& invocation) {
  std::optional<Clock::time_point> first_start;
  if (options_.budget) {
    if (&options_.budget->clock() == &invocation.clock()) {
      first_start = invocation.clock().now();
      options_.budget->on_request(*first_start);
    } else {
      options_.budget->on_request();
    }
  }
  return first_start;
}

std::optional<Duration> RetryInterceptor::on_attempt_fault(Invocation& invocation,
                                                           const std::exception_ptr& error,
                                                           std::uint32_t attempt) {
  const Fault& fault = invocation.fault(error);
  if (invocation.unrepeatable() || !retryable(fault, attempt, invocation.idempotent())) {
    return std::nullopt;
  }
  const Duration backoff = next_backoff(attempt);
  if (invocation.deadline().is_set() &&
      backoff >= invocation.deadline().remaining(invocation.clock())) {
    return std::nullopt;
  }
  if (options_.budget) {
    const Admission admission = options_.budget->try_retry();
    if (!admission) {
      // The budget declines to try again; it does not answer for the callee. The call
      // ends with the last attempt's own fault (as Envoy's, Finagle's and gRPC's retry
      // budgets do), so its status, breaker and fallback follow whose fault that was;
      // the refusal is counted (coromesh_qos_rejections_total, reason budget_exhausted).
      invocation.note_refusal(name(), admission.reason());
      return std::nullopt;
    }
  }
  return backoff;
}

}  // namespace coromesh::qos
