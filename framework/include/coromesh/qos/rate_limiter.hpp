#pragma once

// Rate limiters. Both are non-blocking: `try_acquire()` answers at once.
//
// TokenBucket — `permits` tokens are added every `period`, continuously (a token every
// period/permits), up to `burst` tokens; the bucket starts full. A call takes one token or
// is rejected with Reason::rate_limited. Lets a burst of `burst` calls through, then
// holds the long-run rate. Defaults: 50 permits per 1 s, burst 50 (resilience4j's
// limitForPeriod of 50; Envoy's local rate limit's max_tokens == tokens_per_fill).
//
// LeakyBucket — the seed series' queue drained at a fixed rate, as a meter: every admitted
// call pours one unit into a bucket of `capacity` units that leaks `rate` units per
// `period`; a call is admitted while level + 1 <= capacity. `try_schedule()` is the
// shaping variant: it gives the admitted call a turn — when it may start so the output
// leaves at exactly the fixed rate, one turn every period / rate — and refuses, taking
// nothing, a call whose turn would come too late for its deadline. A call that took a turn
// and will not run (cancelled while it waited) gives it back (`give_back`): the next call
// takes that turn instead of one at the end of the schedule, so no turn is lost and no
// later call is pushed out. Defaults: 50 per 1 s, capacity 50.
//
// `reconfigure()` takes a new configuration in place (a live override does it; as
// resilience4j's RateLimiter.changeLimitForPeriod): what was spent stays spent. A
// TokenBucket keeps the tokens available now, at most the new burst, and refills at the
// new rate from now on. A LeakyBucket keeps its level, even above a smaller capacity (the
// calls already admitted stay admitted; no new one is until the level leaks below it), and
// leaks at the new rate from now on; turns already given out keep their start times.
//
// Thread-safety: both may be shared by any number of threads (a mutex guards the level).
// A TokenBucket with a burst of 128 or more lets each thread take single tokens from a
// lease of up to 64 (burst / 64) taken from the bucket at once, so io threads sharing it
// do not all take its lock per call. Leased tokens still count against the burst, so
// the bucket never admits more than the burst at once nor more than the rate in the long
// run; a lease a thread leaves unused (it stops calling) holds its tokens aside, at most
// burst / 8 over all threads (reconfigure() takes the unused leases back).

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string_view>

#include "coromesh/qos/clock.hpp"
#include "coromesh/qos/reason.hpp"

namespace coromesh::qos {

struct TokenBucketConfig {
  std::uint64_t permits = 50;
  Duration period = std::chrono::seconds(1);
  std::uint64_t burst = 50;
};

struct LeakyBucketConfig {
  std::uint64_t rate = 50;  // units leaked per period
  Duration period = std::chrono::seconds(1);
  std::uint64_t capacity = 50;
};

constexpr std::string_view validate(const TokenBucketConfig& c) noexcept {
  if (c.permits == 0) {
    return "token bucket: a rate of 0 permits admits nothing";
  }
  if (c.period <= Duration::zero()) {
    return "token bucket: period must be positive";
  }
  if (c.burst == 0) {
    return "token bucket: burst must be at least 1";
  }
  return {};
}

constexpr std::string_view validate(const LeakyBucketConfig& c) noexcept {
  if (c.rate == 0) {
    return "leaky bucket: a rate of 0 never drains";
  }
  if (c.period <= Duration::zero()) {
    return "leaky bucket: period must be positive";
  }
  if (c.capacity == 0) {
    return "leaky bucket: capacity must be at least 1";
  }
  return {};
}

class TokenBucket {
 public:
  // Throws std::invalid_argument when validate(config) is not empty.
  explicit TokenBucket(TokenBucketConfig config = {}, const Clock& clock = Clock::steady());

  TokenBucket(const TokenBucket&) = delete;
  TokenBucket& operator=(const TokenBucket&) = delete;

  Admission try_acquire(std::uint64_t tokens = 1);
  // The same at a time the caller already read from this bucket's clock (saves a read).
  Admission try_acquire_at(Clock::time_point now, std::uint64_t tokens = 1);
  // Tokens available now (refilled up to the clock's current time).
  double available();
  // How long until `tokens` would be available (zero if they are now); for Retry-After.
  Duration time_until(std::uint64_t tokens = 1);

