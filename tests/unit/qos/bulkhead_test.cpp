#include "coromesh/qos/bulkhead.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace coromesh::qos {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// One acquirer: its permit lands in `slot` once acquire() completes.
struct Slot {
  bool done = false;
  Bulkhead::Permit permit;
};

asio::awaitable<void> acquire_into(Bulkhead& bulkhead, std::shared_ptr<Slot> slot) {
  auto permit = co_await bulkhead.acquire();
  slot->permit = std::move(permit);
  slot->done = true;
}

std::shared_ptr<Slot> spawn_acquire(asio::io_context& io, Bulkhead& bulkhead) {
  auto slot = std::make_shared<Slot>();
  asio::co_spawn(io, acquire_into(bulkhead, slot), asio::detached);
  return slot;
}

TEST(Bulkhead, DefaultsAreResilience4j) {
  const BulkheadConfig c;
  EXPECT_EQ(c.max_concurrent, 25U);
  EXPECT_EQ(c.max_queue, 0U);
  EXPECT_EQ(c.max_wait, Duration::zero());
}

TEST(Bulkhead, GrantsUpToCapacityWithoutQueue) {
  asio::io_context io;
  Bulkhead bulkhead({.max_concurrent = 2});
  auto a = spawn_acquire(io, bulkhead);
  auto b = spawn_acquire(io, bulkhead);
  auto c = spawn_acquire(io, bulkhead);
  io.poll();
  ASSERT_TRUE(a->done && b->done && c->done);
  EXPECT_TRUE(a->permit);
  EXPECT_TRUE(b->permit);
  ASSERT_FALSE(c->permit);
  EXPECT_EQ(c->permit.reason(), Reason::bulkhead_full);
  EXPECT_EQ(bulkhead.in_use(), 2U);
  a->permit.release();
  EXPECT_EQ(bulkhead.in_use(), 1U);
  auto t = bulkhead.try_acquire();
  EXPECT_TRUE(t);
  EXPECT_FALSE(bulkhead.try_acquire());
}

// Without a queue each thread keeps the permits it gives back (its shard); a thread that
// runs dry takes them from the others, so the capacity is the same from every thread.
TEST(Bulkhead, PermitsGivenBackOnOneThreadServeAnother) {
  Bulkhead bulkhead({.max_concurrent = 40});
  auto hold_all_then_give_back = [&] {
    std::vector<Bulkhead::Permit> held;
    for (int i = 0; i < 40; ++i) {
      held.push_back(bulkhead.try_acquire());
      EXPECT_TRUE(held.back()) << "permit " << i;
    }
    EXPECT_FALSE(bulkhead.try_acquire());
    EXPECT_EQ(bulkhead.in_use(), 40U);
  };
  std::thread(hold_all_then_give_back).join();  // all 40 now sit in that thread's shard
  EXPECT_EQ(bulkhead.in_use(), 0U);
  hold_all_then_give_back();
  std::thread(hold_all_then_give_back).join();
  // Held here, given back on another thread: still 40 in all.
  std::vector<Bulkhead::Permit> here;
  for (int i = 0; i < 40; ++i) {
    here.push_back(bulkhead.try_acquire());
  }
  std::thread([&] { here.clear(); }).join();
  EXPECT_EQ(bulkhead.in_use(), 0U);
  hold_all_then_give_back();
}

TEST(Bulkhead, QueuedWaiterGetsTheReleasedPermitInOrder) {
  asio::io_context io;
  Bulkhead bulkhead({.max_concurrent = 1, .max_queue = 2, .max_wait = 10s});
  auto a = spawn_acquire(io, bulkhead);
  auto b = spawn_acquire(io, bulkhead);
  auto c = spawn_acquire(io, bulkhead);
  io.poll();
  ASSERT_TRUE(a->done);
  EXPECT_FALSE(b->done);
  EXPECT_FALSE(c->done);
  EXPECT_EQ(bulkhead.queued(), 2U);
  EXPECT_FALSE(bulkhead.try_acquire());  // no barging past the queue

  a->permit.release();
  io.poll();
  ASSERT_TRUE(b->done);
  EXPECT_TRUE(b->permit);
  EXPECT_FALSE(c->done);
  EXPECT_EQ(bulkhead.in_use(), 1U);

  b->permit = Bulkhead::Permit();  // move-assign releases
  io.poll();
  ASSERT_TRUE(c->done);
  EXPECT_TRUE(c->permit);
  c->permit.release();
  EXPECT_EQ(bulkhead.in_use(), 0U);
  EXPECT_EQ(bulkhead.queued(), 0U);
}

