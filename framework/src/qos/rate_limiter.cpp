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

Duration turn_interval(double per_ns) {
  return Duration(std::llround(1.0 / per_ns));
}
}  // namespace

std::uint64_t TokenBucket::lease_size_for(std::uint64_t burst) {
  return std::clamp<std::uint64_t>(burst / (8 * kShards), 1, 64);
}

TokenBucket::TokenBucket(TokenBucketConfig config, const Clock& clock)
    : config_((check(config), config)),
      clock_(&clock),
      per_ns_(units_per_ns(config.permits, config.period)),
      tokens_(static_cast<double>(config.burst)),
      last_(clock.now()),
      lease_size_(lease_size_for(config.burst)) {}

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
  const std::uint64_t take =
      spent ? std::min(lease_size_.load(std::memory_order_relaxed), whole) : 1;
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
  if (tokens == 1 && lease_size_.load(std::memory_order_relaxed) > 1) {
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

void TokenBucket::reconfigure(TokenBucketConfig config) {
  check(config);
  std::lock_guard lock(mutex_);
  refill(clock_->now());  // what the old rate added up to now
  // The unused leases come back: their tokens are available now, and a smaller burst may
  // not hold them. A thread taking from its lease meanwhile either took its token before
  // the exchange or finds the lease spent and comes to the lock.
  for (std::size_t shard = 0; shard < kShards; ++shard) {
    tokens_ += static_cast<double>(leases_[shard].left.exchange(0, std::memory_order_acquire));
    leased_[shard] = 0;
  }
  leased_total_ = 0;
  config_ = config;
  per_ns_ = units_per_ns(config.permits, config.period);
  tokens_ = std::min(tokens_, static_cast<double>(config.burst));
  lease_size_.store(lease_size_for(config.burst), std::memory_order_relaxed);
}

TokenBucketConfig TokenBucket::config() const {
  std::lock_guard lock(mutex_);
  return config_;
}

LeakyBucket::LeakyBucket(LeakyBucketConfig config, const Clock& clock)
    : config_((check(config), config)),
      clock_(&clock),
      per_ns_(units_per_ns(config.rate, config.period)),
      interval_(turn_interval(per_ns_)),
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
  return schedule_at(now, Duration::max()).admission;
}

LeakyBucket::Turn LeakyBucket::try_schedule(Duration max_wait) {
  return schedule_at(clock_->now(), max_wait);
}

LeakyBucket::Turn LeakyBucket::schedule_at(Clock::time_point now, Duration max_wait) {
  const auto granted = [now, max_wait](Clock::time_point start) -> Turn {
    const Duration wait = start - now;
    // A turn that is now is never refused here: the deadline's own checks do that.
    if (wait > Duration::zero() && wait >= max_wait) {
      return {Admission::rejected(Reason::deadline_exceeded)};
    }
    return {Admission::granted(), start, wait};
  };
  std::lock_guard lock(mutex_);
  leak(now);
  forget_spent_turns(now);
  if (!given_back_.empty()) {
    // A turn given back comes before every turn at the end of the schedule, and its unit
    // is still in the bucket: taking it again changes no level.
    Turn turn = granted(std::max(given_back_.front(), now));
    if (turn.admission) {
      given_back_.pop_front();
    }
    return turn;
  }
  if (level_ + 1.0 > static_cast<double>(config_.capacity) + kEpsilon) {
    return {Admission::rejected(Reason::rate_limited)};
  }
  // The new drop leaves after everything already in the bucket has leaked out.
  Turn turn = granted(now + Duration(std::llround(level_ / per_ns_)));
  if (turn.admission) {
    level_ += 1.0;
  }
  return turn;
}

double LeakyBucket::unleaked(Clock::time_point start, Clock::time_point now) const noexcept {
  const double left = static_cast<double>((start + interval_ - now).count()) * per_ns_;
  return std::clamp(left, 0.0, 1.0);
}

bool LeakyBucket::is_last_turn(Clock::time_point start, Clock::time_point now) const noexcept {
  // The last turn starts one interval before the bucket is empty (rounding aside).
  const auto last_start = now + Duration(std::llround(level_ / per_ns_)) - interval_;
  return std::chrono::abs(last_start - start) * 2 < interval_;
}

void LeakyBucket::forget_spent_turns(Clock::time_point now) noexcept {
  // A turn given back whose time is over was lost; its unit has leaked out of level_.
  while (!given_back_.empty() && given_back_.front() + interval_ <= now) {
    given_back_.pop_front();
  }
}

void LeakyBucket::give_back(Clock::time_point start) noexcept {
  std::lock_guard lock(mutex_);
  const auto now = clock_->now();
  leak(now);
  forget_spent_turns(now);
  if (unleaked(start, now) <= 0.0) {
    return;
  }
  if (!is_last_turn(start, now)) {
    // A hole in the schedule: the next call takes it (turns after it keep their times).
    try {
      given_back_.insert(std::upper_bound(given_back_.begin(), given_back_.end(), start), start);
    } catch (...) {
      // Out of memory: the turn stays taken, as if its call had run.
    }
    return;
  }
  // The end of the schedule moves back, over the holes just before it too.
  level_ = std::max(0.0, level_ - unleaked(start, now));
  while (!given_back_.empty() && is_last_turn(given_back_.back(), now)) {
    level_ = std::max(0.0, level_ - unleaked(given_back_.back(), now));
    given_back_.pop_back();
  }
}

void LeakyBucket::reconfigure(LeakyBucketConfig config) {
  check(config);
  std::lock_guard lock(mutex_);
  const auto now = clock_->now();
  leak(now);  // at the old rate up to now
  forget_spent_turns(now);
  // level_ stays, even above the new capacity: the calls it counts were admitted.
  config_ = config;
  per_ns_ = units_per_ns(config.rate, config.period);
  interval_ = turn_interval(per_ns_);
}

LeakyBucketConfig LeakyBucket::config() const {
  std::lock_guard lock(mutex_);
  return config_;
}

double LeakyBucket::level() {
  std::lock_guard lock(mutex_);
  const auto now = clock_->now();
  leak(now);
  forget_spent_turns(now);
  double level = level_;
  for (const auto start : given_back_) {
    level -= unleaked(start, now);
  }
  return std::max(0.0, level);
}

}  // namespace coromesh::qos
