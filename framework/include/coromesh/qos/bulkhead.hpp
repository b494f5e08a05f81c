#pragma once

// Bulkhead: at most `max_concurrent` calls at once, plus a bounded FIFO of waiters.
//
//   auto permit = co_await bulkhead.acquire();
//   if (!permit) { throw QosRejected("bulkhead", permit.reason()); }   // bulkhead_full
//   ... the call ...                                                   // ~Permit releases
//
// `acquire()` grants at once while a slot is free and nobody queues; otherwise it queues
// (up to `max_queue` waiters) until a permit is handed over or `max_wait` (or the shorter
// limit given, e.g. the caller's deadline) passes; with the queue full it rejects at once. Both
// rejections are Reason::bulkhead_full. A released permit goes straight to the oldest waiter (FIFO,
// no barging). `try_acquire()` never waits.
//
// Defaults (resilience4j SemaphoreBulkhead): 25 concurrent calls, no queue (max_queue 0,
// max_wait 0: reject when full). With max_queue > 0, max_wait must be positive.
//
// `reconfigure()` changes the limits of a running bulkhead in place (resilience4j's
// Bulkhead.changeConfig; a live override does it): the calls in flight keep their permits and
// count against the new limit. Shrinking below the calls in flight lets those finish but
// admits no new call until fewer than the new max_concurrent run (the permits they give back
// are retired, not reused); growing hands the new permits to queued waiters at once. A new
// max_wait or max_queue applies to waits that start afterwards (waiters already queued keep
// their place and deadline; with max_queue 0 they are still served, and no new one queues).
//
// Threading: acquire/try_acquire/release may be called from any thread and any executor.
// Without a queue (max_queue 0) the free permits sit in per-thread shards: a thread takes
// and gives back its own shard's permits with one atomic operation on its own cache line,
// so io threads sharing a bulkhead do not contend for one counter per call. A thread whose
// shard is empty takes a few from the common pool, or, with the pool empty, the free
// permits other threads' shards keep (under a mutex); only when all those are in use is
// the call refused. Never more than max_concurrent at once (after a shrink: than the calls
// in flight then, until they drop below it). Near capacity, a call that
// races with a release on another thread may be refused although that permit came back a
// moment before (as with any counter read concurrently with a release). With a queue one
// mutex guards the count and the queue (FIFO hand-over needs it), and the shards are closed:
// a permit given back to a closed shard goes on to the locked path. A shrink closes them too
// until the permits it retires have come back, so the fast paths (a compare-exchange on the
// own shard to take, a fetch_add to give back) need no other check; only until then do calls
// without a queue take the lock. Each waiter waits on a
// steady_timer bound to its own coroutine's executor; a release on another thread wakes it by
// posting the timer's cancel to that executor, so the waiter always resumes on its own executor.
// The Bulkhead, and the executors of coroutines waiting in it, must outlive every waiter and every
// Permit. If a waiting coroutine is destroyed (its io_context torn down), it leaves the queue, or
// gives back a permit that was handed to it. A wait cancelled through Asio's per-operation
// cancellation (e.g. `acquire() || timer`) ends like a timeout: bulkhead_full.

#include <array>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string_view>

#include "coromesh/qos/clock.hpp"
#include "coromesh/qos/reason.hpp"

namespace coromesh::qos {

struct BulkheadConfig {
  std::uint32_t max_concurrent = 25;
  std::uint32_t max_queue = 0;
  Duration max_wait = Duration::zero();
};

constexpr std::string_view validate(const BulkheadConfig& c) noexcept {
  if (c.max_concurrent == 0) {
    return "bulkhead: a zero-capacity bulkhead (max_concurrent 0) admits nothing";
  }
  if (c.max_wait < Duration::zero()) {
    return "bulkhead: max_wait must not be negative";
  }
  if (c.max_queue > 0 && c.max_wait == Duration::zero()) {
    return "bulkhead: a wait queue needs a positive max_wait";
  }
  return {};
}

class Bulkhead {
 public:
  // Move-only RAII permit. Holds a slot when granted (operator bool); releases it on
  // destruction or release(). A rejected permit holds nothing and carries reason().
  class [[nodiscard]] Permit {
   public:
    Permit() noexcept = default;
    Permit(Permit&& other) noexcept;
    Permit& operator=(Permit&& other) noexcept;
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit() { release(); }

