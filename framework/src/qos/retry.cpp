#include "coromesh/qos/retry.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace coromesh::qos {

void check(const RetryConfig& config, Duration overall_timeout, Duration per_attempt_timeout,
           std::string_view name) {
  const auto error = overall_timeout > Duration::zero()
                         ? validate(config, overall_timeout, per_attempt_timeout)
                         : validate(config);
  if (!error.empty()) {
    throw std::invalid_argument(std::string(name) + ": " + std::string(error));
  }
}

RetryPolicy::RetryPolicy(RetryConfig config) : config_(config) {
  check(config_);
}

Duration RetryPolicy::backoff(std::uint32_t n, std::mt19937_64& rng) const {
  const auto nominal = nominal_backoff(config_, n);
  switch (config_.jitter) {
    case Jitter::none:
      return nominal;
    case Jitter::full: {
      std::uniform_int_distribution<Duration::rep> dist(0, nominal.count());
      return Duration(dist(rng));
    }
    case Jitter::equal: {
      const auto half = nominal / 2;
      std::uniform_int_distribution<Duration::rep> dist(0, (nominal - half).count());
      return half + Duration(dist(rng));
    }
  }
  return nominal;
}

bool RetryPolicy::should_retry(std::uint32_t attempts_made, unsigned status,
                               bool idempotent) const noexcept {
  if (attempts_made >= config_.max_attempts || (config_.idempotent_only && !idempotent)) {
    return false;
  }
  return config_.retryable_statuses.contains(status);
}

bool RetryPolicy::should_retry(std::uint32_t attempts_made, const std::exception& error,
                               bool idempotent) const noexcept {
  if (attempts_made >= config_.max_attempts || (config_.idempotent_only && !idempotent)) {
    return false;
  }
  if (config_.retryable_exception != nullptr) {
    return config_.retryable_exception(error);
  }
  if (dynamic_cast<const QosRejected*>(&error) != nullptr) {
    return false;
  }
  return config_.retry_transport_errors;
}

RetryBudget::RetryBudget(RetryBudgetConfig config, const Clock& clock)
    : config_(config), clock_(&clock), origin_(clock.now()) {
  if (auto error = validate(config_); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  buckets_.assign(config_.buckets, Bucket{});
}

RetryBudget::Bucket& RetryBudget::current(Clock::time_point now) {
  const auto n = static_cast<std::int64_t>(buckets_.size());
  const auto width = config_.ttl.count() / n;
  const auto epoch = now > origin_ ? (now - origin_).count() / (width > 0 ? width : 1) : 0;
  for (auto& b : buckets_) {
    if (b.epoch >= 0 && b.epoch <= epoch - n) {
      b = Bucket{};
    }
  }
  auto& b = buckets_[static_cast<std::size_t>(epoch % n)];
  if (b.epoch != epoch) {
    b = Bucket{epoch, 0, 0};
  }
  return b;
}

double RetryBudget::allowance() const {
  std::uint64_t requests = 0;
  for (const auto& b : buckets_) {
    requests += b.requests;
  }
  const double ttl_seconds = std::chrono::duration<double>(config_.ttl).count();
  return static_cast<double>(config_.min_retries_per_second) * ttl_seconds +
         config_.ratio * static_cast<double>(requests);
}

void RetryBudget::on_request() {
  std::lock_guard lock(mutex_);
  ++current(clock_->now()).requests;
}

Admission RetryBudget::try_retry() {
  std::lock_guard lock(mutex_);
  auto& bucket = current(clock_->now());
  std::uint64_t retries = 0;
  for (const auto& b : buckets_) {
    retries += b.retries;
  }
  if (static_cast<double>(retries + 1) > allowance() + 1e-9) {
    return Admission::rejected(Reason::budget_exhausted);
  }
  ++bucket.retries;
  return Admission::granted();
}

std::uint64_t RetryBudget::available() {
  std::lock_guard lock(mutex_);
  current(clock_->now());
  std::uint64_t retries = 0;
  for (const auto& b : buckets_) {
    retries += b.retries;
  }
  const auto allowed = static_cast<std::uint64_t>(std::floor(allowance() + 1e-9));
  return allowed > retries ? allowed - retries : 0;
}

}  // namespace coromesh::qos
