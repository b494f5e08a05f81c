#pragma once

// Runs an awaitable as a child coroutine of the calling one, with a cancellation slot of
// its own, for the price of a coroutine frame when the call completes without suspending.
//
//   CancellableCall call(executor);          // executor: a local declared before it
//   call.start(next(), watch.slot());         // runs the call inline until it suspends
//   if (!call.finished()) {
//     co_await call.wait(watch.signal());     // only a call that really waited gets here
//   }
//   call.rethrow();                           // the call's exception, if any
//
// Why not co_spawn: a coroutine awaited with co_await shares its caller's cancellation
// state, which only the caller's own spawner can emit; to cancel the call alone it must
// run in an Asio "awaitable thread" of its own. asio::co_spawn makes one, but dispatches
// into it, posts back out and tracks work (about 250 ns of CPU per call even when the
// call never suspends). CancellableCall starts the child thread inline on the current
// thread (an Asio detail: see the version check in the .cpp), so a call that completes at
// once never touches the executor; a call that suspends resumes its waiter with one post.
//
// Cancellation: the child's cancellation state is bound to `slot` (terminal cancellation
// only, as co_spawn does). While the waiter is suspended in wait(), a cancellation of the
// waiter is forwarded to `forward` (normally the signal behind `slot`), so cancelling the
// caller still cancels the call.
//
// Ask whether the caller is cancelled already before start() (qos::refuse_if_cancelled):
// in a coroutine that throws on cancellation (Asio's default, this_coro::throw_if_cancelled)
// the co_await of wait() throws for a caller cancelled before it, before wait() runs, and
// the child would go on with this object and the signal gone. Between start() and wait()
// nothing may suspend.
//
// Threading and lifetimes: the executor must be single-threaded (an io_context run by one
// thread, or a strand), as Asio's cancellation requires. The CancellableCall must stay in
// the caller's coroutine frame from start() until finished() (wait() guarantees it), and
// the signal behind `slot` must outlive the call (declare it before the CancellableCall).
// If the child is destroyed without finishing (its io_context torn down while it was
// suspended), the waiter is destroyed with it, never resumed.

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <exception>
#include <optional>

namespace coromesh::qos {

class CancellableCall {
 public:
  // `executor`: the caller's (co_await this_coro::executor), kept by reference: declare
  // it before the CancellableCall, in the same frame, so that it outlives the call. A
  // temporary would not: that overload is deleted.
  explicit CancellableCall(const boost::asio::any_io_executor& executor) noexcept
      : executor_(&executor) {}
  explicit CancellableCall(boost::asio::any_io_executor&&) = delete;
  CancellableCall(const CancellableCall&) = delete;
  CancellableCall& operator=(const CancellableCall&) = delete;
  ~CancellableCall() = default;

  // Starts `call` in a child thread whose cancellation slot is `slot`; returns when the
  // call has completed or first suspended. Call once.
  void start(boost::asio::awaitable<void> call, boost::asio::cancellation_slot slot);

  // The bottom frame of a child thread.
  using Entry = boost::asio::awaitable<boost::asio::detail::awaitable_thread_entry_point,
                                       boost::asio::any_io_executor>;
  // Reports how the child ended. An entry coroutine of one's own (start_entry) declares a
  // Link to its CancellableCall first thing and calls finish() once, as its last step,
  // with the exception its work ended with (or none).
  class Link {
   public:
    explicit Link(CancellableCall* call) noexcept : parent_(call) {}
    Link(const Link&) = delete;
    Link& operator=(const Link&) = delete;
    // The child is destroyed without finishing (its io_context torn down while it was
    // suspended): destroys the parked waiter with it, never resumes it.
    ~Link();
    void finish(std::exception_ptr error);

   private:
    CancellableCall* parent_;
  };
  // start(), with the child's bottom frame written by the caller: a typed call awaited
  // in the entry itself saves the frame of an awaitable<void> around it. Call once.
  void start_entry(Entry entry, boost::asio::cancellation_slot slot);

  bool finished() const noexcept { return finished_; }
  // Whether a cancellation had reached the call by the time it finished. A deadline that
  // expired after the call had finished (its waiter not yet resumed) cut nothing off.
  // Precondition: finished().
  bool cancelled() const noexcept { return cancelled_; }

  // Completes once the call has finished; forwards the waiter's cancellation to
  // `forward` meanwhile. Precondition: start() was called.
  boost::asio::awaitable<void> wait(boost::asio::cancellation_signal& forward);

  // Rethrows the call's exception, if it ended with one. Precondition: finished().
  void rethrow() const {
    if (error_) {
      std::rethrow_exception(error_);
    }
  }

 private:
  // The child thread's bottom frame: runs the call, then reports to `parent`.
  static Entry child_entry(boost::asio::awaitable<void> call, CancellableCall* parent);
  void park(boost::asio::any_completion_handler<void()> waiter,
            boost::asio::cancellation_signal& forward);

  // The caller's: the child thread's is copied from it, and a waiter is resumed on it.
  const boost::asio::any_io_executor* executor_;
  bool finished_ = false;
  bool cancelled_ = false;
  std::exception_ptr error_;
  // The child's cancellation state (its impl lives in the signal behind the slot, which
  // outlives the call): read when the child finishes.
  boost::asio::cancellation_state state_;
  // The suspended waiter, while it waits. Destroyed by the child if the child is
  // destroyed without finishing (which destroys the waiter's coroutine).
  std::optional<boost::asio::any_completion_handler<void()>> waiter_;
};

}  // namespace coromesh::qos
