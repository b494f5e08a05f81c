#pragma once

// A long-lived part of a service with listeners or background work of its own (the
// sidecar's proxy listeners, a certificate source): started with the service and taken
// through the same two-phase shutdown (service/service.hpp):
//
//   phase 1   the instance leaves Consul; then stop_accepting() on the HTTP server and
//             on every component (close listeners: no new work)
//   phase 2   drain(deadline) on each: let work in flight finish until the deadline
//             (the service's --shutdown-grace), then cut off what is left
//
// Ownership: the Service holds components by shared_ptr from add_component() until it
// is destroyed, which happens after every coroutine on its io pool has unwound.
// Threads: start() runs on the thread calling Service::start(), before the io threads
// run; stop_accepting() and drain() are awaited by the shutdown coroutine on the pool's
// executor 0 — a component whose work runs on other executors posts to them.
// An exception from stop_accepting() or drain() is logged (service.component_failed)
// and the shutdown goes on.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <string_view>

namespace coromesh::runtime {
class IoPool;
}

namespace coromesh {

class ServiceComponent {
 public:
  virtual ~ServiceComponent() = default;

  // For log lines ("proxy.inbound", "connect.certificates").
  virtual std::string_view name() const noexcept = 0;

  // Binds listeners and spawns coroutines on `pool`, before the service registers in
  // Consul (a registration shaper may read the ports bound here). Throwing aborts the
  // service's start-up with that error.
  virtual void start(runtime::IoPool& pool) = 0;

  // Phase 1: stop taking new work. Must return promptly.
  virtual boost::asio::awaitable<void> stop_accepting() = 0;

  // Phase 2: returns when work in flight has finished, or at `deadline` after cutting off
  // what is left; the result is how much was cut off (for the shutdown log line).
  virtual boost::asio::awaitable<std::size_t> drain(
      std::chrono::steady_clock::time_point deadline) = 0;
};

}  // namespace coromesh
