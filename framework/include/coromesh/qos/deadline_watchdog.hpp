#pragma once

// The deadline watchdog: cuts off calls that run past their deadline, for the price of
// linking a node into a list and unlinking it again (no timer, no allocation per call).
//
//   WatchedDeadline watch(io, deadline);      // registers; lives in the caller's frame
//   ... start the call with watch.slot() as its cancellation slot ...
//   watch.release();                          // or its destructor
//   if (watch.expired()) { ... the call was cut off: deadline_exceeded ... }
//
// One DeadlineWatchdog per io_context (an Asio service, created on first use and shut
// down with the context). It keeps one steady_timer armed for the earliest registered
// deadline, rounded up to kGranularity. When the timer fires it emits a terminal
// cancellation on the signal of every call whose deadline has passed, marks them
// expired, and re-arms for the earliest deadline still registered. Registering a deadline
// no earlier than the armed one (the steady state of calls sharing a timeout) touches no
// timer; a call leaving does not cancel the timer either: it fires once more, finds
// nothing overdue and stays idle.
//
// Requirement: keep the io_context running while a WatchedDeadline is registered. The
// watchdog does not hold work for it: its timer never keeps io_context::run() from
// returning (it would hold run() until the earliest deadline after every call had left,
// and a work count per call costs two atomic operations on the chain's hot path for
// nothing its users need). Declared in a coroutine started with co_spawn, as the chain
// and TimeoutInterceptor do, a watch needs nothing more: co_spawn holds work on the
// coroutine's executor until the coroutine ends, so run() goes on until the call has
// finished or been cut off, whatever the call waits on; an IoPool holds work guards as
// well. Only a watch used outside such a coroutine (a plain completion handler bound to
// slot()) needs the caller's own executor_work_guard until the call ends, or run() may
// return before the deadline, leaving the call neither finished nor cut off until run()
// is called again.
//
// Threading: the watchdog and every WatchedDeadline of an io_context belong to the one
// thread running that io_context (coromesh's IoPool model: one thread per context).
// Asio's per-operation cancellation requires the same of whoever emits it.
//
// Lifetimes: a WatchedDeadline unlinks itself on destruction, on every path (a frame
// destroyed with the io_context included). At the io_context's shutdown the watchdog
// detaches every node still registered (they become inert: their release() does nothing)
// before any coroutine frame is destroyed, so neither can outlive the other unsafely.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace coromesh::qos {

class DeadlineWatchdog;

// One call's registration: its deadline and the signal that cancels it. Not copyable or
// movable (the watchdog links to it): declare it in the coroutine frame of the call.
class WatchedDeadline {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  // Registers `deadline` with the watchdog of `io`. Called on io's thread. Not work: see
  // "Requirement" above (a watch in a co_spawn'ed coroutine needs nothing more).
  WatchedDeadline(boost::asio::io_context& io, time_point deadline);
  // The same for the io_context behind `executor` (an io_context's executor or a strand
  // of one). Throws std::logic_error for any other kind of executor.
  WatchedDeadline(const boost::asio::any_io_executor& executor, time_point deadline);
  ~WatchedDeadline();
  WatchedDeadline(const WatchedDeadline&) = delete;
  WatchedDeadline& operator=(const WatchedDeadline&) = delete;

  // The slot to bind the call's cancellation to; the watchdog emits a terminal
  // cancellation on it once the deadline has passed.
  boost::asio::cancellation_slot slot() noexcept { return signal_->slot(); }
  boost::asio::cancellation_signal& signal() noexcept { return *signal_; }
  time_point deadline() const noexcept { return deadline_; }
  // True once the watchdog has cut the call off.
  bool expired() const noexcept { return expired_; }
  // Unregisters (idempotent); the deadline can no longer expire afterwards.
  void release() noexcept;

 private:
  friend class DeadlineWatchdog;

  DeadlineWatchdog* watchdog_ = nullptr;  // null once released, expired or detached
  WatchedDeadline* prev_ = nullptr;
  WatchedDeadline* next_ = nullptr;
  time_point deadline_;
  bool expired_ = false;
  // Borrowed from the spare signals of the thread that made this node and given back to
  // the spares of the thread that destroys it. A signal keeps the memory of the
  // cancellation state last bound to its slot (the call's), so binding the next call's
  // state to a used signal allocates nothing. What was bound to it before is gone by then:
  // it is bound to a call that must end before this node does (see CancellableCall).
  boost::asio::cancellation_signal* signal_;
};

class DeadlineWatchdog final : public boost::asio::execution_context::service {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  // Timer resolution: a call is cut off at most this long after its deadline (plus the
  // io thread's scheduling delay). Coarser means fewer timer re-arms.
  static constexpr std::chrono::milliseconds kGranularity{1};

  static inline boost::asio::execution_context::id id;

  explicit DeadlineWatchdog(boost::asio::io_context& io);
  ~DeadlineWatchdog() override;

  // The watchdog of `io` (created on first use). Cached per thread: a lookup is a
  // compare, not Asio's locked service registry search.
  static DeadlineWatchdog& of(boost::asio::io_context& io);

  // Calls registered now (for tests and diagnostics). io's thread only.
  std::size_t registered() const noexcept { return count_; }
  // Whether the timer is waiting to fire (for tests).
  bool armed() const noexcept { return armed_for_ != time_point::max(); }

 private:
  friend class WatchedDeadline;

  void shutdown() override;
  void add(WatchedDeadline& node);
  void remove(WatchedDeadline& node) noexcept;
  void arm(time_point earliest);
  void on_timer(bool aborted);

  boost::asio::io_context& io_;
  boost::asio::steady_timer timer_;
  WatchedDeadline* head_ = nullptr;
  std::size_t count_ = 0;
  time_point armed_for_ = time_point::max();  // max: no wait pending
  bool shut_down_ = false;

  // Bumped by every shutdown: invalidates the per-thread caches of of().
  static std::atomic<std::uint64_t> generation_;
};

}  // namespace coromesh::qos
