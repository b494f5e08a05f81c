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
// Threads: enter(), active(), begin_drain() and cut_off() from any thread; a Ticket is
// destroyed on the connection's executor.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>

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

  // `close` must close the connection's sockets; it is called on `executor` only while
  // the returned ticket lives. So is `drain`, if given, once begin_drain() is called (or
  // begin_drain(listener) with the `listener` given here). A connection that enters after
  // that is not drained by it: an upstream listener's sees that its listener has stopped
  // and drains itself (UpstreamListener::serve); any other is cut off at the grace.
  [[nodiscard]] std::unique_ptr<Ticket> enter(boost::asio::any_io_executor executor,
                                              std::function<void()> close,
                                              std::function<void()> drain = {},
                                              const void* listener = nullptr);

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
  // `only` is null.
  void post_drains(const void* only);

  mutable std::mutex mutex_;
  std::list<std::shared_ptr<Entry>> entries_;
};

}  // namespace coromesh::sidecar
