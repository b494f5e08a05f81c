#include "coromesh/log/key_rate_limiter.hpp"

namespace coromesh::log {

KeyRateLimiter::KeyRateLimiter(std::uint32_t lines_per_window, Clock::duration window,
                               std::size_t max_keys)
    : lines_per_window_(lines_per_window), window_(window), max_keys_(max_keys) {}

KeyRateLimiter::Decision KeyRateLimiter::admit(std::string_view key, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = budgets_.find(key);
  if (it == budgets_.end()) {
    if (budgets_.size() >= max_keys_) {
      forget_quiet_keys(now);
    }
    if (budgets_.size() >= max_keys_) {
      suppressed_total_.fetch_add(1, std::memory_order_relaxed);
      return {};
    }
    it = budgets_.emplace(std::string(key), Budget{now, 0, 0}).first;
  }
  auto& budget = it->second;
  if (now - budget.window_start >= window_) {
    budget.window_start = now;
    budget.admitted = 0;
  }
  if (budget.admitted < lines_per_window_) {
    ++budget.admitted;
    return {true, std::exchange(budget.suppressed, 0)};
  }
  ++budget.suppressed;
  suppressed_total_.fetch_add(1, std::memory_order_relaxed);
  return {};
}

std::uint64_t KeyRateLimiter::suppressed_total() const noexcept {
  return suppressed_total_.load(std::memory_order_relaxed);
}

void KeyRateLimiter::forget_quiet_keys(Clock::time_point now) {
  // A key whose window has closed can start afresh later; only its pending suppressed
  // count (already in suppressed_total_) is lost from the log line.
  std::erase_if(budgets_,
                [&](const auto& entry) { return now - entry.second.window_start >= window_; });
}

}  // namespace coromesh::log
