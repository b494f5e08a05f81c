#pragma once

// A small number per thread, for policies that keep per-thread shards of a hot counter
// (each shard on its own cache line) so io threads sharing one policy do not bounce one
// line between their cores. Assigned on a thread's first use, in order: a service's io
// threads get distinct numbers. Callers take it modulo their shard count.

#include <atomic>
#include <cstddef>

namespace coromesh::qos {

inline std::size_t thread_shard() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

}  // namespace coromesh::qos