TEST(Bulkhead, RejectsWhenTheQueueIsFull) {
  asio::io_context io;
  Bulkhead bulkhead({.max_concurrent = 1, .max_queue = 1, .max_wait = 10s});
  auto a = spawn_acquire(io, bulkhead);
  auto b = spawn_acquire(io, bulkhead);
  auto c = spawn_acquire(io, bulkhead);
  io.poll();
  EXPECT_TRUE(a->done && a->permit);
  EXPECT_FALSE(b->done);
  ASSERT_TRUE(c->done);
  ASSERT_FALSE(c->permit);
  EXPECT_EQ(c->permit.reason(), Reason::bulkhead_full);
  a->permit.release();
  io.poll();
  EXPECT_TRUE(b->done && b->permit);
}

TEST(Bulkhead, WaiterTimesOutInTheQueue) {
  asio::io_context io;
  Bulkhead bulkhead({.max_concurrent = 1, .max_queue = 1, .max_wait = 20ms});
  auto a = spawn_acquire(io, bulkhead);
  auto b = spawn_acquire(io, bulkhead);
  io.poll();
  ASSERT_FALSE(b->done);
  io.run_for(2s);  // returns once b's timer fired and nothing is left to do
  ASSERT_TRUE(b->done);
  ASSERT_FALSE(b->permit);
  EXPECT_EQ(b->permit.reason(), Reason::bulkhead_full);
  EXPECT_EQ(bulkhead.queued(), 0U);
  // The timed-out waiter does not get the next release.
  a->permit.release();
  EXPECT_EQ(bulkhead.in_use(), 0U);
}

TEST(Bulkhead, DestroyedWaiterLeavesTheQueue) {
  Bulkhead bulkhead({.max_concurrent = 1, .max_queue = 4, .max_wait = 10s});
  auto held = bulkhead.try_acquire();
  ASSERT_TRUE(held);
  {
    asio::io_context io;
    auto b = spawn_acquire(io, bulkhead);
    io.poll();
    EXPECT_EQ(bulkhead.queued(), 1U);
  }  // io_context destroyed with b still waiting
  EXPECT_EQ(bulkhead.queued(), 0U);
  held.release();
  EXPECT_EQ(bulkhead.in_use(), 0U);
}

TEST(Bulkhead, ReleaseFromAnotherThreadWakesTheWaiterOnItsExecutor) {
  asio::io_context io;
  Bulkhead bulkhead({.max_concurrent = 1, .max_queue = 1, .max_wait = 10s});
  auto held = bulkhead.try_acquire();
  auto b = spawn_acquire(io, bulkhead);
  io.poll();
  ASSERT_EQ(bulkhead.queued(), 1U);
  std::thread releaser([&] { held.release(); });
  releaser.join();
  io.run_for(2s);
  ASSERT_TRUE(b->done);
  EXPECT_TRUE(b->permit);
}

TEST(Bulkhead, ManyWaitersAcrossThreadsNeverExceedCapacity) {
  Bulkhead bulkhead({.max_concurrent = 3, .max_queue = 1000, .max_wait = 30s});
  asio::io_context io;
  int granted = 0;
  std::uint32_t peak = 0;
  std::mutex m;
  auto worker = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 50; ++i) {
      auto permit = co_await bulkhead.acquire();
      if (permit) {
        std::lock_guard lock(m);
        ++granted;
        peak = std::max(peak, bulkhead.in_use());
      }
    }
  };
  for (int i = 0; i < 8; ++i) {
    auto w = worker();
    asio::co_spawn(io, std::move(w), asio::detached);
  }
  std::thread t1([&] { io.run(); });
  std::thread t2([&] { io.run(); });
  t1.join();
  t2.join();
  EXPECT_EQ(granted, 400);
  EXPECT_LE(peak, 3U);
  EXPECT_EQ(bulkhead.in_use(), 0U);
}

// --- reconfigure ------------------------------------------------------------------------

// Permits held on other threads and free ones sitting in their shards: a shrink retires
// the free ones at once and the held ones as they come back, and admits nothing meanwhile.
TEST(Bulkhead, ShrinkRetiresPermitsWhereverTheyAre) {
  Bulkhead bulkhead({.max_concurrent = 8});
  std::vector<Bulkhead::Permit> there;  // 6 held, taken on another thread
  std::thread([&] {
    for (int i = 0; i < 8; ++i) {
      there.push_back(bulkhead.try_acquire());
    }
    there.resize(6);  // 2 given back there: free in that thread's shard
  }).join();
  ASSERT_EQ(bulkhead.in_use(), 6U);
  bulkhead.reconfigure({.max_concurrent = 3});
  EXPECT_EQ(bulkhead.config().max_concurrent, 3U);
  EXPECT_EQ(bulkhead.in_use(), 6U);
  for (int held = 6; held >= 3; --held) {
    EXPECT_FALSE(bulkhead.try_acquire()) << held << " held";
    std::thread([&] { there.pop_back(); }).join();
  }
  EXPECT_EQ(bulkhead.in_use(), 2U);
  auto a = bulkhead.try_acquire();
  EXPECT_TRUE(a);
  EXPECT_FALSE(bulkhead.try_acquire());
  there.clear();
  a.release();
  EXPECT_EQ(bulkhead.in_use(), 0U);
  std::vector<Bulkhead::Permit> all;
  for (int i = 0; i < 3; ++i) {
    all.push_back(bulkhead.try_acquire());
    EXPECT_TRUE(all.back()) << "permit " << i;
  }
  EXPECT_FALSE(bulkhead.try_acquire());
}

