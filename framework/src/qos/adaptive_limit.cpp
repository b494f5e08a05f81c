#include "coromesh/qos/adaptive_limit.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace coromesh::qos {

AdaptiveLimit::AdaptiveLimit(AdaptiveLimitConfig config, const Clock& clock)
    : config_(config),
      clock_(&clock),
      limit_(static_cast<double>(config.initial_limit)),
      window_start_(clock.now()) {
  if (auto error = validate(config_); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
}

Admission AdaptiveLimit::acquire() {
  std::lock_guard lock(mutex_);
  if (static_cast<double>(in_flight_) + 1.0 > std::floor(limit_)) {
    return Admission::rejected(Reason::concurrency_limited);
  }
  ++in_flight_;
  return Admission::granted();
}

void AdaptiveLimit::release() {
  std::lock_guard lock(mutex_);
  if (in_flight_ > 0) {
    --in_flight_;
  }
}

Duration AdaptiveLimit::baseline_locked() const {
  const auto b = std::min(current_min_, previous_min_);
  return b == Duration::max() ? Duration::zero() : b;
}

void AdaptiveLimit::on_sample(Duration latency, bool ok) {
  std::lock_guard lock(mutex_);
  const auto in_flight = in_flight_;
  if (in_flight_ > 0) {
    --in_flight_;
  }
  const auto now = clock_->now();
  if (now - window_start_ >= config_.baseline_window) {
    // Two windows back is forgotten: the baseline follows a service that got slower.
    previous_min_ =
        now - window_start_ >= 2 * config_.baseline_window ? Duration::max() : current_min_;
    current_min_ = Duration::max();
    window_start_ = now;
  }
  bool bad = !ok || latency >= config_.timeout;
  if (!bad) {
    if (config_.latency_target > Duration::zero()) {
      bad = latency > config_.latency_target;
    } else if (const auto base = baseline_locked(); base > Duration::zero()) {
      bad = static_cast<double>(latency.count()) >
            config_.tolerance * static_cast<double>(base.count());
    }
  }
  if (ok && latency < current_min_ && latency < config_.timeout) {
    current_min_ = std::max(latency, Duration(1));
  }
  const auto lo = static_cast<double>(config_.min_limit);
  const auto hi = static_cast<double>(config_.max_limit);
  if (bad) {
    limit_ = std::max(lo, limit_ * config_.backoff_ratio);
  } else if (static_cast<double>(in_flight) * 2.0 >= limit_) {
    limit_ = std::min(hi, limit_ + 1.0);
  }
}

void AdaptiveLimit::reconfigure(AdaptiveLimitConfig config) {
  if (auto error = validate(config); !error.empty()) {
    throw std::invalid_argument(std::string(error));
  }
  std::lock_guard lock(mutex_);
  const bool restart = config.initial_limit != config_.initial_limit;
  config_ = config;
  limit_ = restart ? static_cast<double>(config.initial_limit)
                   : std::clamp(limit_, static_cast<double>(config.min_limit),
                                static_cast<double>(config.max_limit));
}

AdaptiveLimitConfig AdaptiveLimit::config() const {
  std::lock_guard lock(mutex_);
  return config_;
}

std::uint32_t AdaptiveLimit::limit() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::uint32_t>(std::floor(limit_));
}

std::uint32_t AdaptiveLimit::in_flight() const {
  std::lock_guard lock(mutex_);
  return in_flight_;
}

Duration AdaptiveLimit::baseline() const {
  std::lock_guard lock(mutex_);
  return baseline_locked();
}

}  // namespace coromesh::qos