    explicit operator bool() const noexcept { return owner_ != nullptr; }
    bool is_granted() const noexcept { return owner_ != nullptr; }
    // Precondition: !is_granted().
    Reason reason() const noexcept { return reason_; }
    void release() noexcept;

   private:
    friend class Bulkhead;
    explicit Permit(Bulkhead* owner) noexcept : owner_(owner) {}
    explicit Permit(Reason reason) noexcept : reason_(reason) {}

    Bulkhead* owner_ = nullptr;
    Reason reason_ = Reason::bulkhead_full;
  };

  // Throws std::invalid_argument when validate(config) is not empty.
  explicit Bulkhead(BulkheadConfig config = {});
  ~Bulkhead();

  Bulkhead(const Bulkhead&) = delete;
  Bulkhead& operator=(const Bulkhead&) = delete;

  Permit try_acquire();
  boost::asio::awaitable<Permit> acquire();
  // The same, waiting in the queue at most `wait_limit` (when shorter than max_wait):
  // a caller's deadline. A limit <= 0 never queues.
  boost::asio::awaitable<Permit> acquire(Duration wait_limit);

  // The same slot without the RAII wrapper, for callers that keep the release in a
  // separate phase (the chain's synchronous bulkhead): every granted try_enter() must be
  // followed by exactly one leave().
  Admission try_enter();
  void leave() noexcept { release(); }

  // Takes `config` as the new limits (above). Any thread, concurrently with calls on others.
  // Throws std::invalid_argument when validate(config) is not empty (nothing changes then).
  void reconfigure(BulkheadConfig config);

  // Permits held by calls: above max_concurrent after a shrink, until those calls end.
  std::uint32_t in_use() const;
  std::size_t queued() const;
  BulkheadConfig config() const;  // a copy: reconfigure() may change it meanwhile

 private:
  struct Waiter;
  struct WaitGuard;
  using Wakeups = boost::container::small_vector<std::shared_ptr<Waiter>, 2>;
  void release() noexcept;

  // Without a queue: takes a permit from the pool or from other threads' shards.
  Admission enter_from_pool(std::atomic<std::int64_t>& own_free);
  // A permit given back to a closed shard: takes that shard's back through the lock.
  void reclaim(std::atomic<std::int64_t>& own_free) noexcept;
  // With mutex_ held: `permits` come back; they retire debt, go to the oldest waiters (added
  // to `wake`), then to the pool.
  void give_back_locked(std::int64_t permits, Wakeups& wake);
  // With mutex_ held: closes the shards (if open) and takes back their free permits.
  void close_shards_locked(Wakeups& wake);
  // With mutex_ held: opens the shards when nothing needs the locked path any more.
  void reopen_if_idle_locked() noexcept;
  static void wake_all(const Wakeups& wake) noexcept;

  static constexpr std::size_t kShards = 8;  // indexed by thread_shard() % kShards
  // Subtracted from a closed shard: its value stays negative (so the fast path never takes
  // from it) whatever is given back to it; value + kClosed is what was given back.
  static constexpr std::int64_t kClosed = std::int64_t{1} << 48;
  struct alignas(64) Shard {
    std::atomic<std::int64_t> free{0};  // permits free for this shard's threads
  };

  // Guarded by mutex_, like everything below but `queued_` and the shards.
  BulkheadConfig config_;
  std::int64_t pool_batch_;  // permits a shard takes from the pool at once
  mutable std::mutex mutex_;
  // Free permits in no shard. Every permit is in the pool, in a shard or held by a call;
  // their sum is max_concurrent + debt_.
  std::int64_t pooled_ = 0;
  // Permits a shrink has yet to retire: each one given back while it is positive is
  // retired instead of freed. Positive only while the shards are closed and the pool empty.
  std::int64_t debt_ = 0;
  bool closed_ = false;  // the shards are closed (a queue, a debt or waiters to serve)
  std::deque<std::shared_ptr<Waiter>> queue_;
  // config_.max_queue > 0, read without the lock to choose a path. A stale value is harmless:
  // either path keeps the count (a closed shard sends the fast one to the lock).
  std::atomic<bool> queued_{false};
  std::array<Shard, kShards> shards_{};
};

}  // namespace coromesh::qos
