#pragma once

// Per-thread shards of hot counters, so io threads sharing one policy or one metric do
// not bounce one cache line between their cores. Callers keep each shard on its own
// cache line.
//
// thread_shard(): a small number per thread: its owned_shard() index. Up to kOwnedShards
// live threads get distinct numbers, however many threads came and went before them (a
// number handed out once per thread ever made a service's two io threads share a shard
// after a few short-lived threads). Callers take it modulo their shard count; threads may
// share a shard, so its counters take read-modify-writes.
//
// owned_shard(): a shard the calling thread owns alone while it lives, for counters only
// their shard's thread writes: the owner adds with a relaxed load and store (add_to_shard)
// instead of a locked read-modify-write. kOwnedShards slots are handed out on a thread's
// first call and handed back when it exits (the next owner sees everything the last one
// wrote); a thread that finds none free gets one of kSharedShards shared shards, where
// add_to_shard uses fetch_add. Callers keep kOwnedShards + kSharedShards shards, indexed
// by ShardSlot::index.

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace coromesh::qos {

inline constexpr std::size_t kOwnedShards = 8;
inline constexpr std::size_t kSharedShards = 8;

struct ShardSlot {
  std::size_t index = 0;   // < kOwnedShards + kSharedShards
  bool exclusive = false;  // index < kOwnedShards: no other thread writes this shard
};

namespace detail {
// The calling thread's slot, once assigned. Trivially destructible, so still readable by
// whatever runs during the thread's exit (another thread_local's destructor counting a
// last call). constinit: read inline, with no call to a thread_local wrapper.
extern constinit thread_local ShardSlot my_slot;
extern constinit thread_local bool my_slot_assigned;
ShardSlot assign_owned_shard() noexcept;
}  // namespace detail

// Inline: every policy on a call's path asks for it.
inline ShardSlot owned_shard() noexcept {
  if (detail::my_slot_assigned) [[likely]] {
    return detail::my_slot;
  }
  return detail::assign_owned_shard();
}

inline std::size_t thread_shard() noexcept {
  return owned_shard().index;
}

// Adds `n` to `counter` in the calling thread's shard `slot` (from owned_shard()).
inline void add_to_shard(std::atomic<std::uint64_t>& counter, std::uint64_t n,
                         const ShardSlot& slot) noexcept {
  if (slot.exclusive) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  } else {
    counter.fetch_add(n, std::memory_order_relaxed);
  }
}

}  // namespace coromesh::qos
