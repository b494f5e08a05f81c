#pragma once

// A bound on the TLS handshakes in flight at the public port, so that clients which send
// the first bytes of a ClientHello and stall cannot make the sidecar hold an SSL object
// (~51 KiB with its buffers) each until the handshake deadline: 10 000 of them held
// ~500 MiB before this bound (tests/integration/hostile/idle_connections.sh).
//
// Over the bound, the OLDEST handshake in flight is shed (closed), not the new one. A
// legitimate handshake finishes in milliseconds, so it is always among the newest; a
// flood of stalled ones therefore sheds its own oldest members and never locks a real
// peer out, where refusing newcomers would lock every peer out until the stalled ones
// time out. A shed peer is counted (reason `handshake_shed`) like any other refusal.
//
// A handshake enters with the executor it runs on and a function that closes its socket
// (a CloseHandle, connection_registry.hpp); the returned Slot leaves on destruction.
// Shedding posts the close function to that executor (post_close: a socket is only
// touched on its own thread) and is skipped if the handshake ended in the meantime (the
// Slot clears it, on that thread, before the frame and its socket go away).
//
// Threads: enter() and in_flight() from any thread; a Slot is destroyed on its executor.

#include <boost/asio/any_io_executor.hpp>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>

#include "connection_registry.hpp"

namespace coromesh::sidecar {

class HandshakeLimit {
  struct Entry {
    CloseHandle handle;  // its `close` sheds the handshake
    bool listed = true;  // false once shed: it left the list then
  };
  using Entries = std::list<std::shared_ptr<Entry>>;

 public:
  class Slot {
   public:
    Slot(HandshakeLimit& limit, std::shared_ptr<Entry> entry, Entries::iterator position)
        : limit_(&limit), entry_(std::move(entry)), position_(position) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

   private:
    HandshakeLimit* limit_;
    std::shared_ptr<Entry> entry_;  // its own: a shed entry has left the list
    Entries::iterator position_;    // in the list, while entry_->listed
  };

  explicit HandshakeLimit(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // A handshake begins. `shed` must close its socket; it is called on `executor` only
  // while the returned slot lives, and only if this handshake is shed. When `capacity`
  // handshakes are already in flight, the oldest of them is shed first; `shed_count`
  // (if given) receives how many were (0 or 1).
  [[nodiscard]] std::unique_ptr<Slot> enter(boost::asio::any_io_executor executor,
                                            std::function<void()> shed,
                                            std::size_t* shed_count = nullptr);

  std::size_t in_flight() const;
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  Entries entries_;  // oldest first
};

}  // namespace coromesh::sidecar
