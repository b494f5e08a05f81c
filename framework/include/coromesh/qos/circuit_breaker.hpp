#pragma once

// Circuit breaker in the resilience4j model.
//
//   CLOSED --(failure rate or slow-call rate >= threshold over >= minimum_calls)--> OPEN
//   OPEN --(wait_in_open elapsed, checked on the next acquire())--> HALF_OPEN
//   HALF_OPEN --(all permitted probe calls recorded, rates below thresholds)--> CLOSED
//   HALF_OPEN --(all permitted probe calls recorded, a rate at/over threshold)--> OPEN
//
// Use: `acquire()` before the call (rejected with Reason::circuit_open while OPEN or when
// HALF_OPEN has handed out all its probes), then exactly one of `on_success(duration)` /
// `on_failure(duration)` after it. A call slower than slow_call_duration counts as slow
// whatever its outcome. Results recorded while OPEN are ignored, and so are, while
// HALF_OPEN, those of calls admitted before the breaker opened (`duration` says when the
// call started): only the probes decide HALF_OPEN.
//
// Defaults (resilience4j CircuitBreakerConfig): count-based window of 100 calls,
// failure-rate threshold 50 %, slow-call-rate threshold 100 %, slow-call duration 60 s,
// minimum 100 calls, 60 s in OPEN, 10 permitted calls in HALF_OPEN. A time-based window
// covers `window_duration` (default 60 s) split into `window_buckets` (default 10) buckets.
//
// `reconfigure()` takes a new configuration in place (a live override does it; resilience4j
// replaces the breaker instead, and a replaced breaker starts CLOSED). The state survives:
// an OPEN breaker stays open, and the wait already started keeps its start, so a new
// wait_in_open counts from when it opened (one already longer than the new wait lets the
// next acquire() in as a probe). New thresholds, minimum_calls and slow_call_duration
// apply from the next outcome recorded (reconfigure() itself opens or closes nothing). A
// half-open trial under way keeps its number of probes; a new permitted_calls_in_half_open
// applies to the next trial. A new count-based window size keeps the newest outcomes that
// fit; a change of window type, or of a time-based window's duration or buckets, forgets
// the outcomes recorded (they cannot be re-bucketed), never the state.
//
// Thread-safety: one CircuitBreaker may be shared by any number of threads (a mutex guards
// the state, the configuration included). The hot path takes no lock: acquire() while
// CLOSED reads one atomic, and a fast success (shorter than slow_call_duration, read from
// an atomic copy: a call ending as reconfigure() runs is judged by the old or the new
// value) while CLOSED with a full count-based window whose rates are under both
// thresholds is only counted in the calling thread's shard; the shards are folded into
// the window (as successes) under the lock before the next failure or slow call is
// recorded, before snapshot(), before a reconfigure() resizes the window, and every
// kSuccessBatch successes of a shard. Such a success can never open the breaker (it
// replaces the window's oldest outcome: no rate goes up), so deferring it changes no
// transition; the only difference is the order of outcomes within a batch.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <vector>

#include "coromesh/qos/clock.hpp"
#include "coromesh/qos/reason.hpp"

namespace coromesh::qos {

enum class WindowType : std::uint8_t { count_based, time_based };

struct CircuitBreakerConfig {
  WindowType window_type = WindowType::count_based;
  std::uint32_t window_size = 100;                      // calls (count-based)
  Duration window_duration = std::chrono::seconds(60);  // time-based
  std::uint32_t window_buckets = 10;                    // time-based
  double failure_rate_threshold = 0.5;                  // fraction in (0, 1]
  double slow_call_rate_threshold = 1.0;                // fraction in (0, 1]
  Duration slow_call_duration = std::chrono::seconds(60);
  std::uint32_t minimum_calls = 100;
  Duration wait_in_open = std::chrono::seconds(60);
  std::uint32_t permitted_calls_in_half_open = 10;
};

// Empty when the configuration can work, else what is wrong with it. Usable in
// static_assert(validate(CircuitBreakerConfig{...}).empty()).
constexpr std::string_view validate(const CircuitBreakerConfig& c) noexcept {
  if (c.window_type == WindowType::count_based && c.window_size == 0) {
    return "circuit breaker: window_size must be at least 1 call";
  }
  if (c.window_type == WindowType::time_based && c.window_duration <= Duration::zero()) {
    return "circuit breaker: window_duration must be positive";
  }
  if (c.window_type == WindowType::time_based &&
      (c.window_buckets == 0 || c.window_duration.count() < c.window_buckets)) {
    return "circuit breaker: window_buckets must be in [1, window_duration in ns]";
  }
  if (!(c.failure_rate_threshold > 0.0 && c.failure_rate_threshold <= 1.0)) {
    return "circuit breaker: failure_rate_threshold must be in (0, 1]";
  }
  if (!(c.slow_call_rate_threshold > 0.0 && c.slow_call_rate_threshold <= 1.0)) {
    return "circuit breaker: slow_call_rate_threshold must be in (0, 1]";
  }
  if (c.slow_call_duration <= Duration::zero()) {
    return "circuit breaker: slow_call_duration must be positive";
  }
  if (c.minimum_calls == 0) {
    return "circuit breaker: minimum_calls must be at least 1";
  }
  if (c.wait_in_open <= Duration::zero()) {
    return "circuit breaker: wait_in_open must be positive";
  }
  if (c.permitted_calls_in_half_open == 0) {
    return "circuit breaker: permitted_calls_in_half_open must be at least 1";
  }
  return {};
}

class CircuitBreaker {
 public:
  enum class State : std::uint8_t { closed, open, half_open };

