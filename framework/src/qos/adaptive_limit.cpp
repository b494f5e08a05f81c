#include "coromesh/qos/adaptive_limit.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace coromesh::qos {

namespace {

static_assert(std::atomic<double>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
              sizeof(float) + sizeof(std::uint32_t) == sizeof(std::uint64_t));

constexpr auto kRelaxed = std::memory_order_relaxed;

// Lowers `target` to `value` if it is lower (std::atomic has no fetch_min before C++26).
void lower_to(std::atomic<Duration::rep>& target, Duration::rep value) noexcept {
  auto seen = target.load(kRelaxed);
  while (value < seen && !target.compare_exchange_weak(seen, value, kRelaxed)) {
  }
}

}  // namespace

AdaptiveLimit::AdaptiveLimit(AdaptiveLimitConfig config, const Clock& clock)
    : config_(config),
      clock_(&clock),
      limit_(LimitWord{static_cast<float>(config.initial_limit), 0}),
      window_start_(clock.now().time_since_epoch().count()) {
  if (auto error = validate(config_); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  store_tuning(config_);
}

void AdaptiveLimit::store_tuning(const AdaptiveLimitConfig& config) noexcept {
  tuning_.min_limit.store(static_cast<double>(config.min_limit), kRelaxed);
  tuning_.max_limit.store(static_cast<double>(config.max_limit), kRelaxed);
  tuning_.backoff_ratio.store(config.backoff_ratio, kRelaxed);
  tuning_.timeout.store(config.timeout.count(), kRelaxed);
  tuning_.latency_target.store(config.latency_target.count(), kRelaxed);
  tuning_.tolerance.store(config.tolerance, kRelaxed);
  tuning_.baseline_window.store(config.baseline_window.count(), kRelaxed);
}

Admission AdaptiveLimit::acquire() {
  const auto limit = std::floor(static_cast<double>(limit_.load(std::memory_order_acquire).limit));
  auto in_flight = in_flight_.load(kRelaxed);
  do {
    if (static_cast<double>(in_flight) + 1.0 > limit) {
      return Admission::rejected(Reason::concurrency_limited);
    }
  } while (!in_flight_.compare_exchange_weak(in_flight, in_flight + 1, kRelaxed));
  return Admission::granted();
}

void AdaptiveLimit::release() {
  auto in_flight = in_flight_.load(kRelaxed);
  while (in_flight > 0 && !in_flight_.compare_exchange_weak(in_flight, in_flight - 1, kRelaxed)) {
  }
}

Duration AdaptiveLimit::baseline_now() const noexcept {
  const auto b = std::min(current_min_.load(kRelaxed), previous_min_.load(kRelaxed));
  return b == Duration::max().count() ? Duration::zero() : Duration(b);
}

void AdaptiveLimit::turn_window(Clock::time_point now) {
  const auto window = tuning_.baseline_window.load(kRelaxed);
  const auto at = now.time_since_epoch().count();
  if (at - window_start_.load(kRelaxed) < window) {
    return;
  }
  // Rare (once a window): the turn moves three values together, so it takes the mutex and
  // looks again; samples meanwhile keep lowering whichever minimum is current.
  std::lock_guard lock(config_mutex_);
  const auto started = window_start_.load(kRelaxed);
  if (at - started < window) {
    return;
  }
  // Two windows back is forgotten: the baseline follows a service that got slower.
  previous_min_.store(
      at - started >= 2 * window ? Duration::max().count() : current_min_.load(kRelaxed), kRelaxed);
  current_min_.store(Duration::max().count(), kRelaxed);
  window_start_.store(at, kRelaxed);
}

void AdaptiveLimit::on_sample(Duration latency, bool ok, Clock::time_point now) {
  // The in-flight count this call saw, itself included: whether the limit was in use.
  auto in_flight = in_flight_.load(kRelaxed);
  while (in_flight > 0 && !in_flight_.compare_exchange_weak(in_flight, in_flight - 1, kRelaxed)) {
  }
  turn_window(now);
  auto word = limit_.load(std::memory_order_acquire);
  for (;;) {
    // Read after the word: a generation seen here was published after its tuning.
    const Duration timeout(tuning_.timeout.load(kRelaxed));
    const Duration target(tuning_.latency_target.load(kRelaxed));
    bool bad = !ok || latency >= timeout;
    if (!bad) {
      if (target > Duration::zero()) {
        bad = latency > target;
      } else if (const auto base = baseline_now(); base > Duration::zero()) {
        bad = static_cast<double>(latency.count()) >
              tuning_.tolerance.load(kRelaxed) * static_cast<double>(base.count());
      }
    }
    const auto limit = static_cast<double>(word.limit);
    double next = limit;
    if (bad) {
      next =
          std::max(tuning_.min_limit.load(kRelaxed), limit * tuning_.backoff_ratio.load(kRelaxed));
    } else if (static_cast<double>(in_flight) * 2.0 >= limit) {
      next = std::min(tuning_.max_limit.load(kRelaxed), limit + 1.0);
    }
    if (next == limit ||
        limit_.compare_exchange_weak(word, LimitWord{static_cast<float>(next), word.generation},
                                     std::memory_order_acq_rel, std::memory_order_acquire)) {
      // The baseline learns the sample after judging it, as it always has.
      if (ok && latency < timeout) {
        lower_to(current_min_, std::max(latency, Duration(1)).count());
      }
      return;
    }
  }
}

void AdaptiveLimit::reconfigure(AdaptiveLimitConfig config) {
  if (auto error = validate(config); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  std::lock_guard lock(config_mutex_);
  const bool restart = config.initial_limit != config_.initial_limit;
  config_ = config;
  store_tuning(config_);
  // After the tuning: a sample that sees the new generation reads the new bounds, and one
  // computed under the old ones fails its exchange and is made again.
  auto word = limit_.load(std::memory_order_acquire);
  LimitWord next{};
  do {
    next.limit = restart ? static_cast<float>(config.initial_limit)
                         : std::clamp(word.limit, static_cast<float>(config.min_limit),
                                      static_cast<float>(config.max_limit));
    next.generation = word.generation + 1;
  } while (!limit_.compare_exchange_weak(word, next, std::memory_order_acq_rel,
                                         std::memory_order_acquire));
}

AdaptiveLimitConfig AdaptiveLimit::config() const {
  std::lock_guard lock(config_mutex_);
  return config_;
}

std::uint32_t AdaptiveLimit::limit() const {
  return static_cast<std::uint32_t>(std::floor(limit_.load(std::memory_order_acquire).limit));
}

std::uint32_t AdaptiveLimit::in_flight() const {
  return in_flight_.load(kRelaxed);
}

Duration AdaptiveLimit::baseline() const {
  return baseline_now();
}

}  // namespace coromesh::qos
