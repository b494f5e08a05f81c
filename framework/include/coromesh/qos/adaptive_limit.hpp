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
// Thread-safety: may be shared by any number of threads (a mutex guards the state).

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
  void on_sample(Duration latency, bool ok);
  void release();

  // Throws std::invalid_argument when validate(config) is not empty (nothing changes then).
  void reconfigure(AdaptiveLimitConfig config);

  std::uint32_t limit() const;
  std::uint32_t in_flight() const;
  // The latency baseline (zero before the first good sample).
  Duration baseline() const;
  AdaptiveLimitConfig config() const;  // a copy: reconfigure() may change it meanwhile

 private:
  Duration baseline_locked() const;

  AdaptiveLimitConfig config_;
  const Clock* clock_;
  mutable std::mutex mutex_;
  double limit_;
  std::uint32_t in_flight_ = 0;
  Clock::time_point window_start_;
  Duration current_min_ = Duration::max();
  Duration previous_min_ = Duration::max();
};

}  // namespace coromesh::qos
