#include "coromesh/consul/backoff.hpp"

#include <gtest/gtest.h>

namespace coromesh::consul {
namespace {

using namespace std::chrono_literals;

TEST(ConsulBackoff, DoublesWithJitterUpToTheCap) {
  Backoff backoff(100ms, 1s);
  std::chrono::milliseconds ceiling = 100ms;
  for (int i = 0; i < 8; ++i) {
    auto delay = backoff.next();
    EXPECT_GE(delay, ceiling / 2) << "attempt " << i;
    EXPECT_LE(delay, ceiling) << "attempt " << i;
    ceiling = std::min(ceiling * 2, std::chrono::milliseconds(1s));
  }
  EXPECT_EQ(backoff.failures(), 8u);
}

TEST(ConsulBackoff, ResetStartsOver) {
  Backoff backoff(100ms, 5s);
  for (int i = 0; i < 5; ++i) {
    backoff.next();
  }
  backoff.reset();
  EXPECT_EQ(backoff.failures(), 0u);
  EXPECT_LE(backoff.next(), 100ms);
}

TEST(ConsulBackoff, JitterSpreadsDelays) {
  Backoff backoff(1000ms, 1000ms);
  auto first = backoff.next();
  bool differs = false;
  for (int i = 0; i < 20 && !differs; ++i) {
    differs = backoff.next() != first;
  }
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace coromesh::consul
