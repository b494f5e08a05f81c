#include "coromesh/qos/deadline.hpp"

#include <limits>

namespace coromesh::qos {

Deadline Deadline::after(Duration budget, const Clock& clock) noexcept {
  const auto now = clock.now();
  if (budget <= Duration::zero()) {
    return Deadline(now);  // already expired (and no underflow for Duration::min())
  }
  const auto headroom = time_point::max() - now;
  return Deadline(budget >= headroom ? time_point::max() : now + budget);
}

Duration Deadline::remaining(const Clock& clock) const noexcept {
  if (!set_) {
    return Duration::max();
  }
  const auto now = clock.now();
  return when_ > now ? when_ - now : Duration::zero();
}

bool Deadline::expired(const Clock& clock) const noexcept {
  return set_ && clock.now() >= when_;
}

bool Deadline::can_finish(Duration min_duration, const Clock& clock) const noexcept {
  if (!set_) {
    return true;
  }
  const auto left = remaining(clock);
  return left > Duration::zero() && left >= min_duration;
}

Deadline Deadline::shortened(Duration budget, const Clock& clock) const noexcept {
  return min(after(budget, clock));
}

std::string Deadline::header_value(const Clock& clock) const {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(remaining(clock)).count());
}

ParsedDeadline parse_deadline_header(std::string_view value, const Clock& clock) noexcept {
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!value.empty() && is_space(value.front())) {
    value.remove_prefix(1);
  }
  while (!value.empty() && is_space(value.back())) {
    value.remove_suffix(1);
  }
  if (value.empty()) {
    return {Deadline(), "deadline header is empty"};
  }
  if (value.front() == '-') {
    return {Deadline(), "deadline header is negative"};
  }
  const auto max_ms = static_cast<std::uint64_t>(kMaxHeaderBudget.count());
  std::uint64_t ms = 0;
  for (char c : value) {
    if (c < '0' || c > '9') {
      return {Deadline(), "deadline header is not a whole number of milliseconds"};
    }
    ms = ms * 10 + static_cast<std::uint64_t>(c - '0');
    if (ms > max_ms) {
      return {Deadline(), "deadline header exceeds the maximum budget of 24h"};
    }
  }
  return {Deadline::after(std::chrono::milliseconds(static_cast<std::int64_t>(ms)), clock), {}};
}

}  // namespace coromesh::qos
