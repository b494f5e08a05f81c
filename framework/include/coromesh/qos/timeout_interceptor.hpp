#pragma once

// The per-attempt timeout as a chain interceptor (see chain.hpp for the chain itself).

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "coromesh/qos/chain.hpp"

namespace coromesh::qos {

enum class TimeoutMode : std::uint8_t {
  // The rest of the chain is cut off (cancelled) once the attempt's deadline has passed,
  // by the io_context's DeadlineWatchdog (see deadline_watchdog.hpp): a few tens of ns
  // per call more than `deadline`, no timer per call.
  preemptive,
  // The timeout only sets the attempt's deadline, which every coromesh await honours
  // (client stubs send it downstream and stop waiting at it, retry backoffs and
  // bulkhead queues end at it); nothing else is cancelled. As cheap as a clock read.
  deadline,
};

// Per-attempt timeout, bounded by the invocation's overall deadline (its remaining time
// read on the chain's clock). Either way the attempt's deadline is set for the call to
// read (Invocation::deadline()) and an already expired deadline rejects without calling.
//
// Preemptive: the rest of the chain runs as a child coroutine (CancellableCall, started
// inline: no executor round trip) registered with the io_context's DeadlineWatchdog.
// Once the attempt's deadline has passed (checked at the watchdog's 1 ms granularity)
// the rest is cancelled through Asio per-operation cancellation (terminal) and the
// attempt is rejected with deadline_exceeded. The call must honour cancellation (a call
// that ignores it is waited for, then rejected). A call that completes first, with a
// value or an exception, unregisters at once. The coroutine must run on an io_context
// executor (or a strand of one) driven by one thread, coromesh's IoPool model.
class TimeoutInterceptor final : public SynchronousInterceptor {
 public:
  explicit TimeoutInterceptor(Duration per_attempt, std::optional<int> weight = std::nullopt,
                              std::string name = "timeout",
                              TimeoutMode mode = TimeoutMode::preemptive);
  Duration per_attempt() const noexcept { return per_attempt_; }
  TimeoutMode mode() const noexcept { return mode_; }

  // Both modes run as a synchronous interceptor in a chain segment; the preemptive one
  // asks the segment to cut the rest off at its deadline (SynchronousInterceptor::preempts).
  bool preempts() const noexcept override { return mode_ == TimeoutMode::preemptive; }
  void on_request(Invocation& invocation) override;
  void on_outcome(Invocation& invocation, const Outcome& outcome) noexcept override;
  // The nested form (outside a chain segment): the same cut-off, done here.
  boost::asio::awaitable<void> around(Invocation& invocation, Next next) override;

 private:
  // Rejects with deadline_exceeded when the attempt could not even start.
  Deadline attempt_deadline(Invocation& invocation, Clock::time_point now) const;

  Duration per_attempt_;
  TimeoutMode mode_;
};

}  // namespace coromesh::qos
