#pragma once

// The time source every QoS policy reads. Policies never call steady_clock directly:
// they take a `const Clock&` (default: Clock::steady()) so a test can drive them with a
// ManualClock and no sleeps.
//
// Thread-safety: SteadyClock and ManualClock may be read from any thread; ManualClock's
// advance()/set() may race with readers (the value is one atomic).

#include <atomic>
#include <chrono>

namespace coromesh::qos {

using Duration = std::chrono::nanoseconds;

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  virtual time_point now() const noexcept = 0;

  // The process-wide monotonic clock (std::chrono::steady_clock).
  static const Clock& steady() noexcept;
};

class SteadyClock final : public Clock {
 public:
  time_point now() const noexcept override { return std::chrono::steady_clock::now(); }
};

// A clock that only moves when told to. Starts at an arbitrary fixed point well away from
// the epoch so that `now() - window` never underflows.
class ManualClock final : public Clock {
 public:
  ManualClock() noexcept = default;

  time_point now() const noexcept override { return time_point(Duration(ns_.load())); }

  void advance(Duration d) noexcept { ns_.fetch_add(d.count()); }
  void set(time_point t) noexcept { ns_.store(t.time_since_epoch().count()); }

 private:
  std::atomic<Duration::rep> ns_{Duration(std::chrono::hours(24 * 365)).count()};
};

}  // namespace coromesh::qos
