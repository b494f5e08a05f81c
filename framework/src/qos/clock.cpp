#include "coromesh/qos/clock.hpp"

namespace coromesh::qos {

const Clock& Clock::steady() noexcept {
  static const SteadyClock clock;
  return clock;
}

}  // namespace coromesh::qos
