#pragma once

// An absolute deadline on a Clock, and its wire form between hops.
//
// On the wire the deadline travels as the *remaining* budget in whole milliseconds
// (`x-coromesh-deadline-ms: 250`), never as a wall-clock instant, so the two hosts' clocks
// need not agree: the callee re-anchors the budget on its own clock when the request
// arrives (the time on the wire is charged to nobody — keep budgets generous enough for
// it). The caller encodes what is left when it sends, so time spent in a hop shortens
// the next hop's budget.
//
//   auto d = Deadline::after(100ms, clock);
//   request.set(kDeadlineHeader, d.header_value(clock));            // caller
//   auto parsed = parse_deadline_header(value, clock);               // callee
//   if (!parsed) -> 400 with parsed.error;
//   if (!parsed.deadline.can_finish(expected_min_duration, clock)) -> deadline_exceeded
//
// A value type: copy freely; every member is const and thread-safe.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "coromesh/qos/clock.hpp"

namespace coromesh::qos {

inline constexpr std::string_view kDeadlineHeader = "x-coromesh-deadline-ms";
// A budget above this is refused on parse (a day: anything larger is a bug or an attack).
inline constexpr std::chrono::milliseconds kMaxHeaderBudget = std::chrono::hours(24);

class Deadline {
 public:
  using time_point = Clock::time_point;

  // No deadline at all.
  constexpr Deadline() noexcept = default;
  static constexpr Deadline none() noexcept { return Deadline(); }
  static constexpr Deadline at(time_point when) noexcept { return Deadline(when); }
  // `budget` from now (saturating at time_point::max()); a budget <= 0 gives a deadline
  // that expired now.
  static Deadline after(Duration budget, const Clock& clock = Clock::steady()) noexcept;

  constexpr bool is_set() const noexcept { return set_; }
  // Precondition: is_set().
  constexpr time_point when() const noexcept { return when_; }

  // Time left, never negative; Duration::max() without a deadline.
  Duration remaining(const Clock& clock = Clock::steady()) const noexcept;
  bool expired(const Clock& clock = Clock::steady()) const noexcept;
  // False when fewer than `min_duration` remain: the callee should refuse the work now
  // with Reason::deadline_exceeded rather than start what cannot finish.
  bool can_finish(Duration min_duration, const Clock& clock = Clock::steady()) const noexcept;

  // The earlier of this deadline and now + budget (a per-attempt timeout inside an overall
  // deadline, or a hop's own timeout inside the deadline it was given).
  Deadline shortened(Duration budget, const Clock& clock = Clock::steady()) const noexcept;
  // The earlier of the two.
  constexpr Deadline min(Deadline other) const noexcept {
    if (!set_) {
      return other;
    }
    if (!other.set_) {
      return *this;
    }
    return other.when_ < when_ ? other : *this;
  }

  // Remaining whole milliseconds, rounded down, "0" once expired. Precondition: is_set()
  // (without a deadline, send no header).
  std::string header_value(const Clock& clock = Clock::steady()) const;

  friend constexpr bool operator==(const Deadline&, const Deadline&) noexcept = default;

 private:
  constexpr explicit Deadline(time_point when) noexcept : set_(true), when_(when) {}

  bool set_ = false;
  time_point when_{};
};

struct ParsedDeadline {
  Deadline deadline;       // set when ok
  std::string_view error;  // empty when ok; a static message otherwise

  explicit operator bool() const noexcept { return error.empty(); }
};

// Parses a header value of remaining milliseconds: ASCII digits only, optional
// surrounding spaces/tabs, at most kMaxHeaderBudget. "0" is a valid, expired deadline.
// Negative, empty, non-numeric, fractional and oversized values are errors, never a crash.
ParsedDeadline parse_deadline_header(std::string_view value,
                                     const Clock& clock = Clock::steady()) noexcept;

}  // namespace coromesh::qos