  struct Snapshot {
    State state;
    std::uint32_t calls;  // in the current window (or half-open probes recorded)
    std::uint32_t failures;
    std::uint32_t slow_calls;
    double failure_rate;  // -1 while fewer than minimum_calls were recorded
    double slow_call_rate;
  };

  // Throws std::invalid_argument when validate(config) is not empty.
  explicit CircuitBreaker(CircuitBreakerConfig config = {}, const Clock& clock = Clock::steady());

  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Successes a thread counts on its own before folding them into the window.
  static constexpr std::uint32_t kSuccessBatch = 32;

  Admission acquire();
  void on_success(Duration duration);
  void on_failure(Duration duration);
  // Gives back a half-open probe permit without recording an outcome (call cancelled).
  // `elapsed`: how long ago the call was admitted; a call admitted before the breaker
  // opened held no probe permit and gives none back.
  void release_permission(Duration elapsed = Duration::zero());

  State state() const;
  Snapshot snapshot() const;
  // Number of state transitions since construction (for metrics and tests).
  std::uint64_t transitions() const;

  // Takes `config` in place, keeping the state (above). Any thread, concurrently with calls
  // on others. Throws std::invalid_argument when validate(config) is not empty (nothing
  // changes then).
  void reconfigure(CircuitBreakerConfig config);
  CircuitBreakerConfig config() const;  // a copy: reconfigure() may change it meanwhile

 private:
  struct Bucket {
    std::int64_t epoch = -1;
    std::uint32_t calls = 0;
    std::uint32_t failures = 0;
    std::uint32_t slow = 0;
  };

  void record(bool failure, Duration duration);
  // Whether a call admitted `elapsed` ago came in before the breaker last opened.
  bool admitted_before_opening_locked(Duration elapsed) const;
  void append_locked(bool failure, bool slow, Clock::time_point now);
  // Folds every shard's pending successes into the window (CLOSED), or drops them.
  void fold_successes_locked();
  // Whether a fast success may skip the lock (see the class comment); under the lock.
  void update_batching_locked();
  void transition(State to, Clock::time_point now);
  void reset_window();
  // Successes counted in the shards for a window that is gone: forgotten.
  void drop_pending_successes_locked();
  // A count-based window of `size` calls holding the newest outcomes that fit.
  void resize_ring_locked(std::uint32_t size);
  void expire_buckets(std::int64_t epoch);
  Snapshot snapshot_locked(Clock::time_point now) const;
  std::int64_t epoch_of(Clock::time_point now) const;
  struct SuccessShard;
  void fold_shard_locked(SuccessShard& shard);
  // `n` successes of a count-based window, at most its size.
  void append_successes_locked(std::uint32_t n);

  CircuitBreakerConfig config_;  // guarded by mutex_ (reconfigure() changes it)
  const Clock* clock_;
  mutable std::mutex mutex_;
  State state_ = State::closed;
  // state_ as last published under the lock: lets acquire() admit without the lock while
  // closed, the state of almost every call. A call admitted as the breaker opens
  // concurrently is recorded and ignored, as if it had come just before.
  // Read on every call, written rarely: a cache line of their own, away from the lock.
  alignas(64) std::atomic<State> published_state_{State::closed};
  std::atomic<bool> batch_successes_{false};  // see update_batching_locked()
  // config_.slow_call_duration, for on_success() to classify a call without the lock.
  std::atomic<Duration::rep> slow_call_ns_{0};
  // Fast successes counted per thread, not yet in the window.
  struct alignas(64) SuccessShard {
    std::atomic<std::uint32_t> pending{0};
  };
  static constexpr std::size_t kShards = 8;
  std::array<SuccessShard, kShards> pending_successes_{};
  alignas(64) Clock::time_point opened_at_{};
  std::uint64_t transitions_ = 0;
  // Count-based: ring of outcomes (bit 0 failure, bit 1 slow).
  std::vector<std::uint8_t> ring_;
  std::size_t ring_next_ = 0;
  std::size_t ring_filled_ = 0;
  // Time-based: ring of buckets.
  std::vector<Bucket> buckets_;
  Clock::time_point origin_{};
  // Totals over the live window (both window types).
  std::uint32_t calls_ = 0;
  std::uint32_t failures_ = 0;
  std::uint32_t slow_ = 0;
  // Half-open probes. The trial's number of probes is fixed when it starts.
  std::uint32_t half_open_permits_ = 0;
  std::uint32_t half_open_issued_ = 0;
  std::uint32_t half_open_calls_ = 0;
  std::uint32_t half_open_failures_ = 0;
  std::uint32_t half_open_slow_ = 0;
};

constexpr std::string_view to_string(CircuitBreaker::State state) noexcept {
  switch (state) {
    case CircuitBreaker::State::closed:
      return "closed";
    case CircuitBreaker::State::open:
      return "open";
    case CircuitBreaker::State::half_open:
      return "half_open";
  }
  return "unknown";
}

}  // namespace coromesh::qos
