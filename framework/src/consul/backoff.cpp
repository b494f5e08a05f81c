#include "coromesh/consul/backoff.hpp"

#include <algorithm>

namespace coromesh::consul {

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
    : initial_(std::max(initial, std::chrono::milliseconds(1))),
      max_(std::max(max, initial_)),
      current_(initial_),
      random_(std::random_device{}()) {}

std::chrono::milliseconds Backoff::next() {
  ++failures_;
  auto ceiling = current_.count();
  std::uniform_int_distribution<std::chrono::milliseconds::rep> jitter(ceiling / 2, ceiling);
  current_ = std::min(current_ * 2, max_);
  return std::chrono::milliseconds(jitter(random_));
}

void Backoff::reset() noexcept {
  current_ = initial_;
  failures_ = 0;
}

}  // namespace coromesh::consul
