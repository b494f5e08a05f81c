#pragma once

// Rate limit of log lines per key: at most `lines_per_window` lines per key in each
// window; the rest are suppressed and counted, and the next line admitted for that key
// learns how many were (to print `suppressed=<n>`). Keeps a flood of one event (every
// rejected call while shedding load) from drowning the others or the sink.
//
// At most `max_keys` keys are tracked; a new key beyond that, while every tracked key's
// window is still open, is suppressed too: keys come from code (an operation and a
// reason), so that takes a bug, and memory stays bounded.
//
// Threads: admit() may be called from any thread; it holds a mutex for a hash lookup.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace coromesh::log {

class KeyRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Decision {
    bool admit = false;
    std::uint64_t suppressed_before = 0;  // lines of this key suppressed since the last admitted
  };

  KeyRateLimiter(std::uint32_t lines_per_window, Clock::duration window,
                 std::size_t max_keys = 4096);

  Decision admit(std::string_view key, Clock::time_point now);

  // Lines suppressed since construction, over all keys.
  std::uint64_t suppressed_total() const noexcept;

 private:
  struct Budget {
    Clock::time_point window_start;
    std::uint32_t admitted = 0;
    std::uint64_t suppressed = 0;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const noexcept {
      return std::hash<std::string_view>{}(key);
    }
  };

  void forget_quiet_keys(Clock::time_point now);

  const std::uint32_t lines_per_window_;
  const Clock::duration window_;
  const std::size_t max_keys_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Budget, Hash, std::equal_to<>> budgets_;
  std::atomic<std::uint64_t> suppressed_total_{0};
};

}  // namespace coromesh::log