  // Takes `config` in place (above). Any thread, concurrently with calls on others. Throws
  // std::invalid_argument when validate(config) is not empty (nothing changes then).
  void reconfigure(TokenBucketConfig config);
  TokenBucketConfig config() const;  // a copy: reconfigure() may change it meanwhile

 private:
  void refill(Clock::time_point now);
  Admission acquire_leased(Clock::time_point now);
  static std::uint64_t lease_size_for(std::uint64_t burst);
  double leased_left() const;  // tokens still in the shards' leases

  static constexpr std::size_t kShards = 8;
  struct alignas(64) Lease {
    std::atomic<std::uint64_t> left{0};  // tokens this shard may still take unlocked
  };

  // Guarded by mutex_, like everything below but lease_size_ and leases_.
  TokenBucketConfig config_;
  const Clock* clock_;
  double per_ns_;  // tokens per nanosecond
  mutable std::mutex mutex_;
  double tokens_;
  Clock::time_point last_;
  // 1: no leasing (small bursts). Read without the lock to choose a path; a stale value is
  // harmless (the locked path reads it again).
  std::atomic<std::uint64_t> lease_size_;
  // Under mutex_: the tokens of each shard's current lease and their sum, counted as
  // still in the bucket (refill stops at burst minus leased_total_) until the shard
  // comes back with its lease spent.
  std::array<std::uint64_t, kShards> leased_{};
  std::uint64_t leased_total_ = 0;
  std::array<Lease, kShards> leases_{};
};

class LeakyBucket {
 public:
  // Throws std::invalid_argument when validate(config) is not empty.
  explicit LeakyBucket(LeakyBucketConfig config = {}, const Clock& clock = Clock::steady());

  LeakyBucket(const LeakyBucket&) = delete;
  LeakyBucket& operator=(const LeakyBucket&) = delete;

  // Meter: admit if level + 1 <= capacity.
  Admission try_acquire();
  Admission try_acquire_at(Clock::time_point now);
  // A shaped call's turn: when it starts and how long from now that is.
  struct Turn {
    Admission admission = Admission::granted();
    Clock::time_point start{};  // when granted
    Duration wait{};            // start - now, when granted
  };
  // Shaper: the earliest free turn. Refused with rate_limited when the bucket is full, and
  // with deadline_exceeded when the turn is not now and `max_wait` or more away (the
  // caller's deadline would pass first); a refused call takes no turn.
  Turn try_schedule(Duration max_wait = Duration::max());
  // Gives back the turn starting at `start` that its call will not use. A turn already
  // over is left as it is (it was spent); the last turn of the schedule shortens it.
  void give_back(Clock::time_point start) noexcept;
  // The units in the bucket, turns given back and not taken again excluded.
  double level();

  // Takes `config` in place (above). Any thread, concurrently with calls on others. Throws
  // std::invalid_argument when validate(config) is not empty (nothing changes then).
  void reconfigure(LeakyBucketConfig config);
  LeakyBucketConfig config() const;  // a copy: reconfigure() may change it meanwhile

 private:
  void leak(Clock::time_point now);
  Turn schedule_at(Clock::time_point now, Duration max_wait);
  // The part of the unit of the turn starting at `start` not yet leaked at `now` (0..1).
  double unleaked(Clock::time_point start, Clock::time_point now) const noexcept;
  bool is_last_turn(Clock::time_point start, Clock::time_point now) const noexcept;
  void forget_spent_turns(Clock::time_point now) noexcept;

  // Guarded by mutex_, like everything below.
  LeakyBucketConfig config_;
  const Clock* clock_;
  double per_ns_;      // units leaked per nanosecond
  Duration interval_;  // between two turns: period / rate
  mutable std::mutex mutex_;
  double level_ = 0.0;  // turns given back included
  Clock::time_point last_;
  // Under mutex_: the start of each turn given back and not taken again, earliest first,
  // none of them the last turn of the schedule; each still counts in level_. At most
  // `capacity` (each is a unit in the bucket; the capacity before a reconfigure() too).
  std::deque<Clock::time_point> given_back_;
};

}  // namespace coromesh::qos
