#include "coromesh/log/key_rate_limiter.hpp"

#include <gtest/gtest.h>

#include <string>

namespace coromesh::log {
namespace {

using namespace std::chrono_literals;
using Clock = KeyRateLimiter::Clock;

TEST(KeyRateLimiter, FloodOfOneKeyIsCappedAndTheNextAdmittedLineCarriesTheCount) {
  KeyRateLimiter limiter(5, 1s);
  const auto t0 = Clock::time_point{} + 100s;
  int admitted = 0;
  for (int i = 0; i < 1000; ++i) {
    auto decision = limiter.admit("qos.rejected/add/bulkhead", t0 + std::chrono::microseconds(i));
    admitted += decision.admit ? 1 : 0;
    EXPECT_EQ(decision.suppressed_before, 0u);
  }
  EXPECT_EQ(admitted, 5);
  EXPECT_EQ(limiter.suppressed_total(), 995u);

  auto other = limiter.admit("qos.rejected/sub/bulkhead", t0 + 1ms);
  EXPECT_TRUE(other.admit) << "another key has its own budget";

  auto next = limiter.admit("qos.rejected/add/bulkhead", t0 + 1s + 1ms);
  EXPECT_TRUE(next.admit);
  EXPECT_EQ(next.suppressed_before, 995u);
  auto after = limiter.admit("qos.rejected/add/bulkhead", t0 + 1s + 2ms);
  EXPECT_TRUE(after.admit);
  EXPECT_EQ(after.suppressed_before, 0u) << "a suppressed count is reported once";
}

TEST(KeyRateLimiter, KeysBeyondTheBoundAreSuppressedUntilOldWindowsClose) {
  KeyRateLimiter limiter(1, 1s, 2);
  const auto t0 = Clock::time_point{} + 100s;
  EXPECT_TRUE(limiter.admit("a", t0).admit);
  EXPECT_TRUE(limiter.admit("b", t0).admit);
  EXPECT_FALSE(limiter.admit("c", t0).admit);
  EXPECT_EQ(limiter.suppressed_total(), 1u);
  EXPECT_TRUE(limiter.admit("c", t0 + 2s).admit) << "quiet keys make room";
}

}  // namespace
}  // namespace coromesh::log
