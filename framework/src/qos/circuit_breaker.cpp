#include "coromesh/qos/circuit_breaker.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "coromesh/qos/thread_shard.hpp"

namespace coromesh::qos {

namespace {
constexpr std::uint8_t kFailureBit = 1;
constexpr std::uint8_t kSlowBit = 2;

double rate(std::uint32_t part, std::uint32_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}
}  // namespace

CircuitBreaker::CircuitBreaker(CircuitBreakerConfig config, const Clock& clock)
    : config_(config), clock_(&clock) {
  if (auto error = validate(config_); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  slow_call_ns_.store(config_.slow_call_duration.count(), std::memory_order_relaxed);
  if (config_.window_type == WindowType::count_based) {
    ring_.assign(config_.window_size, 0);
  } else {
    buckets_.assign(config_.window_buckets, Bucket{});
    origin_ = clock_->now();
  }
}

std::int64_t CircuitBreaker::epoch_of(Clock::time_point now) const {
  const auto width = config_.window_duration.count() / static_cast<Duration::rep>(buckets_.size());
  return now > origin_ ? (now - origin_).count() / width : 0;  // a clock set back: bucket 0
}

void CircuitBreaker::expire_buckets(std::int64_t epoch) {
  const auto n = static_cast<std::int64_t>(buckets_.size());
  for (auto& b : buckets_) {
    if (b.epoch >= 0 && b.epoch <= epoch - n) {
      calls_ -= b.calls;
      failures_ -= b.failures;
      slow_ -= b.slow;
      b = Bucket{};
    }
  }
}

void CircuitBreaker::reset_window() {
  std::fill(ring_.begin(), ring_.end(), std::uint8_t{0});
  ring_next_ = 0;
  ring_filled_ = 0;
  std::fill(buckets_.begin(), buckets_.end(), Bucket{});
  calls_ = failures_ = slow_ = 0;
}

void CircuitBreaker::transition(State to, Clock::time_point now) {
  state_ = to;
  published_state_.store(to, std::memory_order_release);
  ++transitions_;
  half_open_issued_ = half_open_calls_ = half_open_failures_ = half_open_slow_ = 0;
  if (to == State::open) {
    opened_at_ = now;
  }
  if (to == State::half_open) {
    half_open_permits_ = config_.permitted_calls_in_half_open;
  }
  if (to == State::closed) {
    reset_window();
  }
  // Successes counted for the state left behind say nothing about the new one.
  drop_pending_successes_locked();
  update_batching_locked();
}

void CircuitBreaker::drop_pending_successes_locked() {
  for (auto& shard : pending_successes_) {
    shard.pending.store(0, std::memory_order_relaxed);
  }
}

void CircuitBreaker::resize_ring_locked(std::uint32_t size) {
  std::vector<std::uint8_t> ring(size, 0);  // first: a bad_alloc changes nothing
  const std::size_t old_size = ring_.size();
  const std::size_t keep = std::min<std::size_t>(ring_filled_, size);
  // The newest outcome is just before ring_next_ (full or not): keep the last `keep`.
  const std::size_t first = (ring_next_ + old_size - keep) % old_size;
  calls_ = failures_ = slow_ = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    const std::uint8_t outcome = ring_[(first + i) % old_size];
    ring[i] = outcome;
    ++calls_;
    failures_ += (outcome & kFailureBit) != 0 ? 1U : 0U;
    slow_ += (outcome & kSlowBit) != 0 ? 1U : 0U;
  }
  ring_ = std::move(ring);
  ring_filled_ = keep;
  ring_next_ = keep == ring_.size() ? 0 : keep;
}

void CircuitBreaker::reconfigure(CircuitBreakerConfig config) {
  if (auto error = validate(config); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  std::lock_guard lock(mutex_);
  const bool same_type = config.window_type == config_.window_type;
  if (config.window_type == WindowType::count_based) {
    if (!same_type) {
      // From a time-based window: its buckets cannot be told apart as calls. The outcomes
      // are forgotten (the state is not), as a transition to CLOSED would.
      std::vector<std::uint8_t> ring(config.window_size, 0);
      ring_ = std::move(ring);
      buckets_.clear();
      reset_window();
      drop_pending_successes_locked();
    } else if (config.window_size != config_.window_size) {
      fold_successes_locked();  // into the old ring, which keeps its newest outcomes
      resize_ring_locked(config.window_size);
    }
  } else if (!same_type || config.window_duration != config_.window_duration ||
             config.window_buckets != config_.window_buckets) {
    // To a time-based window, or to other buckets: the recorded outcomes are forgotten
    // (they cannot be re-bucketed), the state is not. An empty ring_ marks a time-based
    // window for the success batching, which stays off.
    std::vector<Bucket> buckets(config.window_buckets, Bucket{});
    buckets_ = std::move(buckets);
    ring_.clear();
    reset_window();
    drop_pending_successes_locked();
    origin_ = clock_->now();
  }
  // The wait in OPEN keeps opened_at_, so a new wait_in_open counts from there; a half-open
  // trial keeps half_open_permits_; thresholds are read at the next outcome.
  config_ = config;
  slow_call_ns_.store(config_.slow_call_duration.count(), std::memory_order_relaxed);
  update_batching_locked();
}

CircuitBreakerConfig CircuitBreaker::config() const {
  std::lock_guard lock(mutex_);
  return config_;
}

void CircuitBreaker::update_batching_locked() {
  // Only where a success provably moves no rate up: CLOSED, a count-based ring that is
  // full (a success replaces an outcome instead of adding a call that could reach
  // minimum_calls), and rates under both thresholds (so none crosses on a success).
  const bool batch = state_ == State::closed && config_.window_type == WindowType::count_based &&
                     ring_filled_ == ring_.size() &&
                     rate(failures_, calls_) < config_.failure_rate_threshold &&
                     rate(slow_, calls_) < config_.slow_call_rate_threshold;
  if (batch_successes_.load(std::memory_order_relaxed) != batch) {
    batch_successes_.store(batch, std::memory_order_release);
  }
}

void CircuitBreaker::fold_successes_locked() {
  for (auto& shard : pending_successes_) {
    fold_shard_locked(shard);
  }
}

void CircuitBreaker::fold_shard_locked(SuccessShard& shard) {
  std::uint32_t pending = shard.pending.exchange(0, std::memory_order_acq_rel);
  if (state_ != State::closed) {
    return;  // counted as the breaker opened: ignored, like any record while OPEN
  }
  // More successes than the ring holds leave only successes in it.
  if (pending > ring_.size()) {
    pending = static_cast<std::uint32_t>(ring_.size());
  }
  append_successes_locked(pending);
}

void CircuitBreaker::append_successes_locked(std::uint32_t n) {
  // Batching is only on for a count-based window, which needs no time (a time-based one
  // has no ring, and never a pending success).
  if (ring_.empty()) {
    return;
  }
  for (; n > 0 && ring_filled_ < ring_.size(); --n) {
    append_locked(false, false, Clock::time_point{});
  }
  // The ring is full: each success replaces the oldest outcome, and the call count stays.
  while (n > 0) {
    const std::size_t run = std::min<std::size_t>(n, ring_.size() - ring_next_);
    for (std::size_t i = ring_next_; i < ring_next_ + run; ++i) {
      failures_ -= (ring_[i] & kFailureBit) != 0 ? 1U : 0U;
      slow_ -= (ring_[i] & kSlowBit) != 0 ? 1U : 0U;
      ring_[i] = 0;
    }
    ring_next_ = ring_next_ + run == ring_.size() ? 0 : ring_next_ + run;
    n -= static_cast<std::uint32_t>(run);
  }
}

Admission CircuitBreaker::acquire() {
  if (published_state_.load(std::memory_order_acquire) == State::closed) {
    return Admission::granted();
  }
  std::lock_guard lock(mutex_);
  switch (state_) {
    case State::closed:
      return Admission::granted();
    case State::open: {
      const auto now = clock_->now();
      if (now - opened_at_ < config_.wait_in_open) {
        return Admission::rejected(Reason::circuit_open);
      }
      transition(State::half_open, now);
      ++half_open_issued_;
      return Admission::granted();
    }
    case State::half_open:
      if (half_open_issued_ < half_open_permits_) {
        ++half_open_issued_;
        return Admission::granted();
      }
      return Admission::rejected(Reason::circuit_open);
  }
  return Admission::granted();
}

bool CircuitBreaker::admitted_before_opening_locked(Duration elapsed) const {
  // While OPEN nothing is admitted, so a call that started before the breaker opened was
  // admitted while it was CLOSED: no probe.
  return clock_->now() - elapsed < opened_at_;
}

void CircuitBreaker::release_permission(Duration elapsed) {
  std::lock_guard lock(mutex_);
  if (state_ == State::half_open && half_open_issued_ > half_open_calls_ &&
      !admitted_before_opening_locked(elapsed)) {
    --half_open_issued_;
  }
}

void CircuitBreaker::on_success(Duration duration) {
  // Without the lock, a reconfigure() may change slow_call_duration meanwhile: the call is
  // classified by the old value or the new one, as if it ended before or after it.
  if (duration.count() < slow_call_ns_.load(std::memory_order_relaxed) &&
      batch_successes_.load(std::memory_order_acquire)) {
    auto& shard = pending_successes_[thread_shard() % kShards];
    if (shard.pending.fetch_add(1, std::memory_order_relaxed) + 1 < kSuccessBatch) {
      return;
    }
    // Only this thread's: the other threads' shards stay on their cores (successes may
    // go into the window in any order: each one replaces an outcome, none can open it).
    std::lock_guard lock(mutex_);
    fold_shard_locked(shard);
    update_batching_locked();
    return;
  }
  record(false, duration);
}
void CircuitBreaker::on_failure(Duration duration) {
  record(true, duration);
}

void CircuitBreaker::record(bool failure, Duration duration) {
  std::lock_guard lock(mutex_);
  if (state_ == State::open) {
    return;
  }
  const bool slow = duration >= config_.slow_call_duration;
  // Only the time-based window and a transition need the time: read it lazily.
  const bool timed = config_.window_type == WindowType::time_based;
  const auto now = timed ? clock_->now() : Clock::time_point{};
  if (state_ == State::half_open) {
    if (admitted_before_opening_locked(duration)) {
      return;  // says nothing about the probes
    }
    ++half_open_calls_;
    half_open_failures_ += failure ? 1U : 0U;
    half_open_slow_ += slow ? 1U : 0U;
    if (half_open_calls_ >= half_open_permits_) {
      const bool bad =
          rate(half_open_failures_, half_open_calls_) >= config_.failure_rate_threshold ||
          rate(half_open_slow_, half_open_calls_) >= config_.slow_call_rate_threshold;
      transition(bad ? State::open : State::closed, timed ? now : clock_->now());
    }
    return;
  }
  // CLOSED: add to the sliding window, after the successes counted before this call.
  fold_successes_locked();
  append_locked(failure, slow, now);

  auto minimum = config_.minimum_calls;
  if (config_.window_type == WindowType::count_based) {
    minimum = std::min(minimum, config_.window_size);
  }
  if (calls_ >= minimum && (rate(failures_, calls_) >= config_.failure_rate_threshold ||
                            rate(slow_, calls_) >= config_.slow_call_rate_threshold)) {
    transition(State::open, timed ? now : clock_->now());
    return;
  }
  update_batching_locked();
}

void CircuitBreaker::append_locked(bool failure, bool slow, Clock::time_point now) {
  if (config_.window_type == WindowType::count_based) {
    auto& slot = ring_[ring_next_];
    if (ring_filled_ == ring_.size()) {
      --calls_;
      failures_ -= (slot & kFailureBit) ? 1U : 0U;
      slow_ -= (slot & kSlowBit) ? 1U : 0U;
    } else {
      ++ring_filled_;
    }
    slot = static_cast<std::uint8_t>((failure ? kFailureBit : 0) | (slow ? kSlowBit : 0));
    if (++ring_next_ == ring_.size()) {
      ring_next_ = 0;
    }
  } else {
    const auto epoch = epoch_of(now);
    expire_buckets(epoch);
    auto& b =
        buckets_[static_cast<std::size_t>(epoch % static_cast<std::int64_t>(buckets_.size()))];
    if (b.epoch != epoch) {
      b = Bucket{epoch, 0, 0, 0};
    }
    ++b.calls;
    b.failures += failure ? 1U : 0U;
    b.slow += slow ? 1U : 0U;
  }
  ++calls_;
  failures_ += failure ? 1U : 0U;
  slow_ += slow ? 1U : 0U;
}

CircuitBreaker::State CircuitBreaker::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

std::uint64_t CircuitBreaker::transitions() const {
  std::lock_guard lock(mutex_);
  return transitions_;
}

CircuitBreaker::Snapshot CircuitBreaker::snapshot() const {
  std::lock_guard lock(mutex_);
  return snapshot_locked(clock_->now());
}

CircuitBreaker::Snapshot CircuitBreaker::snapshot_locked(Clock::time_point now) const {
  if (state_ == State::half_open) {
    return {state_,
            half_open_calls_,
            half_open_failures_,
            half_open_slow_,
            rate(half_open_failures_, half_open_calls_),
            rate(half_open_slow_, half_open_calls_)};
  }
  auto calls = calls_;
  auto failures = failures_;
  auto slow = slow_;
  if (state_ == State::closed && !ring_.empty()) {
    // Successes still counted in the shards (only ever with a full ring): each replaces
    // the oldest outcome, as folding them would.
    std::size_t pending = 0;
    for (const auto& shard : pending_successes_) {
      pending += shard.pending.load(std::memory_order_acquire);
    }
    pending = std::min(pending, ring_.size());
    for (std::size_t i = 0; i < pending; ++i) {
      const auto oldest = ring_[(ring_next_ + i) % ring_.size()];
      failures -= (oldest & kFailureBit) ? 1U : 0U;
      slow -= (oldest & kSlowBit) ? 1U : 0U;
    }
  }
  if (config_.window_type == WindowType::time_based) {
    // Count only the buckets still inside the window (expiry itself happens on record).
    const auto epoch = epoch_of(now);
    const auto n = static_cast<std::int64_t>(buckets_.size());
    calls = failures = slow = 0;
    for (const auto& b : buckets_) {
      if (b.epoch > epoch - n) {
        calls += b.calls;
        failures += b.failures;
        slow += b.slow;
      }
    }
  }
  auto minimum = config_.minimum_calls;
  if (config_.window_type == WindowType::count_based) {
    minimum = std::min(minimum, config_.window_size);
  }
  const bool enough = calls >= minimum;
  return {state_,
          calls,
          failures,
          slow,
          enough ? rate(failures, calls) : -1.0,
          enough ? rate(slow, calls) : -1.0};
}

}  // namespace coromesh::qos
