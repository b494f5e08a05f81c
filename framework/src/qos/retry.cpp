#include "coromesh/qos/retry.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "coromesh/qos/thread_shard.hpp"

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
  const auto width = config_.ttl.count() / static_cast<Duration::rep>(config_.buckets);
  bucket_width_ = width > 0 ? width : 1;
  buckets_ = std::vector<Bucket>(config_.buckets);
  lines_per_shard_ = (config_.buckets + kPerLine - 1) / kPerLine;
  request_lines_ = std::vector<RequestLine>(kShards * lines_per_shard_);
}

RetryBudget::RetryBudget(RetryBudgetConfig config, RetryBudget& predecessor)
    : RetryBudget(config, predecessor.clock()) {
  // Both windows on one time grid: an old bucket's epoch translates by its start time.
  origin_ = predecessor.origin_;
  const auto now = clock_->now();
  const auto current = epoch_of(now);
  const auto n = static_cast<std::int64_t>(buckets_.size());
  std::lock_guard lock(predecessor.mutex_);  // ours is not shared yet
  predecessor.current_locked(now);           // what has left its window is not carried
  for (std::size_t i = 0; i < predecessor.buckets_.size(); ++i) {
    const auto old_epoch = predecessor.buckets_[i].epoch.load(std::memory_order_relaxed);
    if (old_epoch < 0) {
      continue;
    }
    // ns since the origin: below 2^63 for 292 years.
    const auto epoch = old_epoch * predecessor.bucket_width_ / bucket_width_;
    if (epoch <= current - n) {
      continue;  // older than the new ttl
    }
    const auto index = static_cast<std::size_t>(epoch % n);
    if (buckets_[index].epoch.load(std::memory_order_relaxed) != epoch) {
      reset_locked(index, epoch);
    }
    buckets_[index].retries += predecessor.buckets_[i].retries;
    requests_of(0, index).fetch_add(predecessor.requests_in(i), std::memory_order_relaxed);
  }
}

std::int64_t RetryBudget::epoch_of(Clock::time_point now) const noexcept {
  return now > origin_ ? (now - origin_).count() / bucket_width_ : 0;
}

std::atomic<std::uint64_t>& RetryBudget::requests_of(std::size_t shard,
                                                     std::size_t bucket) noexcept {
  return request_lines_[shard * lines_per_shard_ + bucket / kPerLine].count[bucket % kPerLine];
}

std::uint64_t RetryBudget::requests_in(std::size_t bucket) const noexcept {
  std::uint64_t sum = 0;
  for (std::size_t shard = 0; shard < kShards; ++shard) {
    sum +=
        request_lines_[shard * lines_per_shard_ + bucket / kPerLine].count[bucket % kPerLine].load(
            std::memory_order_relaxed);
  }
  return sum;
}

void RetryBudget::reset_locked(std::size_t bucket, std::int64_t epoch) noexcept {
  for (std::size_t shard = 0; shard < kShards; ++shard) {
    requests_of(shard, bucket).store(0, std::memory_order_relaxed);
  }
  buckets_[bucket].retries = 0;
  // Published after the zeroing: a fast-path request that sees this epoch counts on top.
  buckets_[bucket].epoch.store(epoch, std::memory_order_release);
}

std::size_t RetryBudget::current_locked(Clock::time_point now) {
  const auto n = static_cast<std::int64_t>(buckets_.size());
  const auto epoch = epoch_of(now);
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    const auto e = buckets_[i].epoch.load(std::memory_order_relaxed);
    if (e >= 0 && e <= epoch - n) {
      reset_locked(i, -1);
    }
  }
  const auto index = static_cast<std::size_t>(epoch % n);
  if (buckets_[index].epoch.load(std::memory_order_relaxed) != epoch) {
    reset_locked(index, epoch);
  }
  return index;
}

double RetryBudget::allowance() const {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    total += requests_in(i);
  }
  const double ttl_seconds = std::chrono::duration<double>(config_.ttl).count();
  return static_cast<double>(config_.min_retries_per_second) * ttl_seconds +
         config_.ratio * static_cast<double>(total);
}

void RetryBudget::on_request() {
  on_request(clock_->now());
}

void RetryBudget::on_request(Clock::time_point now) {
  const std::size_t shard = thread_shard() % kShards;
  const Duration::rep since = now > origin_ ? (now - origin_).count() : 0;
  const std::uint64_t hint = current_hint_.load(std::memory_order_relaxed);
  auto epoch = static_cast<std::int64_t>(hint >> 16);
  auto index = static_cast<std::size_t>(hint & 0xffffU);
  const Duration::rep from = epoch * bucket_width_;  // <= some earlier `since`: no overflow
  if (since < from || since - from >= bucket_width_) {
    epoch = since / bucket_width_;
    index = static_cast<std::size_t>(epoch % static_cast<std::int64_t>(buckets_.size()));
    if (epoch < (std::int64_t{1} << 47)) {
      current_hint_.store(static_cast<std::uint64_t>(epoch) << 16 | index,
                          std::memory_order_relaxed);
    }
  }
  // The bucket is already the current one: count without the lock. (Under the lock,
  // sliding the window would change nothing else a reader sees: every reader slides it
  // itself before summing.)
  if (buckets_[index].epoch.load(std::memory_order_acquire) == epoch) {
    requests_of(shard, index).fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::lock_guard lock(mutex_);
  requests_of(shard, current_locked(now)).fetch_add(1, std::memory_order_relaxed);
}

Admission RetryBudget::try_retry() {
  std::lock_guard lock(mutex_);
  const std::size_t index = current_locked(clock_->now());
  std::uint64_t retries = 0;
  for (const auto& b : buckets_) {
    retries += b.retries;
  }
  if (static_cast<double>(retries + 1) > allowance() + 1e-9) {
    return Admission::rejected(Reason::budget_exhausted);
  }
  ++buckets_[index].retries;
  return Admission::granted();
}

std::uint64_t RetryBudget::available() {
  std::lock_guard lock(mutex_);
  current_locked(clock_->now());
  std::uint64_t retries = 0;
  for (const auto& b : buckets_) {
    retries += b.retries;
  }
  const auto allowed = static_cast<std::uint64_t>(std::floor(allowance() + 1e-9));
  return allowed > retries ? allowed - retries : 0;
}

}  // namespace coromesh::qos
