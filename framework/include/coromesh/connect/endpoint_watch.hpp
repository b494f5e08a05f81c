#pragma once

// Watches the Connect endpoints of one destination service
// (/v1/health/connect/<service>?passing, blocking queries through consul::watch) and
// publishes each answer as an immutable EndpointSet snapshot. With EndpointKind::plain it
// watches the service's own instances instead (/v1/health/service/<service>?passing):
// what a caller without a mesh, or behind no proxy at all, dials in plain HTTP.
//
//   EndpointWatch watch(agent, "b");
//   co_spawn(agent_executor, watch.run(), bind_cancellation_slot(stop.slot(), on_done));
//   auto endpoints = co_await watch.ready();        // the first answer
//   ...                                             // any io thread, no lock:
//   auto now = watch.snapshot();                    //   the latest answer
//   stop.emit(cancellation_type::terminal);         // shutdown: run() returns promptly
//
// A Consul outage keeps the last snapshot: watch errors are retried (with backoff, logged
// by consul::watch) and never clear it, so traffic keeps flowing to the cached endpoints.
// An empty snapshot means Consul answered "no passing endpoint".
//
// An agent back from an outage may answer before it knows again what it knew: a -dev
// agent (or one without persisted registrations) restarts empty, and the instances come
// back one by one as their registrars resync. So an EMPTY answer that comes right after a
// disruption (the first answer after failed queries, or one whose index went backwards:
// consul::WatchDelivery) while the snapshot holds endpoints is not applied at once: the
// last endpoints are kept for up to `restart_grace` (by default 10 s, twice the
// registrar's resync interval), until a non-empty answer arrives (applied at once, even
// if smaller than before). If the grace runs out with no instance back, the empty set is
// published then. Any other empty answer (instances deregistered or failing while the
// agent stayed up) is applied at once, as before. Logged: connect.endpoints.held when a
// hold starts, connect.endpoints.hold_expired when the grace runs out.
//
// Ownership and threads: run() is a coroutine for the AgentClient's executor; the
// AgentClient and this object must outlive its frame (in a service, destroy them after
// the IoPool's destroy_abandoned_work(), which may be what ends that frame). snapshot() may be
// called from any thread. ready() may be awaited from any executor, several times and concurrently;
// this object must outlive every ready() in flight.

#include <atomic>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "coromesh/connect/atomic_snapshot.hpp"
#include "coromesh/connect/endpoint_set.hpp"
#include "coromesh/consul/agent_client.hpp"
#include "coromesh/consul/watch.hpp"

namespace coromesh::connect {

// Which instances of a service an EndpointWatch follows.
enum class EndpointKind : std::uint8_t {
  connect,  // its Connect endpoints: sidecars fronting it, or its Connect-native instances
  plain,    // its own registrations, dialed without TLS
};

class EndpointWatch {
 public:
  using Snapshot = std::shared_ptr<const EndpointSet>;

  static constexpr std::chrono::milliseconds kDefaultRestartGrace{10'000};

  EndpointWatch(consul::AgentClient& consul, std::string service, consul::WatchOptions options = {},
                EndpointKind kind = EndpointKind::connect,
                std::chrono::milliseconds restart_grace = kDefaultRestartGrace);
  ~EndpointWatch();
  EndpointWatch(const EndpointWatch&) = delete;
  EndpointWatch& operator=(const EndpointWatch&) = delete;

  const std::string& service() const noexcept { return service_; }

  // Watches until cancelled through the awaiting coroutine's cancellation slot, then
  // returns normally; ready() calls still waiting then fail with operation_aborted.
  // Call once.
  boost::asio::awaitable<void> run();

  // The latest answer; null until the first one. Never waits on the watch: the only
  // lock is AtomicSnapshot's spin flag, held for a reference-count increment.
  Snapshot snapshot() const noexcept { return snapshot_.load(); }

  // The latest snapshot once there is one: returns at once if Consul has answered,
  // otherwise waits for its first answer. Throws
  // boost::system::system_error(operation_aborted) when the awaiting coroutine is
  // cancelled (e.g. `co_await (watch.ready() || timer.async_wait())`) or run() ends first.
  boost::asio::awaitable<Snapshot> ready();

  // ready(), bounded: null when Consul has not answered by `until` (the first moments
  // after start-up). A cancellation of the awaiting coroutine still throws
  // operation_aborted, never passes for "no answer in time".
  boost::asio::awaitable<Snapshot> ready_until(std::chrono::steady_clock::time_point until);

 private:
  using ReadyHandler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
  struct Waiter {
    std::uint64_t id;
    boost::asio::any_io_executor executor;  // where the waiting coroutine resumes
    ReadyHandler handler;
  };

  // Each answer of the watch: published, or held back (see the header's comment).
  void on_answer(const std::vector<consul::ServiceInstance>& instances,
                 consul::WatchDelivery delivery);
  void publish(const std::vector<consul::ServiceInstance>& instances);
  // Publishes the empty set once a hold's grace has run out; returns when cancelled.
  boost::asio::awaitable<void> expire_holds(boost::asio::steady_timer& grace_timer);
  // Completes every waiter with `ec` (on its own executor).
  void wake_waiters(boost::system::error_code ec);
  void cancel_waiter(std::uint64_t id);
  static void complete(Waiter waiter, boost::system::error_code ec);

  consul::AgentClient& consul_;
  std::string service_;
  consul::WatchOptions options_;
  EndpointKind kind_;
  AtomicSnapshot<EndpointSet> snapshot_;
  std::chrono::milliseconds restart_grace_;
  std::uint64_t generation_ = 0;  // only touched by run()'s callback
  // Only touched by run()'s coroutines: set while an empty answer after a disruption is
  // held back. The timer is a local of run()'s frame, null outside it.
  std::optional<std::chrono::steady_clock::time_point> hold_until_;
  boost::asio::steady_timer* grace_timer_ = nullptr;

  // Only the (rare) ready() waits take this lock; snapshot() never does.
  std::mutex waiters_mutex_;
  std::vector<Waiter> waiters_;
  std::uint64_t next_waiter_id_ = 0;
  bool stopped_ = false;
};

}  // namespace coromesh::connect
