#pragma once

// Adaptive concurrency limit: AIMD on measured latency (Netflix concurrency-limits'
// AIMDLimit, with a latency baseline as in Envoy's adaptive concurrency filter).
//
// `acquire()` admits while in-flight < limit (else Reason::concurrency_limited); every
// admitted call ends with exactly one `on_sample(latency, ok)` (or `release()` when it was
// cancelled and says nothing about the server). A sample is *bad* when the call failed,
// took >= `timeout`, or took longer than the target: `latency_target` if set, else
// `tolerance` x the baseline (the lowest latency seen over the last one or two
// `baseline_window`s). A bad sample multiplies the limit by `backoff_ratio`; a good one
// adds 1 when the limit was actually in use (in-flight x 2 >= limit), so an idle service
// does not inflate it. The limit stays in [min_limit, max_limit].
//
// Defaults: initial 20, min 1, max 200, backoff ratio 0.9, timeout 5 s (AIMDLimit's), no
// fixed target, tolerance 2.0, baseline window 60 s.
//
// `reconfigure()` takes new bounds in place (a live override does it): the calls in flight
// keep counting, so a lower limit admits nothing new until they drop below it. The learned
// limit is kept, clamped into [min_limit, max_limit], unless initial_limit changed: then it
// restarts there. The latency baseline is kept.
//
// Thread-safety: may be shared by any number of threads. A call's acquire and sample are
// lock-free (atomics: the in-flight count, the limit, the baseline's minimum), so callers
// on several threads meet on cache lines, not in a mutex; only a baseline window's turn
// and reconfigure() take one. The limit and the generation of the configuration it was
// computed under change together (one 64-bit word): a sample that read the bounds of a
// configuration that reconfigure() has replaced since does not land, and is made again
// under the new ones, so the limit never leaves the bounds in force.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>

#include "coromesh/qos/clock.hpp"
#include "coromesh/qos/reason.hpp"

namespace coromesh::qos {

struct AdaptiveLimitConfig {
  std::uint32_t initial_limit = 20;
  std::uint32_t min_limit = 1;
  std::uint32_t max_limit = 200;
  double backoff_ratio = 0.9;
  Duration timeout = std::chrono::seconds(5);
  Duration latency_target = Duration::zero();  // zero: tolerance x baseline
  double tolerance = 2.0;
  Duration baseline_window = std::chrono::seconds(60);
};

constexpr std::string_view validate(const AdaptiveLimitConfig& c) noexcept {
  if (c.min_limit == 0) {
    return "adaptive limit: min_limit must be at least 1";
  }
  if (c.max_limit < c.min_limit) {
    return "adaptive limit: max_limit is below min_limit";
  }
  if (c.initial_limit < c.min_limit || c.initial_limit > c.max_limit) {
    return "adaptive limit: initial_limit must be in [min_limit, max_limit]";
  }
  if (!(c.backoff_ratio >= 0.5 && c.backoff_ratio < 1.0)) {
    return "adaptive limit: backoff_ratio must be in [0.5, 1)";
  }
  if (c.timeout <= Duration::zero()) {
    return "adaptive limit: timeout must be positive";
  }
  if (c.latency_target < Duration::zero()) {
    return "adaptive limit: latency_target must not be negative";
  }
  if (!(c.tolerance >= 1.0)) {
    return "adaptive limit: tolerance must be at least 1";
  }
  if (c.baseline_window <= Duration::zero()) {
    return "adaptive limit: baseline_window must be positive";
  }
  return {};
}

class AdaptiveLimit {
 public:
  // Throws std::invalid_argument when validate(config) is not empty.
  explicit AdaptiveLimit(AdaptiveLimitConfig config = {}, const Clock& clock = Clock::steady());

  AdaptiveLimit(const AdaptiveLimit&) = delete;
  AdaptiveLimit& operator=(const AdaptiveLimit&) = delete;

  Admission acquire();
  // `now` is when the call ended, on this limit's clock (the chain has read it already).
  void on_sample(Duration latency, bool ok, Clock::time_point now);
  void on_sample(Duration latency, bool ok) { on_sample(latency, ok, clock_->now()); }
  void release();

  // Throws std::invalid_argument when validate(config) is not empty (nothing changes then).
  void reconfigure(AdaptiveLimitConfig config);

  std::uint32_t limit() const;
  std::uint32_t in_flight() const;
  // The latency baseline (zero before the first good sample).
  Duration baseline() const;
  AdaptiveLimitConfig config() const;  // a copy: reconfigure() may change it meanwhile

 private:
  // What a sample reads of the configuration, each field on its own: reconfigure() writes
  // them before it moves the generation (see the top of this file).
  struct Tuning {
    std::atomic<double> min_limit;
    std::atomic<double> max_limit;
    std::atomic<double> backoff_ratio;
    std::atomic<Duration::rep> timeout;
    std::atomic<Duration::rep> latency_target;
    std::atomic<double> tolerance;
    std::atomic<Duration::rep> baseline_window;
  };
  // The limit (a float: exact for whole numbers far past any max_limit that makes sense)
  // and the configuration's generation, in one word.
  struct LimitWord {
    float limit;
    std::uint32_t generation;
  };

  void store_tuning(const AdaptiveLimitConfig& config) noexcept;
  // Starts a new baseline window if `now` is past the current one's end.
  void turn_window(Clock::time_point now);
  Duration baseline_now() const noexcept;

  mutable std::mutex config_mutex_;  // reconfigure() and config(); also a window's turn
  AdaptiveLimitConfig config_;       // guarded by config_mutex_
  Tuning tuning_;
  const Clock* clock_;
  std::atomic<LimitWord> limit_;
  std::atomic<Clock::time_point::rep> window_start_;
  std::atomic<Duration::rep> current_min_{Duration::max().count()};
  std::atomic<Duration::rep> previous_min_{Duration::max().count()};
  // Written by every call: last, on a cache line of its own (the class is aligned to it),
  // so that the words a call only reads (the limit, the tuning, the window) stay in the
  // other threads' caches.
  alignas(64) std::atomic<std::uint32_t> in_flight_{0};
};

}  // namespace coromesh::qos
