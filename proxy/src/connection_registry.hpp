#pragma once

// The proxied connections of one sidecar, so that shutdown can wait for them and then
// cut off the rest (ServiceComponent::drain).
//
// A connection coroutine enters with the executor it runs on and a function that closes
// its sockets; the returned Ticket leaves on destruction. Cutting off posts each close
// function to its connection's executor: the sockets are only ever touched on their own
// thread, and a connection that ended in the meantime is skipped (the ticket clears its
// entry on that same thread before the frame, and the sockets, go away).
//
// A connection may name the listener it came through (`listener`, a tag compared and
// never dereferenced): begin_drain(listener) then drains that listener's connections
// only, when a live change removes it while the sidecar runs on. The registry, not the
// listener, keeps that bookkeeping: what is posted to a connection's executor refers to
// the registry (the Sidecar's, which outlives the io threads) and never to a listener,
// which may be gone by the time it runs.
//
// A connection accepted but not yet entered (its coroutine is posted to its io thread)
// holds an Admission, taken by the accept loop: drain() waits for it as for an entered
// one, and one that enters after begin_drain() or cut_off() is drained or closed as if it
// had been there. Without it, a connection accepted just before the listener closed
// could enter after the drain had found none left, and be torn down with the io threads.
//
// Threads: admit(), enter(), active(), begin_drain() and cut_off() from any thread; a
// Ticket is destroyed on the connection's executor, an Admission on any thread.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <utility>

namespace coromesh::sidecar {

// One connection's way to be closed from another thread: its executor, and a function
// that closes its sockets, cleared (under the owner's mutex, on `executor`) when the
// connection ends. Shared by ConnectionRegistry and HandshakeLimit.
struct CloseHandle {
  boost::asio::any_io_executor executor;
  std::function<void()> close;
};

// Posts `handle`'s close to its executor; there it runs only if the connection has not
// ended in the meantime (`mutex` guards `close`, and must outlive the posted call).
void post_close(std::mutex& mutex, std::shared_ptr<CloseHandle> handle);

class ConnectionRegistry {
  // `drain` (may be empty) tells the connection that the sidecar (or its listener)
  // drains; cleared with `close` when the connection ends. `listener` names the listener
  // it came through (null: none named), only ever compared.
  struct Entry : CloseHandle {
    std::function<void()> drain;
    const void* listener = nullptr;
  };

 public:
  // Held from the accept until the connection has entered (release()) or its coroutine
  // is gone without entering (destruction).
  class Admission {
   public:
    explicit Admission(ConnectionRegistry& registry) : registry_(&registry) {
      registry_->admitted_.fetch_add(1);
    }
    Admission(Admission&& other) noexcept : registry_(std::exchange(other.registry_, nullptr)) {}
    Admission& operator=(Admission&&) = delete;
    Admission(const Admission&) = delete;
    Admission& operator=(const Admission&) = delete;
    ~Admission() { release(); }
    void release() noexcept {
      if (registry_ != nullptr) {
        std::exchange(registry_, nullptr)->admitted_.fetch_sub(1);
      }
    }

   private:
    ConnectionRegistry* registry_;
  };

  class Ticket {
   public:
    Ticket(ConnectionRegistry& registry, std::list<std::shared_ptr<Entry>>::iterator entry)
        : registry_(&registry), entry_(entry) {}
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket();

   private:
    ConnectionRegistry* registry_;
    std::list<std::shared_ptr<Entry>>::iterator entry_;
  };

  // A connection just accepted, not yet entered (see Admission).
  [[nodiscard]] Admission admit() { return Admission(*this); }

  // `close` must close the connection's sockets; it is called on `executor` only while
  // the returned ticket lives. So is `drain`, if given, once begin_drain() is called (or
  // begin_drain(listener) with the `listener` given here). A connection that enters after
  // begin_drain() is drained at once, after cut_off() closed at once; one that enters
  // after begin_drain(listener) is not drained by it: an upstream listener's sees that its
  // listener has stopped and drains itself (UpstreamListener::serve).
  [[nodiscard]] std::unique_ptr<Ticket> enter(boost::asio::any_io_executor executor,
                                              std::function<void()> close,
                                              std::function<void()> drain = {},
                                              const void* listener = nullptr);

  // Connections entered and not yet ended, or admitted and not yet entered.
  std::size_t active() const;

  // The drain begins (the listeners are closed): calls each open connection's `drain`, on
  // its executor, so that those which can end early (an http-mode connection between
  // requests) do, before the grace runs out.
  void begin_drain();
  // The same for the connections that entered naming `listener` (not null), and no
  // other: a listener removed while the sidecar runs on. `listener` must be alive during
  // the call (its connections hold it), so that no other listener can have its address.
  void begin_drain(const void* listener);

  // Closes every connection still open; returns how many there were.
  std::size_t cut_off();

  // Waits until no connection is left or `deadline`, then cuts off what is left and waits
  // (briefly) for those to unwind; returns how many were cut off.
  boost::asio::awaitable<std::size_t> drain(std::chrono::steady_clock::time_point deadline);

 private:
  // Posts the `drain` of every entry that came through `only`, or of every entry when
  // `only` is null. With mutex_ held.
  void post_drains(const void* only);
  // Posts `entry`'s drain to its executor, where it runs if the connection is still open.
  // With mutex_ held.
  void post_drain(std::shared_ptr<Entry> entry);

  mutable std::mutex mutex_;
  std::list<std::shared_ptr<Entry>> entries_;
  bool draining_ = false;  // begin_drain() was called
  bool cut_ = false;       // cut_off() was called
  std::atomic<std::size_t> admitted_{0};
};

}  // namespace coromesh::sidecar
