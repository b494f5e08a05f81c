// The bound on handshakes in flight: past it the oldest is shed, on its own executor, and
// a handshake that ended before the shed ran is left alone.
#include "src/handshake_limit.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <memory>
#include <vector>

namespace coromesh::sidecar {
namespace {

namespace asio = boost::asio;

TEST(HandshakeLimit, BelowTheBoundNothingIsShed) {
  asio::io_context io;
  HandshakeLimit limit(3);
  int shed = 0;
  std::size_t count = 99;
  std::vector<std::unique_ptr<HandshakeLimit::Slot>> slots;
  for (int i = 0; i < 3; ++i) {
    slots.push_back(limit.enter(
        io.get_executor(), [&] { ++shed; }, &count));
    EXPECT_EQ(count, 0u);
  }
  io.run();
  EXPECT_EQ(shed, 0);
  EXPECT_EQ(limit.in_flight(), 3u);
  slots.clear();
  EXPECT_EQ(limit.in_flight(), 0u);
}

TEST(HandshakeLimit, PastTheBoundTheOldestIsShedOnItsExecutor) {
  asio::io_context io;
  HandshakeLimit limit(2);
  std::vector<int> shed;
  std::vector<std::unique_ptr<HandshakeLimit::Slot>> slots;
  std::size_t count = 0;
  for (int i = 0; i < 5; ++i) {
    slots.push_back(limit.enter(
        io.get_executor(), [&shed, i] { shed.push_back(i); }, &count));
    EXPECT_EQ(count, i < 2 ? 0u : 1u) << "handshake " << i;
  }
  EXPECT_TRUE(shed.empty()) << "shedding is posted, never run inside enter()";
  io.run();
  EXPECT_EQ(shed, (std::vector<int>{0, 1, 2})) << "the oldest first, the newest two kept";
  EXPECT_EQ(limit.in_flight(), 2u);
  // The shed slots are destroyed later (their coroutines unwind): the kept ones stay
  // listed, and destroying them in any order leaves nothing behind.
  slots[4].reset();
  slots[0].reset();
  EXPECT_EQ(limit.in_flight(), 1u);
  slots.clear();
  EXPECT_EQ(limit.in_flight(), 0u);
}

TEST(HandshakeLimit, AHandshakeThatEndedBeforeTheShedRanIsLeftAlone) {
  asio::io_context io;
  HandshakeLimit limit(1);
  bool first_shed = false;
  auto first = limit.enter(io.get_executor(), [&] { first_shed = true; });
  auto second = limit.enter(io.get_executor(), [] {});
  first.reset();  // it finished (and its socket is gone) before the posted shed runs
  io.run();
  EXPECT_FALSE(first_shed);
  EXPECT_EQ(limit.in_flight(), 1u);
}

TEST(HandshakeLimit, ABoundOfZeroMeansOne) {
  HandshakeLimit limit(0);
  EXPECT_EQ(limit.capacity(), 1u);
}

}  // namespace
}  // namespace coromesh::sidecar