// A grow pays off what a shrink still owed before it adds free permits.
TEST(Bulkhead, GrowAfterShrinkCountsTheCallsStillHeld) {
  Bulkhead bulkhead({.max_concurrent = 4});
  std::vector<Bulkhead::Permit> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(bulkhead.try_acquire());
  }
  bulkhead.reconfigure({.max_concurrent = 1});
  EXPECT_FALSE(bulkhead.try_acquire());
  bulkhead.reconfigure({.max_concurrent = 6});
  auto a = bulkhead.try_acquire();
  auto b = bulkhead.try_acquire();
  EXPECT_TRUE(a && b);
  EXPECT_FALSE(bulkhead.try_acquire());
  EXPECT_EQ(bulkhead.in_use(), 6U);
}

TEST(Bulkhead, ShrinkWithAQueueHoldsTheWaitersUntilBelowTheNewLimit) {
  asio::io_context io;
  Bulkhead bulkhead({.max_concurrent = 3, .max_queue = 2, .max_wait = 10s});
  std::vector<std::shared_ptr<Slot>> running;
  for (int i = 0; i < 3; ++i) {
    running.push_back(spawn_acquire(io, bulkhead));
  }
  auto waiter = spawn_acquire(io, bulkhead);
  io.poll();
  ASSERT_EQ(bulkhead.queued(), 1U);
  bulkhead.reconfigure({.max_concurrent = 1, .max_queue = 2, .max_wait = 10s});
  running[0]->permit.release();
  running[1]->permit.release();
  io.poll();
  EXPECT_FALSE(waiter->done) << "1 still held: the new limit";
  running[2]->permit.release();
  io.poll();
  ASSERT_TRUE(waiter->done);
  EXPECT_TRUE(waiter->permit);
  EXPECT_EQ(bulkhead.in_use(), 1U);
}

// From no queue to a queue and back, with permits held across both changes: each is
// given back once, and waiters queued before the queue went away are still served.
TEST(Bulkhead, SwitchingTheQueueOnAndOffKeepsTheCount) {
  asio::io_context io;
  Bulkhead bulkhead({.max_concurrent = 2});
  auto a = bulkhead.try_acquire();
  auto b = bulkhead.try_acquire();
  bulkhead.reconfigure({.max_concurrent = 2, .max_queue = 2, .max_wait = 10s});
  auto waiter = spawn_acquire(io, bulkhead);
  io.poll();
  ASSERT_EQ(bulkhead.queued(), 1U);
  bulkhead.reconfigure({.max_concurrent = 2});  // no queue: no new waiter, this one stays
  EXPECT_FALSE(bulkhead.try_acquire()) << "no barging past the waiter";
  auto refused = spawn_acquire(io, bulkhead);
  io.poll();
  ASSERT_TRUE(refused->done);
  EXPECT_FALSE(refused->permit);
  a.release();
  io.poll();
  ASSERT_TRUE(waiter->done);
  EXPECT_TRUE(waiter->permit);
  EXPECT_EQ(bulkhead.in_use(), 2U);
  b.release();
  waiter->permit.release();
  EXPECT_EQ(bulkhead.in_use(), 0U);
  auto c = bulkhead.try_acquire();
  auto d = bulkhead.try_acquire();
  EXPECT_TRUE(c && d);
  EXPECT_FALSE(bulkhead.try_acquire());
}

TEST(Bulkhead, ReconfigureRefusesWhatCannotWorkAndKeepsTheLimits) {
  Bulkhead bulkhead({.max_concurrent = 2});
  EXPECT_THROW(bulkhead.reconfigure({.max_concurrent = 0}), std::invalid_argument);
  EXPECT_THROW(bulkhead.reconfigure({.max_queue = 1}), std::invalid_argument);
  EXPECT_EQ(bulkhead.config().max_concurrent, 2U);
  auto a = bulkhead.try_acquire();
  auto b = bulkhead.try_acquire();
  EXPECT_TRUE(a && b);
  EXPECT_FALSE(bulkhead.try_acquire());
}

TEST(Bulkhead, RejectsZeroCapacity) {
  EXPECT_THROW(Bulkhead({.max_concurrent = 0}), std::invalid_argument);
  EXPECT_THROW(Bulkhead({.max_queue = 3}), std::invalid_argument);  // queue without wait
  static_assert(!validate(BulkheadConfig{.max_concurrent = 0}).empty());
}

}  // namespace
}  // namespace coromesh::qos
