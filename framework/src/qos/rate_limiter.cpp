#include "coromesh/qos/rate_limiter.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "coromesh/qos/thread_shard.hpp"

namespace coromesh::qos {

namespace {
// Floating-point slack so that exactly-refilled buckets are not rejected by rounding.
constexpr double kEpsilon = 1e-9;

template <class Config>
void check(const Config& config) {
  if (auto error = validate(config); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
}

double units_per_ns(std::uint64_t units, Duration period) {
  return static_cast<double>(units) / static_cast<double>(period.count());
}
}  // namespace

TokenBucket::TokenBucket(TokenBucketConfig config, const Clock& clock)
    : config_((check(config), config)),
      clock_(&clock),
      per_ns_(units_per_ns(config.permits, config.period)),
      tokens_(static_cast<double>(config.burst)),
      last_(clock.now()),
      lease_size_(std::clamp<std::uint64_t>(config.burst / (8 * kShards), 1, 64)) {}

void TokenBucket::refill(Clock::time_point now) {
  if (now > last_) {
    tokens_ = std::min(static_cast<double>(config_.burst - leased_total_),
                       tokens_ + static_cast<double>((now - last_).count()) * per_ns_);
    last_ = now;
  }
}

Admission TokenBucket::acquire_leased(Clock::time_point now) {
  const std::size_t shard = thread_shard() % kShards;
  auto& lease = leases_[shard];
  std::uint64_t left = lease.left.load(std::memory_order_relaxed);
  while (left > 0) {
    if (lease.left.compare_exchange_weak(left, left - 1, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      return Admission::granted();
    }
  }
  std::lock_guard lock(mutex_);
  const bool spent = lease.left.load(std::memory_order_relaxed) == 0;
  if (spent) {
    leased_total_ -= leased_[shard];
    leased_[shard] = 0;
  }
  refill(now);
  if (tokens_ + kEpsilon < 1.0) {
    return Admission::rejected(Reason::rate_limited);
  }
  // One token for this call and, when the shard's lease is spent, a new lease from the
  // whole tokens there are (another thread sharing the shard may have renewed it).
  const auto whole = static_cast<std::uint64_t>(tokens_ + kEpsilon);
  const std::uint64_t take = spent ? std::min(lease_size_, whole) : 1;
  tokens_ = std::max(0.0, tokens_ - static_cast<double>(take));
  if (take > 1) {
    leased_[shard] = take - 1;
    leased_total_ += take - 1;
    lease.left.store(take - 1, std::memory_order_release);
  }
  return Admission::granted();
}

Admission TokenBucket::try_acquire(std::uint64_t tokens) {
  return try_acquire_at(clock_->now(), tokens);
}

Admission TokenBucket::try_acquire_at(Clock::time_point now, std::uint64_t tokens) {
  if (tokens == 1 && lease_size_ > 1) {
    return acquire_leased(now);
  }
  const auto wanted = static_cast<double>(tokens);
  std::lock_guard lock(mutex_);
  refill(now);
  if (tokens_ + kEpsilon >= wanted) {
    tokens_ = std::max(0.0, tokens_ - wanted);
    return Admission::granted();
  }
  return Admission::rejected(Reason::rate_limited);
}

double TokenBucket::leased_left() const {
  std::uint64_t left = 0;
  for (const auto& lease : leases_) {
    left += lease.left.load(std::memory_order_relaxed);
  }
  return static_cast<double>(left);
}

double TokenBucket::available() {
  std::lock_guard lock(mutex_);
  refill(clock_->now());
  return tokens_ + leased_left();
}

Duration TokenBucket::time_until(std::uint64_t tokens) {
  std::lock_guard lock(mutex_);
  refill(clock_->now());
  const double missing = static_cast<double>(tokens) - tokens_ - leased_left();
  if (missing <= kEpsilon) {
    return Duration::zero();
  }
  // Round up, but not for floating-point noise of a fraction of a nanosecond.
  return Duration(static_cast<Duration::rep>(std::ceil(missing / per_ns_ - 1e-3)));
}

LeakyBucket::LeakyBucket(LeakyBucketConfig config, const Clock& clock)
    : config_((check(config), config)),
      clock_(&clock),
      per_ns_(units_per_ns(config.rate, config.period)),
      last_(clock.now()) {}

void LeakyBucket::leak(Clock::time_point now) {
  if (now > last_) {
    level_ = std::max(0.0, level_ - static_cast<double>((now - last_).count()) * per_ns_);
    last_ = now;
  }
}

Admission LeakyBucket::try_acquire() {
  return try_acquire_at(clock_->now());
}

Admission LeakyBucket::try_acquire_at(Clock::time_point now) {
  auto delay = schedule_at(now);
  return delay ? Admission::granted() : Admission::rejected(Reason::rate_limited);
}

std::optional<Duration> LeakyBucket::try_schedule() {
  return schedule_at(clock_->now());
}

std::optional<Duration> LeakyBucket::schedule_at(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  leak(now);
  if (level_ + 1.0 > static_cast<double>(config_.capacity) + kEpsilon) {
    return std::nullopt;
  }
  // The new drop leaves after everything already in the bucket has leaked out.
  const auto wait = Duration(std::llround(level_ / per_ns_));
  level_ += 1.0;
  return wait;
}

double LeakyBucket::level() {
  std::lock_guard lock(mutex_);
  leak(clock_->now());
  return level_;
}

}  // namespace coromesh::qos
