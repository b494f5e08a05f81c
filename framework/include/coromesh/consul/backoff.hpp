#pragma once

// Exponential backoff with jitter for loops that retry the agent (watches, the
// registrar): initial, doubling up to max, each delay drawn from [d/2, d] so that many
// watchers that failed together (an agent restart) do not come back in lockstep.
//
// Not thread-safe; each loop owns its own.

#include <chrono>
#include <random>

namespace coromesh::consul {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max);

  // The delay before the next attempt; each call doubles the next one, up to max.
  std::chrono::milliseconds next();
  // After a success: the next failure starts over at `initial`.
  void reset() noexcept;
  // Failures since the last reset (the number of next() calls).
  unsigned failures() const noexcept { return failures_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds current_;
  unsigned failures_ = 0;
  std::minstd_rand random_;
};

}  // namespace coromesh::consul
