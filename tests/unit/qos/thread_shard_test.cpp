// owned_shard(): threads alive at the same time never own the same shard, the ones that
// find none free share, and a thread's shard is handed to the next thread once it exits.
// thread_shard(): a long-lived thread and a new one get different shards, however many
// threads came and went in between.

#include "coromesh/qos/thread_shard.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace coromesh::qos {
namespace {

// owned_shard() of `n` threads that are all alive when each takes it.
std::vector<ShardSlot> slots_of_threads_alive_together(std::size_t n) {
  std::vector<ShardSlot> slots(n);
  std::mutex mutex;
  std::condition_variable all_there;
  std::size_t arrived = 0;
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      slots[i] = owned_shard();
      std::unique_lock lock(mutex);
      ++arrived;
      all_there.notify_all();
      all_there.wait(lock, [&] { return arrived == n; });
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  return slots;
}

std::size_t owners(const std::vector<ShardSlot>& slots) {
  std::size_t n = 0;
  for (const auto& slot : slots) {
    n += slot.exclusive ? 1U : 0U;
  }
  return n;
}

TEST(OwnedShard, ThreadsAliveTogetherNeverOwnTheSameShard) {
  const auto slots = slots_of_threads_alive_together(kOwnedShards + 3);
  std::set<std::size_t> owned;
  std::size_t shared = 0;
  for (const auto& slot : slots) {
    if (slot.exclusive) {
      EXPECT_LT(slot.index, kOwnedShards);
      EXPECT_TRUE(owned.insert(slot.index).second) << "shard " << slot.index << " owned twice";
    } else {
      EXPECT_GE(slot.index, kOwnedShards);
      EXPECT_LT(slot.index, kOwnedShards + kSharedShards);
      ++shared;
    }
  }
  EXPECT_GE(shared, 3U);  // more threads than owned shards
  EXPECT_GT(owned.size(), 0U);
}

TEST(OwnedShard, AnExitedThreadsShardGoesToTheNextThread) {
  const std::size_t first = owners(slots_of_threads_alive_together(kOwnedShards));
  ASSERT_GT(first, 0U);
  // Every thread of the first batch has exited: as many shards are free again.
  EXPECT_EQ(owners(slots_of_threads_alive_together(kOwnedShards)), first);
  EXPECT_EQ(owners(slots_of_threads_alive_together(kOwnedShards)), first);
}

TEST(ThreadShard, ALongLivedThreadAndANewOneNeverShareAShard) {
  // The policies keep 8 shards; the calling thread stands for a service's first io thread.
  constexpr std::size_t kPolicyShards = 8;
  const std::size_t mine = thread_shard() % kPolicyShards;
  // Numbers handed out once per thread ever (the old scheme) give the 8th thread after
  // this one the same shard: two io threads then bounce one cache line per call.
  for (int i = 0; i < 3 * static_cast<int>(kPolicyShards); ++i) {
    std::size_t theirs = 0;
    std::thread([&] { theirs = thread_shard() % kPolicyShards; }).join();
    EXPECT_NE(theirs, mine) << "thread " << i << " after this one";
  }
}

TEST(OwnedShard, AddToShardAddsOwnedOrShared) {
  std::atomic<std::uint64_t> counter{5};
  add_to_shard(counter, 2, ShardSlot{0, true});
  add_to_shard(counter, 3, ShardSlot{kOwnedShards, false});
  EXPECT_EQ(counter.load(), 10U);
}

}  // namespace
}  // namespace coromesh::qos
