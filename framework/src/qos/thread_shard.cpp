#include "coromesh/qos/thread_shard.hpp"

namespace coromesh::qos {

namespace {

using detail::my_slot;

static_assert(kOwnedShards <= 64, "the owned slots are the bits of one word");

// Bit i set: owned slot i has a live owner.
std::atomic<std::uint64_t> taken_slots{0};

ShardSlot shared_slot() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return ShardSlot{kOwnedShards + mine % kSharedShards, false};
}

// Hands the owned slot back when its thread exits. Once it has, the thread (should it
// still count something) adds to a shared shard with read-modify-writes.
struct SlotReleaser {
  SlotReleaser() = default;
  SlotReleaser(const SlotReleaser&) = delete;
  SlotReleaser& operator=(const SlotReleaser&) = delete;
  ~SlotReleaser() {
    if (my_slot.exclusive) {
      const std::uint64_t bit = std::uint64_t{1} << my_slot.index;
      my_slot = shared_slot();
      // Release: the next owner sees every store this thread made to the shard.
      taken_slots.fetch_and(~bit, std::memory_order_release);
    }
  }
};

ShardSlot take_slot() noexcept {
  std::uint64_t taken = taken_slots.load(std::memory_order_relaxed);
  for (;;) {
    std::size_t free = 0;
    while (free < kOwnedShards && (taken >> free & 1U) != 0) {
      ++free;
    }
    if (free == kOwnedShards) {
      return shared_slot();
    }
    const std::uint64_t bit = std::uint64_t{1} << free;
    // Acquire: this thread sees every store the slot's previous owner made.
    if (taken_slots.compare_exchange_weak(taken, taken | bit, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
      return ShardSlot{free, true};
    }
  }
}

}  // namespace

namespace detail {

constinit thread_local ShardSlot my_slot{};
constinit thread_local bool my_slot_assigned = false;

ShardSlot assign_owned_shard() noexcept {
  my_slot_assigned = true;
  my_slot = take_slot();
  if (my_slot.exclusive) {
    thread_local SlotReleaser releaser;  // constructed here: released at thread exit
  }
  return my_slot;
}

}  // namespace detail

}  // namespace coromesh::qos
